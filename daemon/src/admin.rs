//! The operator's commands: `backup`, `config check|show`, `principal
//! list`, `client list|revoke`, `grant list|revoke`. Each returns the text
//! to print; `cli` only parses arguments and prints.
//!
//! They open the same database as the running daemon (SQLite lets both
//! work at once), so they run on a live server; run them as the service's
//! user so that SQLite never leaves files the daemon cannot open. Nothing
//! here prints a secret: tokens and codes exist only as hashes, and the
//! passphrase stays in its file.

use crate::config::{Approval, Config, LogFormat};
use crate::oauth::clients;
use crate::store::{self, Store, StoreError, principals};
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::path::Path;

/// `backup FILE`: a consistent copy of the live database, checked.
///
/// # Errors
/// See [`store::backup`].
pub fn backup(cfg: &Config, dest: &Path) -> Result<String, StoreError> {
    if cfg.database != crate::config::DatabaseConfig::Sqlite {
        return Err(StoreError::Postgres(
            "backup copies the SQLite database; this daemon keeps its state in PostgreSQL. Back it up with PostgreSQL's own tools (pg_dump, or a base backup with WAL archiving: docs/scale-out.md)".into(),
        ));
    }
    let r = store::backup(&cfg.db_path(), dest)?;
    Ok(format!(
        "Backed up {} to {} ({} bytes, schema version {}): {} channels, {} messages. integrity_check: ok.\nRestore: stop the daemon, move mcp-multiplayer.db and its -wal and -shm files aside, copy this file to {} (owned by the service's user), start the daemon.\n",
        cfg.db_path().display(),
        r.path.display(),
        r.bytes,
        r.schema_version,
        r.channels,
        r.messages,
        cfg.db_path().display(),
    ))
}

/// The effective configuration as TOML, in the config file's shape. The
/// passphrase is never shown (it is not even read): only where it lives.
pub fn config_show(cfg: &Config) -> String {
    let a = &cfg.auth;
    let b = &cfg.bots;
    let path = |p: &Path| p.display().to_string();
    // The database as keys the config file takes (a URL file's path, never
    // its content).
    let (database, password_file, url_file) = match &cfg.database {
        crate::config::DatabaseConfig::Sqlite => (Some("sqlite".to_string()), None, None),
        crate::config::DatabaseConfig::Postgres(crate::config::PostgresSource::Url {
            url,
            password_file,
        }) => (Some(url.clone()), password_file.as_deref().map(path), None),
        crate::config::DatabaseConfig::Postgres(crate::config::PostgresSource::UrlFile(f)) => {
            (None, None, Some(path(f)))
        }
    };
    let view = json!({
        "database": database,
        "database_password_file": password_file,
        "database_url_file": url_file,
        "listen": cfg.listen.to_string(),
        "state_dir": path(&cfg.state_dir),
        "public_url": cfg.public_origin(),
        "allowed_hosts": cfg.allowed_hosts,
        "allowed_origins": cfg.allowed_origins,
        "log_format": match cfg.log_format { LogFormat::Text => "text", LogFormat::Json => "json" },
        "max_body_bytes": cfg.max_body_bytes,
        "max_sync_bytes": cfg.max_sync_bytes,
        "signing_key_file": match &cfg.signing_key {
            crate::signing::KeySource::Configured(p) => Some(path(p)),
            _ => None,
        },
        "trusted_proxies": cfg.trusted_proxies.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "auth": {
            "approval": match a.approval { Approval::Auto => "auto", Approval::Passphrase => "passphrase" },
            "passphrase_file": a.passphrase_file.as_deref().map(path),
            "access_token_ttl_secs": a.access_token_ttl_secs,
            "refresh_token_ttl_secs": a.refresh_token_ttl_secs,
            "code_ttl_secs": a.code_ttl_secs,
            "refresh_grace_secs": a.refresh_grace_secs,
            "custom_redirect_schemes": a.custom_redirect_schemes,
            "client_metadata_documents": a.client_metadata_documents,
            "test_only_loopback_client_metadata": a.test_only_loopback_client_metadata,
            "registrations_per_minute": a.limits.registrations_per_minute,
            "unapproved_clients_per_address": a.limits.unapproved_clients_per_address,
            "unapproved_clients_total": a.limits.unapproved_clients_total,
            "pending_approvals_per_address": a.limits.pending_approvals_per_address,
            "pending_approvals_total": a.limits.pending_approvals_total,
            "passphrase_free_failures": a.limits.passphrase_free_failures,
            "passphrase_max_backoff_secs": a.limits.passphrase_max_backoff_secs,
        },
        "bots": {
            "runner": path(&b.runner),
            "python": path(&b.python),
            "python_args": b.python_args,
            "bots_dir": path(&b.bots_dir),
            "python_path": b.python_path.iter().map(|p| path(p)).collect::<Vec<_>>(),
            "max_parallel_hooks": b.max_parallel_hooks,
            "sandbox_uid": b.sandbox_uid,
            "sandbox_gid": b.sandbox_gid,
            "network_allow_cidrs": b.network_allow_cidrs,
            "system_dirs": b.system_dirs.iter().map(|p| path(p)).collect::<Vec<_>>(),
            "warm_min": b.warm_min,
            "warm_max": b.warm_max,
            "warm_idle_secs": b.warm_idle_secs,
            "fork_templates": b.fork_templates,
        },
        "http": serde_json::to_value(&cfg.http).unwrap_or(Value::Null),
        "quotas": serde_json::to_value(&cfg.quotas).unwrap_or(Value::Null),
    });
    let mut out = String::from(
        "# The effective configuration: defaults, the config file, MCP_MULTIPLAYER_* and flags.\n# Secrets are never shown; the passphrase stays in its file.\n",
    );
    match toml::to_string(&without_nulls(view)) {
        Ok(t) => out.push_str(&t),
        Err(e) => {
            let _ = writeln!(out, "# cannot render as TOML: {e}");
        }
    }
    out
}

