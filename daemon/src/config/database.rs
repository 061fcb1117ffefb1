//! Which database the daemon keeps its state in: the SQLite file in the state
//! directory (the default, nothing to configure) or a PostgreSQL database
//! shared by several daemons (docs/scale-out.md).
//!
//! The PostgreSQL URL names the server, database and user; its password
//! never comes from the command line or the config file, where `ps` and
//! backups of `/etc` would show it. It comes from `database_password_file`,
//! or the whole URL (password included) from `database_url_file`, which
//! defaults to the systemd credential `database-url`
//! (`LoadCredential=database-url:...`).

use super::{ConfigError, Env};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Where the state lives.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DatabaseConfig {
    /// `mcp-multiplayer.db` in the state directory.
    #[default]
    Sqlite,
    /// A PostgreSQL database; the secret is read when the store opens.
    Postgres(PostgresSource),
}

/// Where the PostgreSQL URL and its password come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostgresSource {
    /// A URL without password, and the file holding the password (if any:
    /// a local socket with peer authentication needs none).
    Url {
        url: String,
        password_file: Option<PathBuf>,
    },
    /// A file holding the whole URL.
    UrlFile(PathBuf),
}

impl DatabaseConfig {
    /// Reads `database`, `database_password_file` and `database_url_file`
    /// (file keys; `MCP_MULTIPLAYER_DATABASE`,
    /// `MCP_MULTIPLAYER_DATABASE_PASSWORD_FILE` and
    /// `MCP_MULTIPLAYER_DATABASE_URL_FILE` override them).
    ///
    /// # Errors
    /// A URL that is not `postgres://` or `sqlite`, a URL that carries a
    /// password, or both a URL and a URL file.
    pub fn from_parts(
        database: Option<String>,
        password_file: Option<PathBuf>,
        url_file: Option<PathBuf>,
        env: &dyn Env,
    ) -> Result<DatabaseConfig, ConfigError> {
        let database = env.var("MCP_MULTIPLAYER_DATABASE").or(database);
        let password_file = env
            .var("MCP_MULTIPLAYER_DATABASE_PASSWORD_FILE")
            .map(PathBuf::from)
            .or(password_file);
        let explicit_url_file = env
            .var("MCP_MULTIPLAYER_DATABASE_URL_FILE")
            .map(PathBuf::from)
            .or(url_file);
        let credential = env
            .var("CREDENTIALS_DIRECTORY")
            .map(|d| Path::new(&d).join("database-url"))
            .filter(|p| p.exists());
        match (database.as_deref(), explicit_url_file) {
            (Some("sqlite"), _) => Ok(DatabaseConfig::Sqlite),
            (Some(url), Some(_)) => Err(ConfigError::Invalid(format!(
                "database = {:?} and database_url_file are both set: give the URL once (the URL file when it carries the password)",
                redact(url)
            ))),
            (Some(url), None) => {
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    return Err(ConfigError::Invalid(format!(
                        "database = {:?}: give \"sqlite\" (the default) or a postgres://USER@HOST/DB URL",
                        redact(url)
                    )));
                }
                let parsed = postgres::Config::from_str(url).map_err(|e| {
                    ConfigError::Invalid(format!(
                        "database = {:?} is not a PostgreSQL URL: {e}",
                        redact(url)
                    ))
                })?;
                if parsed.get_password().is_some() {
                    return Err(ConfigError::Invalid(
                        "the database URL carries a password: keep it out of the config file and the command line. Put the password in database_password_file, or the whole URL in database_url_file (or the systemd credential \"database-url\")".into(),
                    ));
                }
                Ok(DatabaseConfig::Postgres(PostgresSource::Url {
                    url: url.to_string(),
                    password_file,
                }))
            }
            (None, Some(f)) => Ok(DatabaseConfig::Postgres(PostgresSource::UrlFile(f))),
            (None, None) => Ok(match credential {
                Some(f) => DatabaseConfig::Postgres(PostgresSource::UrlFile(f)),
                None => DatabaseConfig::Sqlite,
            }),
        }
    }

    /// What to show of the database in logs and `config show`: never a
    /// password.
    pub fn describe(&self) -> String {
        match self {
            DatabaseConfig::Sqlite => "sqlite".into(),
            DatabaseConfig::Postgres(PostgresSource::Url { url, .. }) => redact(url),
            DatabaseConfig::Postgres(PostgresSource::UrlFile(f)) => {
                format!("postgres (URL in {})", f.display())
            }
        }
    }
}

