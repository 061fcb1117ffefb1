//! Configuration: parsed once at start-up into a validated [`Config`].
//!
//! Sources, lowest to highest precedence: built-in defaults, a TOML file
//! (`--config FILE` or `MCP_MULTIPLAYER_CONFIG`), `MCP_MULTIPLAYER_*`
//! environment variables, then command-line flags. Nothing else in the daemon
//! reads the environment.
//!
//! Defaults are the safe ones: bind to loopback, approval `auto` only on
//! loopback, bodies bounded. Options that weaken security are opt-in and named
//! so (`unsafe_no_auth`).

mod database;
mod limits;

pub use database::{DatabaseConfig, PostgresSource};
pub use limits::{FileHttp, FileQuotas, HttpConfig, QuotaConfig};

use crate::client_addr::IpRange;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// File name of the SQLite database inside the state directory.
pub const DB_FILE: &str = "mcp-multiplayer.db";

/// A configuration problem, reported before the daemon binds anything.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML for mcp-multiplayer: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

/// How `/authorize` approves a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Approval {
    /// Approve at once. Allowed only when bound to loopback.
    Auto,
    /// Ask the operator's passphrase on a small HTML page.
    Passphrase,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The TOML file's shape. Every field optional; see [`Config`] for meanings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub state_dir: Option<PathBuf>,
    pub public_url: Option<String>,
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    pub log_format: Option<LogFormat>,
    pub max_body_bytes: Option<usize>,
    pub max_sync_bytes: Option<usize>,
    pub signing_key_file: Option<PathBuf>,
    #[serde(default)]
    pub auth: FileAuth,
    #[serde(default)]
    pub bots: FileBots,
    #[serde(default)]
    pub http: FileHttp,
    #[serde(default)]
    pub quotas: FileQuotas,
    /// `"sqlite"` (default) or a `postgres://` URL without password.
    pub database: Option<String>,
    pub database_password_file: Option<PathBuf>,
    pub database_url_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAuth {
    pub approval: Option<Approval>,
    pub passphrase_file: Option<PathBuf>,
    pub access_token_ttl_secs: Option<u64>,
    pub refresh_token_ttl_secs: Option<u64>,
    pub code_ttl_secs: Option<u64>,
    pub refresh_grace_secs: Option<u64>,
    pub custom_redirect_schemes: Option<Vec<String>>,
    pub client_metadata_documents: Option<bool>,
    pub test_only_loopback_client_metadata: Option<bool>,
    pub registrations_per_minute: Option<u32>,
    pub unapproved_clients_per_address: Option<u32>,
    pub unapproved_clients_total: Option<u32>,
    pub pending_approvals_per_address: Option<u32>,
    pub pending_approvals_total: Option<u32>,
    pub passphrase_free_failures: Option<u32>,
    pub passphrase_max_backoff_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileBots {
    pub runner: Option<PathBuf>,
    pub python: Option<PathBuf>,
    pub python_args: Option<Vec<String>>,
    pub bots_dir: Option<PathBuf>,
    pub python_path: Option<Vec<PathBuf>>,
    pub max_parallel_hooks: Option<usize>,
    pub sandbox_uid: Option<u32>,
    pub sandbox_gid: Option<u32>,
    pub network_allow_cidrs: Option<Vec<String>>,
    pub system_dirs: Option<Vec<PathBuf>>,
    pub warm_min: Option<usize>,
    pub warm_max: Option<usize>,
    pub warm_idle_secs: Option<u64>,
    pub fork_templates: Option<bool>,
}

/// Command-line overrides (the `serve` flags).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub listen: Option<String>,
    pub state_dir: Option<PathBuf>,
    pub public_url: Option<String>,
    pub unsafe_no_auth: bool,
}

/// The validated configuration.
#[derive(Clone)]
pub struct Config {
    /// Address to bind. Default `127.0.0.1:8201`.
    pub listen: SocketAddr,
    /// Directory of the SQLite database. Default `$STATE_DIRECTORY` (systemd)
    /// or the current directory.
    pub state_dir: PathBuf,
    /// The origin clients use (`https://mcp.example.com`), without a path.
    /// Sets the OAuth issuer and resource and is added to the allowed Host and
    /// Origin values. Default `http://<listen>`.
    pub public_url: url::Url,
    /// Whether `public_url` was configured (else it follows the bound address).
    pub public_url_explicit: bool,
    /// Host header values accepted on `/mcp` besides loopback names, the
    /// listen address and `public_url`'s host (DNS-rebinding defence).
    pub allowed_hosts: Vec<String>,
    /// Origin values accepted besides `public_url`'s and loopback origins. A
    /// request with any other `Origin` header is refused with 403.
    pub allowed_origins: Vec<String>,
    /// Reverse proxies whose `X-Forwarded-For` names the client (addresses or
    /// ranges). Default none: per-address limits count the TCP peer, and a
    /// forged header changes nothing. Behind a proxy on the same machine, set
    /// `["127.0.0.1", "::1"]`, or every client counts as the proxy.
    pub trusted_proxies: Vec<IpRange>,
    pub log_format: LogFormat,
    /// Largest message body, in bytes of canonical JSON. Default 64 KiB.
    pub max_body_bytes: usize,
    /// Byte budget of one page of messages (a `sync_messages` result, a
    /// channel resource): a page stops before the message that would pass it
    /// and says more is waiting. Bounds the memory of one read and the size
    /// of one answer. Default 1 MiB; 64 KiB to 16 MiB.
    pub max_sync_bytes: usize,
    /// Where the key that signs transcript heads comes from: the file
    /// `signing_key_file` (or `MCP_MULTIPLAYER_SIGNING_KEY_FILE`) names, else
    /// the systemd credential `signing-key`, else `signing-key.pem` in the
    /// state directory, generated on first start. Whoever reads the key can
    /// forge this daemon's signatures: the daemon refuses a key file other
    /// users can read. Never shown by `config show` (only where it lives).
    pub signing_key: crate::signing::KeySource,
    pub auth: AuthConfig,
    pub bots: BotsConfig,
    /// Timeouts, connection caps, MCP sessions, shutdown (`[http]`).
    pub http: HttpConfig,
    /// Per-principal quotas and rate limits (`[quotas]`).
    pub quotas: QuotaConfig,
    /// SQLite in the state directory, or a shared PostgreSQL database.
    pub database: DatabaseConfig,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No secrets live in Config (the passphrase stays in its file), but keep
        // the Debug output short and explicit.
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("state_dir", &self.state_dir)
            .field("public_url", &self.public_url.as_str())
            .field("approval", &self.auth.approval)
            .finish_non_exhaustive()
    }
}