/// TOML has no null: an unset optional key is left out.
fn without_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        other => other,
    }
}

/// `config check`: what `serve` would refuse or trip over, without binding
/// anything. Returns the report and whether everything passed.
pub fn config_check(mut cfg: Config) -> (String, bool) {
    let mut out = String::new();
    let mut ok = true;
    let mut line = |good: bool, text: String| {
        ok &= good;
        let _ = writeln!(out, "{} {text}", if good { "ok     " } else { "PROBLEM" });
    };
    line(
        true,
        "the configuration parses and its values are valid".into(),
    );
    match cfg.load_secrets() {
        Ok(()) if cfg.auth.passphrase.is_some() => {
            line(true, "the passphrase file is readable and not empty".into())
        }
        Ok(()) => line(
            true,
            format!("approval is {:?}: no passphrase needed", cfg.auth.approval),
        ),
        Err(e) => line(false, e.to_string()),
    }
    match crate::signing::check(&cfg.signing_key) {
        Ok(text) => line(true, text),
        Err(e) => line(false, e.to_string()),
    }
    let state = match &cfg.database {
        crate::config::DatabaseConfig::Sqlite => database_state(&cfg.db_path()),
        crate::config::DatabaseConfig::Postgres(src) => postgres_state(src),
    };
    match state {
        Ok(text) => line(true, text),
        Err(text) => line(false, text),
    }
    let runner = &cfg.bots.runner;
    line(
        is_executable(runner),
        format!("sandbox runner {} is an executable file", runner.display()),
    );
    let python = &cfg.bots.python;
    line(
        is_executable(python),
        format!("bot interpreter {} is an executable file", python.display()),
    );
    let harness = cfg.bots.bots_dir.join("harness/harness.py");
    line(
        harness.is_file(),
        format!("the bot harness is at {}", harness.display()),
    );
    (out, ok)
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether the database (or the directory it will be created in) looks
/// usable, without creating or migrating anything.
/// Whether the PostgreSQL database answers (its password file read, one
/// connection made); nothing is written.
fn postgres_state(src: &crate::config::PostgresSource) -> Result<String, String> {
    let what = crate::config::DatabaseConfig::Postgres(src.clone()).describe();
    let mut pg = src.load().map_err(|e| e.to_string())?;
    pg.connect_timeout(std::time::Duration::from_secs(5));
    store::db::off_runtime(|| {
        pg.connect(postgres::NoTls)
            .map(drop)
            .map_err(|e| format!("cannot connect to PostgreSQL {what}: {e}"))
    })?;
    Ok(format!("PostgreSQL {what} takes connections"))
}

fn database_state(db: &Path) -> Result<String, String> {
    if !db.exists() {
        let dir = db
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        return if dir.is_dir() {
            Ok(format!(
                "no database yet; serve will create {}",
                db.display()
            ))
        } else {
            Ok(format!(
                "no database yet; serve will create {} (and its directory)",
                db.display()
            ))
        };
    }
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| format!("cannot open the database {}: {e}", db.display()))?;
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| format!("cannot read the database {}: {e}", db.display()))?;
    if version > store::SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: db.to_path_buf(),
            found: version,
            known: store::SCHEMA_VERSION,
        }
        .to_string());
    }
    let writable = std::fs::OpenOptions::new().append(true).open(db).is_ok();
    if !writable {
        return Err(StoreError::ReadOnly {
            path: db.to_path_buf(),
            detail: "this user cannot open it for writing".into(),
        }
        .to_string());
    }
    Ok(format!(
        "database {} has schema version {version} (this release: {}){}",
        db.display(),
        store::SCHEMA_VERSION,
        if version < store::SCHEMA_VERSION {
            "; serve will migrate it"
        } else {
            ""
        }
    ))
}