impl PostgresSource {
    /// The connection settings, with the password read from its file.
    ///
    /// # Errors
    /// The file cannot be read or is empty, or the URL in it does not parse.
    pub fn load(&self) -> Result<postgres::Config, ConfigError> {
        let read = |p: &Path| {
            let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.to_path_buf(),
                source,
            })?;
            let text = text.trim().to_string();
            if text.is_empty() {
                return Err(ConfigError::Invalid(format!("{} is empty", p.display())));
            }
            Ok(text)
        };
        match self {
            PostgresSource::Url { url, password_file } => {
                let mut c = postgres::Config::from_str(url).map_err(|e| {
                    ConfigError::Invalid(format!("database URL {:?}: {e}", redact(url)))
                })?;
                if let Some(f) = password_file {
                    c.password(read(f)?);
                }
                Ok(c)
            }
            PostgresSource::UrlFile(f) => {
                let url = read(f)?;
                postgres::Config::from_str(&url).map_err(|e| {
                    // The error may quote the URL: say only where it was.
                    let _ = e;
                    ConfigError::Invalid(format!(
                        "{} does not hold a PostgreSQL URL (postgres://USER:PASSWORD@HOST/DB)",
                        f.display()
                    ))
                })
            }
        }
    }
}

/// A URL with any password replaced by `***`.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "(not a URL)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Vars(HashMap<&'static str, String>);
    impl Env for Vars {
        fn var(&self, k: &str) -> Option<String> {
            self.0.get(k).cloned()
        }
    }

    fn none() -> Vars {
        Vars(HashMap::new())
    }

    #[test]
    fn sqlite_is_the_default_and_needs_nothing() {
        assert_eq!(
            DatabaseConfig::from_parts(None, None, None, &none()).unwrap(),
            DatabaseConfig::Sqlite
        );
    }

    #[test]
    fn a_password_in_the_url_is_refused_and_never_echoed() {
        let e = DatabaseConfig::from_parts(
            Some("postgres://mcp:hunter2@db.internal/mcp".into()),
            None,
            None,
            &none(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("database_password_file"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn the_password_comes_from_its_file() {
        let dir = std::env::temp_dir().join(format!("mcpmp-db-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("pw");
        std::fs::write(&f, "s3cret\n").unwrap();
        let db = DatabaseConfig::from_parts(
            Some("postgres://mcp@db.internal/mcp".into()),
            Some(f),
            None,
            &none(),
        )
        .unwrap();
        let DatabaseConfig::Postgres(src) = &db else {
            panic!("{db:?}")
        };
        assert_eq!(src.load().unwrap().get_password(), Some(&b"s3cret"[..]));
        assert!(!db.describe().contains("s3cret"));
    }

    #[test]
    fn the_systemd_credential_holds_the_whole_url() {
        let dir = std::env::temp_dir().join(format!("mcpmp-cred-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("database-url"), "postgres://mcp:pw@h/db").unwrap();
        let env = Vars(HashMap::from([(
            "CREDENTIALS_DIRECTORY",
            dir.display().to_string(),
        )]));
        let db = DatabaseConfig::from_parts(None, None, None, &env).unwrap();
        let DatabaseConfig::Postgres(src) = &db else {
            panic!("{db:?}")
        };
        assert_eq!(src.load().unwrap().get_dbname(), Some("db"));
    }

    #[test]
    fn another_scheme_is_refused_with_what_to_write() {
        let e = DatabaseConfig::from_parts(Some("mysql://h/db".into()), None, None, &none())
            .unwrap_err()
            .to_string();
        assert!(e.contains("postgres://"), "{e}");
    }
}