/// Authorization settings.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub approval: Approval,
    /// File holding the approval passphrase; default
    /// `$CREDENTIALS_DIRECTORY/passphrase` when systemd provides it.
    pub passphrase_file: Option<PathBuf>,
    /// Lifetime of an OAuth access token. Default 3600 (1 h).
    pub access_token_ttl_secs: u64,
    /// Lifetime of an OAuth refresh token; each rotation starts a new one.
    /// Default 30 days.
    pub refresh_token_ttl_secs: u64,
    /// Lifetime of an authorization code, 0-60 s. Default 60. (0 makes
    /// every code expire at once; it exists for tests.)
    pub code_ttl_secs: u64,
    /// How long a rotated refresh token still works, for clients that
    /// refresh concurrently (claude.ai does), 0-300 s. Default 60. Reuse
    /// after this window revokes the whole grant.
    pub refresh_grace_secs: u64,
    /// The approval passphrase's SHA-256, read by [`Config::load_secrets`]
    /// at start-up (never from argv or the environment).
    pub passphrase: Option<Passphrase>,
    /// Serve `/mcp` without authentication. Loopback only; for the MCP
    /// conformance suite, which cannot send credentials.
    pub unsafe_no_auth: bool,
    /// Private-use URI schemes (RFC 8252 §7.1) a native client may register
    /// as its redirect URI. Default Cursor's and VS Code's. Schemes that a
    /// browser or the OS hands to a web page or a script are refused even
    /// here.
    pub custom_redirect_schemes: Vec<String>,
    /// Accept Client ID Metadata Documents: an https URL as `client_id`,
    /// which the server fetches. Default on.
    pub client_metadata_documents: bool,
    /// TEST ONLY: also fetch client metadata documents over plain http from
    /// loopback addresses, which the fetch otherwise refuses. Refused unless
    /// the daemon listens on loopback.
    pub test_only_loopback_client_metadata: bool,
    /// Limits on what unauthenticated requests can make the server store.
    pub limits: OAuthLimits,
}

/// Limits of the OAuth endpoints. None of them refuses everyone because of
/// someone else: caps evict the oldest entries, and throttles count per
/// address (an IPv4 address or an IPv6 /64).
#[derive(Debug, Clone, Copy)]
pub struct OAuthLimits {
    /// Registrations (and client metadata fetches) per address and minute;
    /// also the burst. Default 30.
    pub registrations_per_minute: u32,
    /// Clients registered but not yet approved, kept per address; the
    /// oldest is dropped beyond. Default 100.
    pub unapproved_clients_per_address: u32,
    /// The same in total; beyond it the oldest of the address holding the
    /// most is dropped. Default 10,000.
    pub unapproved_clients_total: u32,
    /// Sign-ins waiting on the approval page, per address (oldest dropped).
    /// Default 10.
    pub pending_approvals_per_address: u32,
    /// The same in total (oldest of the address holding the most dropped).
    /// Default 1,000.
    pub pending_approvals_total: u32,
    /// Wrong passphrases an address may try before each next try waits:
    /// 1 s, then twice as long each time. Default 5.
    pub passphrase_free_failures: u32,
    /// The longest such wait, 1 s to a day. Default 900 (15 min).
    pub passphrase_max_backoff_secs: u64,
}

impl Default for OAuthLimits {
    fn default() -> Self {
        OAuthLimits {
            registrations_per_minute: 30,
            unapproved_clients_per_address: 100,
            unapproved_clients_total: 10_000,
            pending_approvals_per_address: 10,
            pending_approvals_total: 1_000,
            passphrase_free_failures: 5,
            passphrase_max_backoff_secs: 900,
        }
    }
}

/// The private-use redirect schemes accepted by default: Cursor's
/// (`cursor://anysphere.cursor-mcp/oauth/callback`) and VS Code's URL
/// handlers (stable and Insiders).
pub const DEFAULT_CUSTOM_REDIRECT_SCHEMES: &[&str] = &["cursor", "vscode", "vscode-insiders"];

/// Schemes no redirect URI may use, configured or not: a browser runs them
/// (`javascript`, `vbscript`, `data`), reads local or browser-internal
/// resources with them (`file`, `blob`, `filesystem`, `about`, `view-source`),
/// or hands them to a web page (`web+…` handlers that sites register,
/// Android's `intent` with its web fallback). `http` and `https` have their
/// own rules.
pub fn forbidden_redirect_scheme(scheme: &str) -> bool {
    let s = scheme.to_ascii_lowercase();
    matches!(
        s.as_str(),
        "javascript"
            | "vbscript"
            | "data"
            | "file"
            | "blob"
            | "filesystem"
            | "about"
            | "view-source"
            | "intent"
            | "http"
            | "https"
            | "ws"
            | "wss"
    ) || s.starts_with("web+")
}