fn when(ms: i64) -> String {
    crate::secrets::rfc3339_ms(ms)
}

/// `principal list`.
///
/// # Errors
/// Storage failures.
pub async fn principal_list(store: &Store) -> Result<String, StoreError> {
    let list = principals::list(store).await?;
    if list.is_empty() {
        return Ok("No principals yet. `mcp-multiplayer token create NAME` makes one; so does approving an OAuth client.\n".into());
    }
    let mut out = format!(
        "{:<28} {:<10} {:<24} {:>6} {:>8} {:>5}  created\n",
        "id", "kind", "name", "tokens", "channels", "seats"
    );
    for p in list {
        let _ = writeln!(
            out,
            "{:<28} {:<10} {:<24} {:>6} {:>8} {:>5}  {}",
            p.id,
            p.kind,
            printable(&p.name, 24),
            p.live_tokens,
            p.channels,
            p.seats,
            when(p.created_at)
        );
    }
    Ok(out)
}

/// `client list`.
///
/// # Errors
/// Storage failures.
pub async fn client_list(store: &Store) -> Result<String, StoreError> {
    let list = clients::list_clients(store).await?;
    if list.is_empty() {
        return Ok("No OAuth clients are registered.\n".into());
    }
    let mut out = String::new();
    for c in list {
        let _ = writeln!(
            out,
            "{}  {}\n    auth: {}; registered {}; {}; live grants: {}\n    redirect: {}",
            c.client_id,
            printable(c.name.as_deref().unwrap_or("(no name)"), 60),
            c.auth_method,
            when(c.created_at),
            c.approved_at
                .map_or("never approved".to_string(), |t| format!(
                    "first approved {}",
                    when(t)
                )),
            c.live_grants,
            c.redirect_uris
                .iter()
                .map(|u| printable(u, 200))
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    Ok(out)
}

/// `grant list`.
///
/// # Errors
/// Storage failures.
pub async fn grant_list(store: &Store) -> Result<String, StoreError> {
    let list = clients::list_grants(store).await?;
    if list.is_empty() {
        return Ok("No OAuth grants yet.\n".into());
    }
    let mut out = String::new();
    for g in list {
        let _ = writeln!(
            out,
            "{}  principal {}  client {} ({})\n    approved {}; {}; live access tokens: {}",
            g.family_id,
            g.principal_id,
            g.client_id,
            printable(g.client_name.as_deref().unwrap_or("no name"), 60),
            when(g.created_at),
            g.revoked_at
                .map_or("live".to_string(), |t| format!("revoked {}", when(t))),
            g.live_tokens,
        );
    }
    Ok(out)
}

/// `grant revoke FAMILY_ID`: `Err` with a sentence for an unknown grant.
///
/// # Errors
/// Storage failures; an unknown id is `Ok(Err(..))`.
pub async fn grant_revoke(store: &Store, id: &str) -> Result<Result<String, String>, StoreError> {
    Ok(match clients::revoke_grant(store, id).await? {
        None => Err(format!(
            "no grant {id:?}; `mcp-multiplayer grant list` shows them"
        )),
        Some(true) => Ok(format!(
            "Revoked grant {id}: its access tokens stop working now, and its refresh tokens are refused.\n"
        )),
        Some(false) => Ok(format!("Grant {id} was already revoked.\n")),
    })
}

/// `page revoke CHANNEL [--link ID]`: revokes a channel's page links (one,
/// or all). A running daemon's open pages stop at their next request or
/// event-stream keep-alive (within 15 s): this process's commit does not
/// reach the daemon's commit bus.
///
/// # Errors
/// Storage failures; an unknown channel or link is `Ok(Err(..))`.
pub async fn page_revoke(
    store: &Store,
    channel_id: &str,
    link: Option<String>,
) -> Result<Result<String, String>, StoreError> {
    let cid = channel_id.to_string();
    store
        .write(move |tx| {
            if tx.channel(&cid)?.is_none() {
                return Ok(Err(format!(
                    "no channel {cid:?}; `mcp-multiplayer principal list` shows channels"
                )));
            }
            let n = tx.revoke_page_links(&cid, link.as_deref(), crate::secrets::now_ms())?;
            Ok(match (n, &link) {
                (0, Some(id)) => Err(format!(
                    "no live page link {id:?} in channel {cid} (revoked or spent already)"
                )),
                _ => Ok(format!(
                    "Revoked {n} page link(s) of channel {cid}: open pages stop within 15 seconds.\n"
                )),
            })
        })
        .await
}

/// `client revoke CLIENT_ID`: `Err` with a sentence for an unknown client.
///
/// # Errors
/// Storage failures; an unknown id is `Ok(Err(..))`.
pub async fn client_revoke(store: &Store, id: &str) -> Result<Result<String, String>, StoreError> {
    Ok(match clients::revoke_client(store, id).await? {
        None => Err(format!(
            "no client {id:?}; `mcp-multiplayer client list` shows them"
        )),
        Some(n) => Ok(format!(
            "Revoked {n} live grant(s) of client {id}: their tokens stop working now. The client can get access again only through a new approval.\n"
        )),
    })
}

/// Client-chosen text (names, URIs) made safe for a terminal: control
/// characters shown escaped, and cut to `max` characters.
fn printable(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .flat_map(|c| {
            if c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') {
                c.escape_unicode().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .take(max)
        .collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_text_cannot_drive_the_terminal() {
        assert_eq!(printable("ok", 10), "ok");
        let evil = printable("a\u{1b}[2Jb\u{202e}c", 100);
        assert!(
            !evil.contains('\u{1b}') && !evil.contains('\u{202e}'),
            "{evil}"
        );
        assert!(evil.contains("\\u{1b}"), "{evil}");
        assert_eq!(printable("abcdef", 3), "abc…");
    }

    #[test]
    fn config_show_renders_every_section_and_no_secret() {
        let dir = std::env::temp_dir().join(format!("mcpmp-show-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pass = dir.join("passphrase");
        std::fs::write(&pass, "correct horse battery staple\n").unwrap();
        let file: crate::config::FileConfig = toml::from_str(&format!(
            "[auth]\napproval = \"passphrase\"\npassphrase_file = {:?}\n[quotas]\nopen_channels = 7\n",
            pass.display().to_string()
        ))
        .unwrap();
        let mut cfg =
            Config::from_parts(file, &Default::default(), &crate::config::ProcessEnv).unwrap();
        cfg.load_secrets().unwrap();
        let text = config_show(&cfg);
        let parsed: toml::Table = toml::from_str(&text).unwrap();
        for section in ["auth", "bots", "http", "quotas"] {
            assert!(parsed.contains_key(section), "{section} missing:\n{text}");
        }
        assert_eq!(parsed["quotas"]["open_channels"].as_integer(), Some(7));
        assert_eq!(parsed["http"]["header_timeout_secs"].as_integer(), Some(10));
        assert!(!text.contains("horse"), "{text}");
        // The file's shape: what it prints is a config file the daemon takes.
        let again: crate::config::FileConfig = toml::from_str(&text).unwrap();
        let again =
            Config::from_parts(again, &Default::default(), &crate::config::ProcessEnv).unwrap();
        assert_eq!(config_show(&again), text);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
