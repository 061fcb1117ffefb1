//! The command line: `serve`, `token`, `approve`, `bot`, `replay`, `verify`, `key`, and the operator's
//! commands (`backup`, `config`, `principal`, `client`, `grant`; see
//! `crate::admin`).

use crate::bots::Bots;
use crate::config::{Config, LogFormat, Overrides, ProcessEnv};
use crate::store::Store;
use clap::{Parser, Subcommand};
use hook_protocol::{BotSpec, Hook, HookContext, HookOutcome, Player};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "mcp-multiplayer",
    version,
    about = "Portals between AI sessions: shared MCP channels refereed by verifiable bots."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone, Default)]
struct Common {
    /// TOML config file (also MCP_MULTIPLAYER_CONFIG).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Directory of the SQLite database (default: $STATE_DIRECTORY or the current directory).
    #[arg(long)]
    state_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Serve {
        #[command(flatten)]
        common: Common,
        /// Address to bind (default 127.0.0.1:8201).
        #[arg(long)]
        listen: Option<String>,
        /// The origin clients use, e.g. https://mcp.example.com (behind a reverse proxy).
        #[arg(long)]
        public_url: Option<String>,
        /// Serve /mcp WITHOUT authentication. Refuses any non-loopback address.
        /// Only for the MCP conformance suite.
        #[arg(long)]
        unsafe_no_auth: bool,
    },
    /// Manage long-lived access tokens.
    Token {
        #[command(subcommand)]
        op: TokenOp,
    },
    /// List sign-ins waiting on the approval page, or approve one by its code
    /// (no passphrase needed; run where the database is, as the service user).
    Approve {
        /// The code the approval page shows, like K7QF-2M9X. Without it: list.
        code: Option<String>,
        /// Deny the sign-in instead.
        #[arg(long, requires = "code")]
        deny: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Tools for bot authors.
    Bot {
        #[command(subcommand)]
        op: BotOp,
    },
    /// Copy this deployment's SQLite database into an empty PostgreSQL
    /// database, and check the copy row by row (docs/scale-out.md). Stop the
    /// daemon first.
    MigrateStore {
        /// The PostgreSQL database: postgres://USER@HOST/DB, without a
        /// password (default: the config's `database`).
        #[arg(long)]
        to: Option<String>,
        /// File holding the password for --to (default: the config's
        /// database_password_file).
        #[arg(long)]
        to_password_file: Option<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
    /// Re-run every hook of every bot of a closed channel in the real sandbox
    /// and check each against the transcript (docs/replay.md). Offline: give
    /// a transcript document FILE, or --db and --channel, or --channel alone
    /// to read the configured database. Exits 1 on a
    /// mismatch, a wrong seed reveal or a chain that does not verify.
    Replay(ReplayArgs),
    /// Check an exported transcript offline (no daemon, no network): the
    /// chain, the signatures, the bots' code hashes, the causal order and
    /// the builtin bots' claims. Exits 0 when every check passes, 1 naming
    /// the first bad seq, 2 when FILE cannot be read as JSON.
    Verify {
        /// The export (export_transcript's result, or GET /channels/ID/export).
        file: PathBuf,
        /// Accept signatures only from this key id (sha256:...; repeatable),
        /// e.g. the fingerprint the server showed when you joined.
        #[arg(long = "key")]
        keys: Vec<String>,
        /// Use this key list (the server's /.well-known/mcp-multiplayer/keys.json)
        /// instead of the one in the document.
        #[arg(long = "keys")]
        keys_file: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The daemon's signing key.
    Key {
        #[command(subcommand)]
        op: KeyOp,
    },
    #[command(flatten)]
    Admin(AdminCommand),
}

/// The operator's commands. They work on a live database; run them as the
/// service's user.
#[derive(Subcommand)]
enum AdminCommand {
    /// Copy the database to FILE: a consistent snapshot while the daemon
    /// runs (SQLite online backup), checked with integrity_check.
    Backup {
        /// Where to write the copy (must not exist).
        file: PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// Check the configuration, or show the effective one (secrets never shown).
    Config {
        #[command(subcommand)]
        op: ConfigOp,
    },
    /// Principals: who acts (a CLI token's name, or an approved OAuth grant).
    Principal {
        #[command(subcommand)]
        op: PrincipalOp,
    },
    /// OAuth clients that registered.
    Client {
        #[command(subcommand)]
        op: ClientOp,
    },
    /// OAuth grants: an approved client acting as one principal.
    Grant {
        #[command(subcommand)]
        op: GrantOp,
    },
    /// Links to channels' web pages (made by members with share_channel).
    Page {
        #[command(subcommand)]
        op: PageOp,
    },
}

#[derive(Subcommand)]
enum PageOp {
    /// Revoke a channel's page links: one (--link) or all of them.
    Revoke {
        channel_id: String,
        /// One link's id (lnk_..., as share_channel returned it).
        #[arg(long)]
        link: Option<String>,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Subcommand)]
enum ConfigOp {
    /// Validate the configuration and what it points at; exit 1 on a problem.
    Check {
        #[command(flatten)]
        common: Common,
    },
    /// Print the effective configuration as TOML.
    Show {
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Subcommand)]
enum PrincipalOp {
    /// List principals with their live tokens, channels and seats.
    List {
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Subcommand)]
enum ClientOp {
    /// List registered OAuth clients.
    List {
        #[command(flatten)]
        common: Common,
    },
    /// Revoke every grant of a client (its tokens stop working now).
    Revoke {
        client_id: String,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Subcommand)]
enum GrantOp {
    /// List OAuth grants.
    List {
        #[command(flatten)]
        common: Common,
    },
    /// Revoke one grant (its tokens stop working now).
    Revoke {
        family_id: String,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Subcommand)]
enum KeyOp {
    /// Print the public key list (what /.well-known/mcp-multiplayer/keys.json
    /// serves) and where the private key is read from.
    Show {
        #[command(flatten)]
        common: Common,
    },
    /// Replace the state directory's signing key with a new one. The daemon
    /// signs with it from its next start; the old key stays listed so the
    /// heads it signed still verify. Run as the service's user.
    Rotate {
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Subcommand)]
enum TokenOp {
    /// Issue a token for principal NAME (created on first use) and print it alone on stdout.
    Create {
        name: String,
        #[command(flatten)]
        common: Common,
    },
    /// Revoke every token of principal NAME.
    Revoke {
        name: String,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(clap::Args)]
struct ReplayArgs {
    /// A transcript document (JSON: channel_id, messages, bots).
    #[arg(required_unless_present_any = ["db", "channel"], conflicts_with_all = ["db", "channel"])]
    file: Option<PathBuf>,
    /// Read the channel from the daemon's SQLite file instead.
    #[arg(long, requires = "channel")]
    db: Option<PathBuf>,
    /// The channel to replay from --db, or without --db from the database
    /// the config names (PostgreSQL, docs/scale-out.md).
    #[arg(long)]
    channel: Option<String>,
    /// Also write the transcript document read from the database to this file.
    #[arg(long, requires = "channel")]
    write_document: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// The config naming the sandbox runner, interpreter and harness (as for `bot run`),
    /// and whether a seeded bot's hooks fork from its fork template (`[bots]
    /// fork_templates`, on by default).
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum BotOp {
    /// Run the language layer over FILE (in the sandbox) and print its verdict.
    Check {
        file: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Play hooks of FILE locally in the real sandbox: on_init, on_join per
    /// --player, then on_message per --message; prints posts and state.
    Run {
        file: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
        /// Player slot labels (default: alice, bob).
        #[arg(long = "player")]
        players: Vec<String>,
        /// Messages, sent in turn by the players. `NAME: TEXT` picks the sender;
        /// a body that parses as a JSON object is sent as one.
        #[arg(long = "message")]
        messages: Vec<String>,
        /// Bot params as a JSON object.
        #[arg(long, default_value = "{}")]
        params: String,
        /// Allow network (as a channel with allow_network would).
        #[arg(long)]
        network: bool,
    },
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    disable_transparent_huge_pages();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mcp-multiplayer: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mcp-multiplayer: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Turns transparent huge pages off for this process (and the processes it
/// starts), before the runtime and its threads allocate anything much.
///
/// mimalloc hands memory out of 64 MiB-aligned arenas in pages of 64 KiB;
/// with THP on (`always`, the default of many distributions) the kernel backs
/// any touched 2 MiB of an arena with a huge page, and keeps it when mimalloc
/// gives the small pages back: after one post woke a thousand long-polls the
/// daemon kept far more resident than with THP off (BENCHMARKS.md has the
/// figures). `PR_SET_THP_DISABLE`
/// (prctl(2)) is inherited by children and kept across `execve`, so the
/// sandbox runners run without THP too, which costs them nothing: a hook's
/// interpreter touches a few MiB. A kernel that refuses it (older
/// than 3.15) leaves THP as it was; that costs memory, not correctness.
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = nix::sys::prctl::set_thp_disable(true) {
        eprintln!("mcp-multiplayer: cannot turn transparent huge pages off: {e}");
    }
}

fn load(common: &Common, extra: Overrides) -> anyhow::Result<Config> {
    let over = Overrides {
        config: common.config.clone(),
        state_dir: common.state_dir.clone(),
        ..extra
    };
    Ok(Config::load(&over, &ProcessEnv)?)
}

/// Logging for `serve` (see `crate::logging`): the filter from
/// `MCP_MULTIPLAYER_LOG`, read here as the one place the CLI reads the
/// environment for it.
fn init_logging(format: LogFormat) {
    let filter = std::env::var("MCP_MULTIPLAYER_LOG").ok();
    crate::logging::init(format, filter.as_deref());
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve {
            common,
            listen,
            public_url,
            unsafe_no_auth,
        } => {
            let cfg = load(
                &common,
                Overrides {
                    listen,
                    public_url,
                    unsafe_no_auth,
                    ..Default::default()
                },
            )?;
            init_logging(cfg.log_format);
            crate::server::serve(cfg).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Token {
            op: TokenOp::Create { name, common },
        } => {
            let name = name.trim().to_string();
            if name.is_empty() || name.len() > 64 {
                anyhow::bail!("NAME must be 1-64 characters");
            }
            let cfg = load(&common, Overrides::default())?;
            let store = Store::open_config(&cfg)?;
            let token = crate::store::principals::create_cli_token(&store, &name).await?;
            store.close();
            println!("{token}");
            eprintln!(
                "Token for principal {name:?} stored (hashed) in {}. It is shown only now.",
                match &cfg.database {
                    crate::config::DatabaseConfig::Sqlite => cfg.db_path().display().to_string(),
                    other => other.describe(),
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Token {
            op: TokenOp::Revoke { name, common },
        } => {
            let cfg = load(&common, Overrides::default())?;
            let store = Store::open_config(&cfg)?;
            let n = crate::store::principals::revoke_cli_tokens(&store, &name).await?;
            store.close();
            eprintln!("Revoked {n} token(s) of {name:?}.");
            Ok(ExitCode::SUCCESS)
        }
        Command::Admin(cmd) => admin(cmd).await,
        Command::MigrateStore {
            to,
            to_password_file,
            common,
        } => migrate_store(to, to_password_file, &common),
        Command::Replay(args) => replay(args).await,
        Command::Verify {
            file,
            keys,
            keys_file,
            json,
        } => verify(&file, keys, keys_file.as_deref(), json),
        Command::Key {
            op: KeyOp::Show { common },
        } => {
            let cfg = load(&common, Overrides::default())?;
            let list = std::fs::read_to_string(cfg.state_dir.join(crate::signing::KEY_LIST_FILE))
                .unwrap_or_else(|_| "{\"keys\": []}\n".into());
            print!("{list}");
            eprintln!(
                "The private key is read from {} (never shown).",
                cfg.signing_key.path().display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Key {
            op: KeyOp::Rotate { common },
        } => {
            let cfg = load(&common, Overrides::default())?;
            let id = crate::signing::rotate(&cfg.signing_key)?;
            println!("{id}");
            eprintln!(
                "New signing key {id} written to {}. The daemon signs with it from its next start (systemctl restart mcp-multiplayer); the old key stays listed for the heads it signed.",
                cfg.signing_key.path().display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Approve { code, deny, common } => {
            let cfg = load(&common, Overrides::default())?;
            let store = Store::open_config(&cfg)?;
            let out = match code {
                None => crate::oauth::admin::list(&store).await,
                Some(code) => crate::oauth::admin::decide(&store, &code, deny).await,
            };
            store.close();
            print!("{}", out?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Bot {
            op: BotOp::Check { file, config },
        } => {
            let cfg = load(
                &Common {
                    config,
                    state_dir: None,
                },
                Overrides::default(),
            )?;
            let bots = Bots::new(cfg.bots.clone());
            let source = read_source(&file)?;
            match bots.prepare(Some(source), None, None, true).await {
                Ok(Some(b)) => {
                    println!(
                        "{}: ok\n  name: {}\n  code_hash: {}\n  manifest: {}",
                        file.display(),
                        b.name,
                        b.code_hash,
                        crate::transcript::canonical(&b.manifest)
                    );
                    Ok(ExitCode::SUCCESS)
                }
                // prepare() returns None only when given no source.
                Ok(None) => anyhow::bail!("internal: no bot prepared from {}", file.display()),
                Err(e) => {
                    println!("{}: refused\n  {}", file.display(), e.message);
                    Ok(ExitCode::from(1))
                }
            }
        }
        Command::Bot {
            op:
                BotOp::Run {
                    file,
                    config,
                    players,
                    messages,
                    params,
                    network,
                },
        } => {
            let cfg = load(
                &Common {
                    config,
                    state_dir: None,
                },
                Overrides::default(),
            )?;
            bot_run(cfg, file, players, messages, &params, network).await
        }
    }
}

/// Runs an operator's command; see `crate::admin`.
async fn admin(cmd: AdminCommand) -> anyhow::Result<ExitCode> {
    use crate::admin;
    /// Runs `f` on the store, closing it afterwards.
    async fn with_store<T, F, Fut>(common: &Common, f: F) -> anyhow::Result<T>
    where
        F: FnOnce(Store) -> Fut,
        Fut: std::future::Future<Output = Result<T, crate::store::StoreError>>,
    {
        let cfg = load(common, Overrides::default())?;
        let store = Store::open_config(&cfg)?;
        let out = f(store.clone()).await;
        store.close();
        Ok(out?)
    }
    let finish = |r: Result<String, String>| match r {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("mcp-multiplayer: {why}");
            ExitCode::FAILURE
        }
    };
    Ok(match cmd {
        AdminCommand::Backup { file, common } => {
            let cfg = load(&common, Overrides::default())?;
            print!("{}", admin::backup(&cfg, &file)?);
            ExitCode::SUCCESS
        }
        AdminCommand::Config {
            op: ConfigOp::Show { common },
        } => {
            print!(
                "{}",
                admin::config_show(&load(&common, Overrides::default())?)
            );
            ExitCode::SUCCESS
        }
        AdminCommand::Config {
            op: ConfigOp::Check { common },
        } => {
            let (text, ok) = admin::config_check(load(&common, Overrides::default())?);
            print!("{text}");
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        AdminCommand::Principal {
            op: PrincipalOp::List { common },
        } => finish(Ok(with_store(&common, |s| async move {
            admin::principal_list(&s).await
        })
        .await?)),
        AdminCommand::Client {
            op: ClientOp::List { common },
        } => finish(Ok(with_store(&common, |s| async move {
            admin::client_list(&s).await
        })
        .await?)),
        AdminCommand::Grant {
            op: GrantOp::List { common },
        } => finish(Ok(with_store(&common, |s| async move {
            admin::grant_list(&s).await
        })
        .await?)),
        AdminCommand::Client {
            op: ClientOp::Revoke { client_id, common },
        } => finish(
            with_store(&common, |s| async move {
                admin::client_revoke(&s, &client_id).await
            })
            .await?,
        ),
        AdminCommand::Grant {
            op: GrantOp::Revoke { family_id, common },
        } => finish(
            with_store(&common, |s| async move {
                admin::grant_revoke(&s, &family_id).await
            })
            .await?,
        ),
        AdminCommand::Page {
            op:
                PageOp::Revoke {
                    channel_id,
                    link,
                    common,
                },
        } => finish(
            with_store(&common, |s| async move {
                admin::page_revoke(&s, &channel_id, link).await
            })
            .await?,
        ),
    })
}

/// `replay`: exit 0 when every hook that can be replayed matched, 1 on a
/// mismatch or a failed check, 2 when the input cannot be read.
async fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    use crate::replay::{Transcript, replay};
    let cfg = load(
        &Common {
            config: args.config,
            state_dir: None,
        },
        Overrides::default(),
    )?;
    let doc = match (&args.file, &args.db, &args.channel) {
        (Some(file), _, _) => std::fs::read(file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))
            .and_then(|b| {
                serde_json::from_slice::<Value>(&b)
                    .map_err(|e| format!("{} is not JSON: {e}", file.display()))
            })
            .and_then(|v| Transcript::from_json(&v).map_err(|e| e.to_string())),
        (None, Some(db), Some(cid)) => Transcript::from_db(db, cid)
            .await
            .map_err(|e| e.to_string()),
        (None, None, Some(cid))
            if matches!(cfg.database, crate::config::DatabaseConfig::Sqlite) =>
        {
            Transcript::from_db(&cfg.db_path(), cid)
                .await
                .map_err(|e| e.to_string())
        }
        (None, None, Some(cid)) => match Store::open_config(&cfg) {
            Ok(store) => {
                let doc = Transcript::from_store(&store, cid)
                    .await
                    .map_err(|e| e.to_string());
                store.close();
                doc
            }
            Err(e) => Err(format!("cannot open {}: {e}", cfg.database.describe())),
        },
        _ => Err("give a transcript document FILE, or --db PATH --channel ID".into()),
    };
    let doc = match doc {
        Ok(d) => d,
        Err(why) => {
            eprintln!("mcp-multiplayer replay: {why}");
            return Ok(ExitCode::from(2));
        }
    };
    if let Some(out) = &args.write_document {
        std::fs::write(out, serde_json::to_vec_pretty(&doc)?)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", out.display()))?;
    }
    // As the daemon does at start-up: hooks then skip compiling the harness.
    crate::server::precompile_harness(&cfg.bots).await;
    let report = replay(&doc, &Bots::new(cfg.bots.clone())).await;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.text());
    }
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `verify FILE`: the report on stdout; exit 0 verified, 1 not, 2 unreadable.
fn verify(
    file: &std::path::Path,
    pinned: Vec<String>,
    keys_file: Option<&std::path::Path>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let read = |p: &std::path::Path| -> Result<Value, String> {
        let text =
            std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", p.display()))
    };
    let doc = match read(file) {
        Ok(d) => d,
        Err(why) => {
            eprintln!("mcp-multiplayer verify: {why}");
            return Ok(ExitCode::from(2));
        }
    };
    let keys = match keys_file.map(read).transpose() {
        Ok(k) => k,
        Err(why) => {
            eprintln!("mcp-multiplayer verify: {why}");
            return Ok(ExitCode::from(2));
        }
    };
    let keys = match keys
        .map(|k| serde_json::from_value::<crate::signing::KeyList>(k).map(|l| l.keys))
        .transpose()
    {
        Ok(k) => k,
        Err(e) => {
            eprintln!("mcp-multiplayer verify: the --keys file is not a key list: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let report = crate::verify::verify(&doc, &crate::verify::Trust { keys, pinned });
    if json {
        println!("{}", report.json());
    } else {
        print!("{}", report.text());
    }
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `migrate-store`: the SQLite file of the state directory into PostgreSQL.
fn migrate_store(
    to: Option<String>,
    password_file: Option<PathBuf>,
    common: &Common,
) -> anyhow::Result<ExitCode> {
    use crate::config::{DatabaseConfig, Env};
    /// `--to` is taken as given: no environment variable overrides it.
    struct NoEnv;
    impl Env for NoEnv {
        fn var(&self, _: &str) -> Option<String> {
            None
        }
    }
    let cfg = load(common, Overrides::default())?;
    let target = match to {
        Some(url) => DatabaseConfig::from_parts(Some(url), password_file, None, &NoEnv)?,
        None => cfg.database.clone(),
    };
    let DatabaseConfig::Postgres(src) = &target else {
        anyhow::bail!(
            "give the PostgreSQL database to copy into: --to postgres://USER@HOST/DB (the password in --to-password-file), or set `database` in the config"
        );
    };
    let pg = src.load()?;
    let db = cfg.db_path();
    let report = crate::store::migrate_store(&db, &pg)?;
    println!(
        "Copied {} into {}; every row checked.",
        db.display(),
        target.describe()
    );
    for (table, rows) in &report.tables {
        println!("  {table}: {rows} rows");
    }
    println!(
        "Next: point every daemon at it (database = \"...\" in the config, its password in database_password_file) and start them; keep {} as the backup of this moment.",
        db.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn read_source(file: &PathBuf) -> anyhow::Result<String> {
    std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))
}

async fn bot_run(
    cfg: Config,
    file: PathBuf,
    players: Vec<String>,
    messages: Vec<String>,
    params: &str,
    network: bool,
) -> anyhow::Result<ExitCode> {
    let bots = Bots::new(cfg.bots.clone());
    let source = read_source(&file)?;
    let params: Value =
        serde_json::from_str(params).map_err(|e| anyhow::anyhow!("--params is not JSON: {e}"))?;
    if !params.is_object() {
        anyhow::bail!("--params must be a JSON object");
    }
    let players = if players.is_empty() {
        vec!["alice".to_string(), "bob".to_string()]
    } else {
        players
    };
    let mut filled: Vec<Player> = players
        .iter()
        .map(|p| Player {
            label: p.clone(),
            slot: format!("invite:{p}"),
            filled: false,
        })
        .collect();
    let mut state = json!({});
    let mut seq = 0i64;
    let mut hooks: Vec<Hook> = vec![Hook::OnInit];
    hooks.extend(players.iter().map(|p| Hook::OnJoin { player: p.clone() }));
    for (i, m) in messages.iter().enumerate() {
        let (sender, text) = match m.split_once(": ") {
            Some((s, t)) if players.contains(&s.to_string()) => (s.to_string(), t.to_string()),
            _ => (players[i % players.len()].clone(), m.clone()),
        };
        let body = match serde_json::from_str::<Value>(&text) {
            Ok(v @ Value::Object(_)) => v,
            _ => Value::String(text),
        };
        hooks.push(Hook::OnMessage {
            message: json!({"seq": 0, "channel_id": "local", "sender": sender, "kind": "user", "body": body, "ts": ""}),
        });
    }
    for mut hook in hooks {
        if let Hook::OnJoin { player } = &hook
            && let Some(p) = filled.iter_mut().find(|p| &p.label == player)
        {
            p.filled = true;
        }
        seq += 1;
        if let Hook::OnMessage { message } = &mut hook {
            message["seq"] = json!(seq);
        }
        println!("== {} {}", hook.method(), hook_arg(&hook));
        let job = bots.job(
            BotSpec {
                name: "bot".into(),
                source: source.clone(),
                params: params.clone(),
                compiled: None,
            },
            hook,
            HookContext {
                channel_id: "local".into(),
                bot_id: "bot:local".into(),
                players: filled.clone(),
            },
            state.clone(),
            network,
        );
        match bots.runner.run(&job).await {
            HookOutcome::Ok {
                posts,
                state: new_state,
                logs,
                timings,
                ..
            } => {
                for p in posts {
                    let to =
                        p.to.map(|t| format!(" (to {})", t.join(", ")))
                            .unwrap_or_default();
                    println!("  post{to}: {} {}", p.kind, p.body);
                    seq += 1;
                }
                if !logs.is_empty() {
                    println!("  printed: {}", logs.trim_end());
                }
                println!("  state: {new_state}");
                println!(
                    "  took: {} us confine + {} us hook",
                    timings.confine_us, timings.hook_us
                );
                state = new_state;
            }
            HookOutcome::Error { error } => {
                println!("  bot:error: {}", error.short_reason());
                if let hook_protocol::HookError::Exception { traceback, .. } = &error {
                    println!("{traceback}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn hook_arg(h: &Hook) -> String {
    match h {
        Hook::OnJoin { player } => player.clone(),
        Hook::OnMessage { message } => format!(
            "{}: {}",
            message["sender"].as_str().unwrap_or(""),
            message["body"]
        ),
        _ => String::new(),
    }
}