/// The operator's approval passphrase, kept only as its SHA-256 so that the
/// plaintext neither stays in memory nor shows up in `Debug` output.
#[derive(Clone)]
pub struct Passphrase([u8; 32]);

impl Passphrase {
    /// The passphrase from its file's text: trailing newlines dropped.
    ///
    /// # Errors
    /// An empty passphrase.
    pub fn from_file_text(text: &str) -> Result<Passphrase, ConfigError> {
        let p = text.trim_end_matches(['\n', '\r']);
        if p.trim().is_empty() {
            return Err(ConfigError::Invalid(
                "the passphrase file is empty; write a long random passphrase into it".into(),
            ));
        }
        Ok(Passphrase::new(p))
    }

    pub fn new(plain: &str) -> Passphrase {
        use sha2::Digest;
        Passphrase(sha2::Sha256::digest(plain.as_bytes()).into())
    }

    /// Constant-time comparison with a candidate (hashed first, so the time
    /// depends on neither the length nor the content of the secret).
    pub fn matches(&self, candidate: &str) -> bool {
        use sha2::Digest;
        use subtle::ConstantTimeEq;
        let c: [u8; 32] = sha2::Sha256::digest(candidate.as_bytes()).into();
        bool::from(self.0.ct_eq(&c))
    }
}

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

/// Bot sandbox settings.
#[derive(Debug, Clone)]
pub struct BotsConfig {
    /// The `sandbox-runner` binary. Default: next to the daemon's executable.
    pub runner: PathBuf,
    /// A real Python 3 binary (never a pyenv shim). Default `/usr/bin/python3`.
    pub python: PathBuf,
    pub python_args: Vec<String>,
    /// Builtin bots and the harness (`harness/harness.py`).
    pub bots_dir: PathBuf,
    /// Extra directories on bots' `sys.path` (where `requests` lives).
    pub python_path: Vec<PathBuf>,
    /// Hooks running at once across channels.
    pub max_parallel_hooks: usize,
    /// First of `max_parallel_hooks + 1` consecutive uids hooks run as when
    /// the daemon runs as root (one per running hook, plus one for
    /// inspections): RLIMIT_NPROC is counted per uid.
    pub sandbox_uid: u32,
    pub sandbox_gid: u32,
    /// Operator exceptions to the refused private ranges, for network bots.
    pub network_allow_cidrs: Vec<String>,
    /// Read-only directories the sandbox binds first, where a store-path
    /// interpreter's loader and libraries live. Default: `/nix/store` when
    /// `python` resolves into it, else none.
    pub system_dirs: Vec<PathBuf>,
    /// Pre-warmed sandboxes kept ready per kind of hook (network or not,
    /// sandbox uid) once that kind has run, even when idle. Default 1.
    /// Each holds a confined interpreter that has loaded the harness (see
    /// docs/operations.md for its memory); 0 keeps none while idle.
    pub warm_min: usize,
    /// At most this many per kind, however busy, and per sandbox uid
    /// across all kinds (never more than a quarter of a hook's thread
    /// limit, which waiting sandboxes share). Default 4; 0 turns
    /// pre-warming off (every hook starts its sandbox cold).
    pub warm_max: usize,
    /// A pre-warmed sandbox that gets no job for this long tears itself
    /// down and is replaced. Default 300 s. A fork template with no hook
    /// for this long exits too.
    pub warm_idle_secs: u64,
    /// Fork templates for seeded bots without network: one confined
    /// interpreter per bot (at most 16, each with a sandbox uid of its own
    /// after the inspections' uid) forks one child per hook, which confines
    /// itself the rest of the way before it reads its job: a hook then
    /// costs a `fork`, not an interpreter start. A child shares with its
    /// siblings what a fork shares (address-space layout, the Landlock
    /// domain, the template's loaded memory): docs/operations.md, "Fork
    /// templates". Default true; `false` runs every hook pre-warmed or
    /// fresh, as before templates.
    pub fork_templates: bool,
}

/// Reads `MCP_MULTIPLAYER_*` variables through a lookup function, so tests
/// can supply their own environment.
pub trait Env {
    fn var(&self, key: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok().filter(|v| !v.is_empty())
    }
}

impl Config {
    /// Loads the configuration from file, environment and flags.
    ///
    /// # Errors
    /// Unreadable or invalid file, or values that fail validation (for
    /// example `approval = "auto"` on a non-loopback bind).
    pub fn load(over: &Overrides, env: &dyn Env) -> Result<Config, ConfigError> {
        let path = over
            .config
            .clone()
            .or_else(|| env.var("MCP_MULTIPLAYER_CONFIG").map(PathBuf::from));
        let file = match &path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.clone(),
                    source,
                })?;
                toml::from_str(&text).map_err(|source| ConfigError::Parse {
                    path: p.clone(),
                    source,
                })?
            }
            None => FileConfig::default(),
        };
        Self::from_parts(file, over, env)
    }

    /// Builds a config from already-parsed parts (used by [`Config::load`]
    /// and by tests).
    pub fn from_parts(
        file: FileConfig,
        over: &Overrides,
        env: &dyn Env,
    ) -> Result<Config, ConfigError> {
        let listen_s = over
            .listen
            .clone()
            .or_else(|| env.var("MCP_MULTIPLAYER_LISTEN"))
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:8201".to_string());
        let listen: SocketAddr = listen_s.parse().map_err(|_| {
            ConfigError::Invalid(format!(
                "listen address {listen_s:?} is not IP:PORT (for example 127.0.0.1:8201 or [::1]:8201)"
            ))
        })?;
        let state_dir = over
            .state_dir
            .clone()
            .or_else(|| env.var("MCP_MULTIPLAYER_STATE_DIR").map(PathBuf::from))
            .or(file.state_dir)
            .or_else(|| env.var("STATE_DIRECTORY").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("."));
        let public_s = over
            .public_url
            .clone()
            .or_else(|| env.var("MCP_MULTIPLAYER_PUBLIC_URL"))
            .or(file.public_url);
        let public_url_explicit = public_s.is_some();
        let public_url = match public_s {
            Some(s) => parse_public_url(&s)?,
            None => {
                let host = if listen.ip().is_unspecified() {
                    "127.0.0.1".to_string()
                } else {
                    match listen.ip() {
                        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
                        std::net::IpAddr::V4(v4) => v4.to_string(),
                    }
                };
                parse_public_url(&format!("http://{host}:{}", listen.port()))?
            }
        };
        let mut allowed_hosts = file.allowed_hosts;
        if let Some(extra) = env.var("MCP_MULTIPLAYER_ALLOWED_HOSTS") {
            allowed_hosts.extend(extra.split(',').map(|s| s.trim().to_string()));
        }
        let mut allowed_origins = file.allowed_origins;
        if let Some(extra) = env.var("MCP_MULTIPLAYER_ALLOWED_ORIGINS") {
            allowed_origins.extend(extra.split(',').map(|s| s.trim().to_string()));
        }
        let log_format = match env.var("MCP_MULTIPLAYER_LOG_FORMAT").as_deref() {
            Some("json") => LogFormat::Json,
            Some("text") => LogFormat::Text,
            Some(other) => {
                return Err(ConfigError::Invalid(format!(
                    "MCP_MULTIPLAYER_LOG_FORMAT={other:?}: use \"text\" or \"json\""
                )));
            }
            None => file.log_format.unwrap_or_default(),
        };
        let mut proxies_s = file.trusted_proxies;
        if let Some(extra) = env.var("MCP_MULTIPLAYER_TRUSTED_PROXIES") {
            proxies_s.extend(extra.split(',').map(|s| s.trim().to_string()));
        }
        let trusted_proxies = proxies_s
            .iter()
            .filter(|s| !s.trim().is_empty())
            .map(|s| {
                s.parse::<IpRange>()
                    .map_err(|e| ConfigError::Invalid(format!("trusted_proxies: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let max_body_bytes = file.max_body_bytes.unwrap_or(64 * 1024);
        if !(1024..=1024 * 1024).contains(&max_body_bytes) {
            return Err(ConfigError::Invalid(format!(
                "max_body_bytes = {max_body_bytes}: choose between 1024 and 1048576"
            )));
        }
        let max_sync_bytes = file
            .max_sync_bytes
            .unwrap_or(crate::channels::DEFAULT_MAX_SYNC_BYTES);
        if !(64 * 1024..=16 * 1024 * 1024).contains(&max_sync_bytes) {
            return Err(ConfigError::Invalid(format!(
                "max_sync_bytes = {max_sync_bytes}: choose between 65536 and 16777216"
            )));
        }

        let signing_key = crate::signing::KeySource::resolve(
            env.var("MCP_MULTIPLAYER_SIGNING_KEY_FILE")
                .map(PathBuf::from)
                .or(file.signing_key_file)
                .as_deref(),
            env.var("CREDENTIALS_DIRECTORY")
                .map(PathBuf::from)
                .as_deref(),
            &state_dir,
        );

        let loopback = listen.ip().is_loopback();
        let approval = match env.var("MCP_MULTIPLAYER_APPROVAL").as_deref() {
            Some("auto") => Some(Approval::Auto),
            Some("passphrase") => Some(Approval::Passphrase),
            Some(other) => {
                return Err(ConfigError::Invalid(format!(
                    "MCP_MULTIPLAYER_APPROVAL={other:?}: use \"auto\" or \"passphrase\""
                )));
            }
            None => file.auth.approval,
        }
        // Behind a reverse proxy the bind is loopback but the clients are not:
        // a public_url naming another host means a public deployment.
        .unwrap_or(if loopback && names_loopback(&public_url) {
            Approval::Auto
        } else {
            Approval::Passphrase
        });
        if approval == Approval::Auto && !loopback {
            return Err(ConfigError::Invalid(format!(
                "approval = \"auto\" would let anyone who reaches {listen} sign in; it is allowed only on a loopback address. Use approval = \"passphrase\" with passphrase_file, or bind to 127.0.0.1 behind a reverse proxy"
            )));
        }
        let passphrase_file = env
            .var("MCP_MULTIPLAYER_PASSPHRASE_FILE")
            .map(PathBuf::from)
            .or(file.auth.passphrase_file)
            .or_else(|| {
                env.var("CREDENTIALS_DIRECTORY")
                    .map(|d| Path::new(&d).join("passphrase"))
            });
        if over.unsafe_no_auth && !loopback {
            return Err(ConfigError::Invalid(format!(
                "--unsafe-no-auth serves every channel to anyone who connects; it refuses to start on {listen}, which is not a loopback address"
            )));
        }
        let code_ttl_secs = file.auth.code_ttl_secs.unwrap_or(60);
        if code_ttl_secs > 60 {
            return Err(ConfigError::Invalid(format!(
                "auth.code_ttl_secs = {code_ttl_secs}: authorization codes live at most 60 s"
            )));
        }
        let refresh_grace_secs = file.auth.refresh_grace_secs.unwrap_or(60);
        if refresh_grace_secs > 300 {
            return Err(ConfigError::Invalid(format!(
                "auth.refresh_grace_secs = {refresh_grace_secs}: choose at most 300"
            )));
        }
        let custom_redirect_schemes = match file.auth.custom_redirect_schemes {
            Some(list) => list
                .into_iter()
                .map(|s| check_custom_scheme(&s))
                .collect::<Result<Vec<_>, _>>()?,
            None => DEFAULT_CUSTOM_REDIRECT_SCHEMES
                .iter()
                .map(|s| s.to_string())
                .collect(),
        };
        let test_only_loopback_client_metadata = file
            .auth
            .test_only_loopback_client_metadata
            .unwrap_or(false);
        if test_only_loopback_client_metadata && !loopback {
            return Err(ConfigError::Invalid(format!(
                "auth.test_only_loopback_client_metadata lets clients make the server fetch from its own loopback addresses; it exists for tests and refuses to start on {listen}, which is not a loopback address"
            )));
        }
        let d = OAuthLimits::default();
        let limits = OAuthLimits {
            registrations_per_minute: at_least_one(
                "registrations_per_minute",
                file.auth.registrations_per_minute,
                d.registrations_per_minute,
            )?,
            unapproved_clients_per_address: at_least_one(
                "unapproved_clients_per_address",
                file.auth.unapproved_clients_per_address,
                d.unapproved_clients_per_address,
            )?,
            unapproved_clients_total: at_least_one(
                "unapproved_clients_total",
                file.auth.unapproved_clients_total,
                d.unapproved_clients_total,
            )?,
            pending_approvals_per_address: at_least_one(
                "pending_approvals_per_address",
                file.auth.pending_approvals_per_address,
                d.pending_approvals_per_address,
            )?,
            pending_approvals_total: at_least_one(
                "pending_approvals_total",
                file.auth.pending_approvals_total,
                d.pending_approvals_total,
            )?,
            passphrase_free_failures: at_least_one(
                "passphrase_free_failures",
                file.auth.passphrase_free_failures,
                d.passphrase_free_failures,
            )?,
            passphrase_max_backoff_secs: file
                .auth
                .passphrase_max_backoff_secs
                .unwrap_or(d.passphrase_max_backoff_secs)
                .clamp(1, 24 * 3600),
        };
        let auth = AuthConfig {
            approval,
            passphrase_file,
            access_token_ttl_secs: file.auth.access_token_ttl_secs.unwrap_or(3600),
            refresh_token_ttl_secs: file.auth.refresh_token_ttl_secs.unwrap_or(30 * 24 * 3600),
            code_ttl_secs,
            refresh_grace_secs,
            passphrase: None,
            unsafe_no_auth: over.unsafe_no_auth,
            custom_redirect_schemes,
            client_metadata_documents: file.auth.client_metadata_documents.unwrap_or(true),
            test_only_loopback_client_metadata,
            limits,
        };

        let exe_dir = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("."));
        let b = file.bots;
        let python = b
            .python
            .unwrap_or_else(|| PathBuf::from("/usr/bin/python3"));
        let system_dirs = b
            .system_dirs
            .unwrap_or_else(|| default_system_dirs(&python));
        let bots = BotsConfig {
            runner: b.runner.unwrap_or_else(|| exe_dir.join("sandbox-runner")),
            python,
            python_args: b
                .python_args
                .unwrap_or_else(|| vec!["-I".into(), "-S".into(), "-B".into()]),
            bots_dir: b.bots_dir.unwrap_or_else(|| default_bots_dir(&exe_dir)),
            python_path: b.python_path.unwrap_or_else(default_python_path),
            max_parallel_hooks: b.max_parallel_hooks.unwrap_or(4).max(1),
            sandbox_uid: b.sandbox_uid.unwrap_or(64200),
            sandbox_gid: b.sandbox_gid.unwrap_or(64200),
            network_allow_cidrs: b.network_allow_cidrs.unwrap_or_default(),
            system_dirs,
            warm_max: b.warm_max.unwrap_or(4),
            warm_min: b.warm_min.unwrap_or(1).min(b.warm_max.unwrap_or(4)),
            warm_idle_secs: b.warm_idle_secs.unwrap_or(300).clamp(30, 86_400),
            fork_templates: b.fork_templates.unwrap_or(true),
        };
        Ok(Config {
            listen,
            state_dir,
            public_url,
            public_url_explicit,
            allowed_hosts,
            allowed_origins,
            trusted_proxies,
            log_format,
            max_body_bytes,
            max_sync_bytes,
            signing_key,
            auth,
            bots,
            http: HttpConfig::from_file(file.http)?,
            quotas: QuotaConfig::from_file(file.quotas)?,
            database: DatabaseConfig::from_parts(
                file.database,
                file.database_password_file,
                file.database_url_file,
                env,
            )?,
        })
    }

    /// Records the address actually bound (port 0 picks one); a defaulted
    /// `public_url` follows it.
    pub fn bound_to(&mut self, addr: SocketAddr) {
        self.listen = addr;
        if !self.public_url_explicit {
            let host = match addr.ip() {
                ip if ip.is_unspecified() => "127.0.0.1".to_string(),
                std::net::IpAddr::V6(v6) => format!("[{v6}]"),
                std::net::IpAddr::V4(v4) => v4.to_string(),
            };
            if let Ok(u) = url::Url::parse(&format!("http://{host}:{}", addr.port())) {
                self.public_url = u;
            }
        }
    }

    /// Reads the secrets the server needs (the approval passphrase) from
    /// their files. Called by `serve` only, so that CLI commands work without
    /// access to the service's credentials.
    ///
    /// # Errors
    /// `approval = "passphrase"` without a readable, non-empty passphrase file.
    pub fn load_secrets(&mut self) -> Result<(), ConfigError> {
        if self.auth.approval != Approval::Passphrase || self.auth.unsafe_no_auth {
            return Ok(());
        }
        let Some(path) = &self.auth.passphrase_file else {
            return Err(ConfigError::Invalid(
                "approval = \"passphrase\" needs the passphrase: set auth.passphrase_file (or MCP_MULTIPLAYER_PASSPHRASE_FILE), or load it as the systemd credential \"passphrase\"".into(),
            ));
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        self.auth.passphrase = Some(Passphrase::from_file_text(&text)?);
        Ok(())
    }

    /// Path of the SQLite database.
    pub fn db_path(&self) -> PathBuf {
        self.state_dir.join(DB_FILE)
    }

    /// The MCP resource identifier: `PUBLIC_URL/mcp`.
    pub fn resource(&self) -> String {
        format!("{}/mcp", self.public_origin())
    }

    /// `public_url` without a trailing slash.
    pub fn public_origin(&self) -> String {
        self.public_url.as_str().trim_end_matches('/').to_string()
    }

    /// Host header values `/mcp` accepts.
    pub fn host_allowlist(&self) -> Vec<String> {
        let mut hosts: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
        if !self.listen.ip().is_unspecified() {
            hosts.push(self.listen.ip().to_string());
        }
        if let Some(h) = self.public_url.host_str() {
            hosts.push(h.trim_start_matches('[').trim_end_matches(']').to_string());
        }
        hosts.extend(self.allowed_hosts.iter().cloned());
        hosts.sort();
        hosts.dedup();
        hosts
    }

    /// Origin values `/mcp` accepts; any other Origin header is refused.
    pub fn origin_allowlist(&self) -> Vec<String> {
        let mut origins = vec![
            "http://localhost:*".to_string(),
            "http://127.0.0.1:*".to_string(),
            "http://[::1]:*".to_string(),
        ];
        let o = self.public_url.origin().ascii_serialization();
        let with_port = if self.public_url.port().is_some() {
            o
        } else {
            format!(
                "{o}:{}",
                self.public_url.port_or_known_default().unwrap_or(443)
            )
        };
        origins.push(with_port);
        origins.extend(self.allowed_origins.iter().cloned());
        origins.sort();
        origins.dedup();
        origins
    }
}

/// A configured private-use redirect scheme, lowercased: a URI scheme token
/// (RFC 3986 §3.1) that is not one of the [forbidden](forbidden_redirect_scheme).
fn check_custom_scheme(s: &str) -> Result<String, ConfigError> {
    let s = s.trim().trim_end_matches("://").trim_end_matches(':');
    let valid = s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !valid {
        return Err(ConfigError::Invalid(format!(
            "auth.custom_redirect_schemes: {s:?} is not a URI scheme (give the name only, like \"cursor\")"
        )));
    }
    if forbidden_redirect_scheme(s) {
        return Err(ConfigError::Invalid(format!(
            "auth.custom_redirect_schemes: {s:?} cannot be allowed: a browser would run it, read local data with it or hand the code to a web page (http and https have their own rules)"
        )));
    }
    Ok(s.to_ascii_lowercase())
}

/// An optional limit that must be at least 1.
fn at_least_one(key: &str, v: Option<u32>, default: u32) -> Result<u32, ConfigError> {
    match v {
        None => Ok(default),
        Some(0) => Err(ConfigError::Invalid(format!(
            "auth.{key} = 0 would refuse everyone; choose at least 1"
        ))),
        Some(n) => Ok(n),
    }
}

fn parse_public_url(s: &str) -> Result<url::Url, ConfigError> {
    let u = url::Url::parse(s).map_err(|e| {
        ConfigError::Invalid(format!(
            "public_url {s:?} is not a URL ({e}); give the origin clients use, like https://mcp.example.com"
        ))
    })?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err(ConfigError::Invalid(format!(
            "public_url {s:?} must be an http(s) origin like https://mcp.example.com"
        )));
    }
    if u.path() != "/" || u.query().is_some() || u.fragment().is_some() {
        return Err(ConfigError::Invalid(format!(
            "public_url {s:?} must be an origin without a path: MCP is served at PUBLIC_URL/mcp"
        )));
    }
    Ok(u)
}

/// Whether `u`'s host is a loopback name or address.
fn names_loopback(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// The installed share directory, or the source tree's `bots/` for `cargo run`.
fn default_bots_dir(exe_dir: &Path) -> PathBuf {
    let installed = exe_dir.join("../share/mcp-multiplayer/bots");
    if installed.join("harness/harness.py").exists() {
        return installed;
    }
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../bots"))
}

/// On NixOS the interpreter, its loader and its libraries are all store
/// paths: bind the store (read-only) so the sandbox can run it.
fn default_system_dirs(python: &Path) -> Vec<PathBuf> {
    let store = Path::new("/nix/store");
    match std::fs::canonicalize(python) {
        Ok(p) if p.starts_with(store) => vec![store.to_path_buf()],
        _ => Vec::new(),
    }
}

/// Debian's `python3-requests` lives in dist-packages, which `-S` leaves off
/// `sys.path`; offer it to network bots when it is there.
fn default_python_path() -> Vec<PathBuf> {
    let deb = PathBuf::from("/usr/lib/python3/dist-packages");
    if deb.join("requests").is_dir() {
        vec![deb]
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct MapEnv(HashMap<&'static str, &'static str>);
    impl Env for MapEnv {
        fn var(&self, key: &str) -> Option<String> {
            self.0.get(key).map(|s| s.to_string())
        }
    }
    fn env(pairs: &[(&'static str, &'static str)]) -> MapEnv {
        MapEnv(pairs.iter().cloned().collect())
    }

    #[test]
    fn defaults_are_loopback_and_auto() {
        let c =
            Config::from_parts(FileConfig::default(), &Overrides::default(), &env(&[])).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8201");
        assert_eq!(c.auth.approval, Approval::Auto);
        assert_eq!(c.db_path(), PathBuf::from("./mcp-multiplayer.db"));
        assert_eq!(c.resource(), "http://127.0.0.1:8201/mcp");
    }

    #[test]
    fn the_sync_page_budget_defaults_to_a_mebibyte_and_stays_in_range() {
        let c =
            Config::from_parts(FileConfig::default(), &Overrides::default(), &env(&[])).unwrap();
        assert_eq!(c.max_sync_bytes, 1024 * 1024);
        for (bytes, ok) in [
            (65_536, true),
            (16 << 20, true),
            (65_535, false),
            ((16 << 20) + 1, false),
        ] {
            let file = FileConfig {
                max_sync_bytes: Some(bytes),
                ..FileConfig::default()
            };
            let r = Config::from_parts(file, &Overrides::default(), &env(&[]));
            assert_eq!(r.is_ok(), ok, "{bytes}");
            if let Err(e) = r {
                assert!(e.to_string().contains("max_sync_bytes"), "{e}");
            }
        }
    }

    #[test]
    fn state_directory_from_systemd() {
        let c = Config::from_parts(
            FileConfig::default(),
            &Overrides::default(),
            &env(&[("STATE_DIRECTORY", "/var/lib/mcp-multiplayer")]),
        )
        .unwrap();
        assert_eq!(c.state_dir, PathBuf::from("/var/lib/mcp-multiplayer"));
    }

    #[test]
    fn public_bind_defaults_to_passphrase_and_refuses_auto() {
        let over = Overrides {
            listen: Some("0.0.0.0:8201".into()),
            ..Default::default()
        };
        let c = Config::from_parts(FileConfig::default(), &over, &env(&[])).unwrap();
        assert_eq!(c.auth.approval, Approval::Passphrase);
        let err = Config::from_parts(
            FileConfig::default(),
            &over,
            &env(&[("MCP_MULTIPLAYER_APPROVAL", "auto")]),
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("only on a loopback"), "{err}");
    }

    #[test]
    fn a_public_url_behind_a_proxy_defaults_to_passphrase() {
        let over = Overrides {
            public_url: Some("https://mcp.example.com".into()),
            ..Default::default()
        };
        let c = Config::from_parts(FileConfig::default(), &over, &env(&[])).unwrap();
        assert_eq!(c.auth.approval, Approval::Passphrase);
        let local = Overrides {
            public_url: Some("http://localhost:8201".into()),
            ..Default::default()
        };
        let c = Config::from_parts(FileConfig::default(), &local, &env(&[])).unwrap();
        assert_eq!(c.auth.approval, Approval::Auto);
        // Explicit auto stays possible on a loopback bind.
        let c = Config::from_parts(
            FileConfig::default(),
            &over,
            &env(&[("MCP_MULTIPLAYER_APPROVAL", "auto")]),
        )
        .unwrap();
        assert_eq!(c.auth.approval, Approval::Auto);
    }

    #[test]
    fn unsafe_no_auth_refuses_public_bind() {
        let over = Overrides {
            listen: Some("0.0.0.0:8201".into()),
            unsafe_no_auth: true,
            ..Default::default()
        };
        let err = Config::from_parts(FileConfig::default(), &over, &env(&[]))
            .err()
            .unwrap();
        assert!(err.to_string().contains("not a loopback"), "{err}");
    }

    #[test]
    fn flags_beat_env_beat_file() {
        let file: FileConfig = toml::from_str("listen = \"127.0.0.1:1\"\n").unwrap();
        let c = Config::from_parts(
            file,
            &Overrides::default(),
            &env(&[("MCP_MULTIPLAYER_LISTEN", "127.0.0.1:2")]),
        )
        .unwrap();
        assert_eq!(c.listen.port(), 2);
        let file: FileConfig = toml::from_str("listen = \"127.0.0.1:1\"\n").unwrap();
        let over = Overrides {
            listen: Some("127.0.0.1:3".into()),
            ..Default::default()
        };
        let c = Config::from_parts(
            file,
            &over,
            &env(&[("MCP_MULTIPLAYER_LISTEN", "127.0.0.1:2")]),
        )
        .unwrap();
        assert_eq!(c.listen.port(), 3);
    }

    #[test]
    fn public_url_sets_hosts_origins_and_resource() {
        let over = Overrides {
            public_url: Some("https://mcp.example.com".into()),
            ..Default::default()
        };
        let c = Config::from_parts(FileConfig::default(), &over, &env(&[])).unwrap();
        assert_eq!(c.resource(), "https://mcp.example.com/mcp");
        assert!(c.host_allowlist().contains(&"mcp.example.com".to_string()));
        assert!(
            c.origin_allowlist()
                .contains(&"https://mcp.example.com:443".to_string())
        );
        let bad = Overrides {
            public_url: Some("https://mcp.example.com/mcp".into()),
            ..Default::default()
        };
        assert!(Config::from_parts(FileConfig::default(), &bad, &env(&[])).is_err());
    }

    #[test]
    fn passphrase_is_read_from_its_file_and_never_printed() {
        let dir = std::env::temp_dir().join(format!("mcpmp-pass-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("passphrase");
        std::fs::write(&file, "correct horse battery staple\n").unwrap();
        let toml = format!(
            "[auth]\napproval = \"passphrase\"\npassphrase_file = {:?}\n",
            file.display().to_string()
        );
        let mut c = Config::from_parts(
            toml::from_str(&toml).unwrap(),
            &Overrides::default(),
            &env(&[]),
        )
        .unwrap();
        assert!(c.auth.passphrase.is_none(), "read only by load_secrets");
        c.load_secrets().unwrap();
        let p = c.auth.passphrase.clone().unwrap();
        assert!(p.matches("correct horse battery staple"));
        assert!(!p.matches("correct horse battery staple\n"));
        assert!(!p.matches("wrong"));
        assert!(!format!("{:?}", c.auth).contains("horse"));
        std::fs::write(&file, "\n").unwrap();
        assert!(c.load_secrets().is_err(), "an empty passphrase is refused");
        let _ = std::fs::remove_dir_all(&dir);

        let mut missing = Config::from_parts(
            toml::from_str("[auth]\napproval = \"passphrase\"\n").unwrap(),
            &Overrides::default(),
            &env(&[]),
        )
        .unwrap();
        let err = missing.load_secrets().err().unwrap();
        assert!(err.to_string().contains("passphrase_file"), "{err}");
    }

    #[test]
    fn code_ttl_is_at_most_a_minute() {
        let f: FileConfig = toml::from_str("[auth]\ncode_ttl_secs = 61\n").unwrap();
        assert!(Config::from_parts(f, &Overrides::default(), &env(&[])).is_err());
    }

    #[test]
    fn trusted_proxies_are_none_by_default_and_parsed_from_file_and_env() {
        let c =
            Config::from_parts(FileConfig::default(), &Overrides::default(), &env(&[])).unwrap();
        assert!(
            c.trusted_proxies.is_empty(),
            "nobody's X-Forwarded-For is believed by default"
        );
        let f: FileConfig =
            toml::from_str("trusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\"]\n").unwrap();
        let c = Config::from_parts(
            f,
            &Overrides::default(),
            &env(&[("MCP_MULTIPLAYER_TRUSTED_PROXIES", "::1, 192.168.0.0/16")]),
        )
        .unwrap();
        let shown: Vec<String> = c.trusted_proxies.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            shown,
            ["127.0.0.1/32", "10.0.0.0/8", "::1/128", "192.168.0.0/16"]
        );
        let bad: FileConfig = toml::from_str("trusted_proxies = [\"proxy.local\"]\n").unwrap();
        let err = Config::from_parts(bad, &Overrides::default(), &env(&[]))
            .err()
            .unwrap();
        assert!(err.to_string().contains("trusted_proxies"), "{err}");
    }

    #[test]
    fn custom_redirect_schemes_default_to_cursor_and_vs_code_and_refuse_dangerous_ones() {
        let c =
            Config::from_parts(FileConfig::default(), &Overrides::default(), &env(&[])).unwrap();
        assert_eq!(
            c.auth.custom_redirect_schemes,
            ["cursor", "vscode", "vscode-insiders"]
        );
        let f: FileConfig = toml::from_str(
            "[auth]\ncustom_redirect_schemes = [\"Windsurf\", \"com.example.app:\"]\n",
        )
        .unwrap();
        let c = Config::from_parts(f, &Overrides::default(), &env(&[])).unwrap();
        assert_eq!(
            c.auth.custom_redirect_schemes,
            ["windsurf", "com.example.app"]
        );
        for bad in [
            "javascript",
            "data",
            "file",
            "https",
            "http",
            "web+foo",
            "intent",
            "1abc",
            "a b",
        ] {
            let f: FileConfig =
                toml::from_str(&format!("[auth]\ncustom_redirect_schemes = [{bad:?}]\n")).unwrap();
            assert!(
                Config::from_parts(f, &Overrides::default(), &env(&[])).is_err(),
                "{bad} was allowed"
            );
        }
    }

    #[test]
    fn the_loopback_metadata_switch_is_refused_off_loopback() {
        let toml = "[auth]\ntest_only_loopback_client_metadata = true\napproval = \"passphrase\"\n";
        let c = Config::from_parts(
            toml::from_str(toml).unwrap(),
            &Overrides::default(),
            &env(&[]),
        )
        .unwrap();
        assert!(c.auth.test_only_loopback_client_metadata);
        let public = Overrides {
            listen: Some("0.0.0.0:8201".into()),
            ..Default::default()
        };
        let err = Config::from_parts(toml::from_str(toml).unwrap(), &public, &env(&[]))
            .err()
            .unwrap();
        assert!(err.to_string().contains("not a loopback"), "{err}");
        let d =
            Config::from_parts(FileConfig::default(), &Overrides::default(), &env(&[])).unwrap();
        assert!(
            !d.auth.test_only_loopback_client_metadata,
            "never on by default"
        );
        assert!(d.auth.client_metadata_documents);
    }

    #[test]
    fn oauth_limits_default_and_refuse_zero() {
        let c =
            Config::from_parts(FileConfig::default(), &Overrides::default(), &env(&[])).unwrap();
        assert_eq!(c.auth.limits.registrations_per_minute, 30);
        assert_eq!(c.auth.limits.unapproved_clients_total, 10_000);
        let f: FileConfig = toml::from_str("[auth]\nunapproved_clients_total = 0\n").unwrap();
        assert!(Config::from_parts(f, &Overrides::default(), &env(&[])).is_err());
        let f: FileConfig = toml::from_str("[auth]\npending_approvals_per_address = 2\n").unwrap();
        let c = Config::from_parts(f, &Overrides::default(), &env(&[])).unwrap();
        assert_eq!(c.auth.limits.pending_approvals_per_address, 2);
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        assert!(toml::from_str::<FileConfig>("lisen = \"x\"\n").is_err());
    }
}
