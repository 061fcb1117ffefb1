//! Start-up and shutdown of `mcp-multiplayer serve`.
//!
//! Start-up refuses what cannot work, with a sentence: a database it cannot
//! write or one from a newer release (see `store`), a bind it cannot get.
//! It raises the open-file limit to the hard limit (each client connection
//! is a descriptor) and sizes the connection caps below it.
//!
//! Shutdown (SIGTERM or SIGINT) is ordered so that no request is answered
//! with an error and no acknowledged write is lost:
//! 1. stop accepting, and cancel `shutdown`: parked `sync_messages` calls
//!    answer at once with their normal (possibly empty) result;
//! 2. every connection finishes the request it is serving and closes; posts
//!    in flight commit and are answered;
//! 3. once no call is in flight, MCP sessions and their event streams end;
//! 4. the writer commits what is queued and the process exits.
//!
//! All within `http.drain_secs`; after that (or on a second signal) it exits
//! anyway. The signal is acted on before anything is logged, and logging
//! never blocks (see `logging`), so a closed or stalled stderr cannot keep
//! the daemon from stopping.

use crate::app::AppState;
use crate::bots::Bots;
use crate::bots::dispatch::Dispatcher;
use crate::channels::Channels;
use crate::config::Config;
use crate::http::conn::{ConnLimits, Conns, accept_loop, raise_open_file_limit};
use crate::quota::Quotas;
use crate::store::Store;
use anyhow::Context;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Opens the state and builds the application (no socket yet).
pub async fn build(config: Config) -> anyhow::Result<AppState> {
    let store = Store::open_config(&config)?;
    let signer = crate::signing::Signer::open(&config.signing_key, &config.state_dir)?;
    tracing::info!(
        key_id = signer.key_id(),
        "transcript heads are signed with this key"
    );
    let metrics = store.metrics().clone();
    let shutdown = CancellationToken::new();
    let quotas = Quotas::new(config.quotas.clone(), Some(metrics.clone()));
    // Everything downstream of a commit follows the store's bus: long-poll
    // wake-ups (inside `Channels`), resource notifications, bot hooks.
    let channels = Channels::new(store.clone(), config.max_body_bytes, shutdown.clone())
        .with_quotas(quotas.clone())
        .with_max_sync_bytes(config.max_sync_bytes)
        .with_signer(signer.clone());
    let subscriptions = Arc::new(crate::mcp::resources::Subscriptions::default());
    subscriptions.follow(&channels, tokio::runtime::Handle::current());
    let bots = Bots::new(config.bots.clone());
    let dispatcher = Dispatcher::start_with_quotas(store.clone(), bots.clone(), quotas)
        .await
        .context("starting the bot dispatcher")?;
    let anonymous = if config.auth.unsafe_no_auth {
        tracing::warn!("--unsafe-no-auth: /mcp is served without authentication (loopback only)");
        Some(crate::store::principals::anonymous_principal(&store).await?)
    } else {
        None
    };
    let sessions = crate::http::sessions::Sessions::new(
        config.http.max_sessions_per_principal,
        config.http.session_idle,
        config.http.session_sleep,
        metrics.clone(),
    );
    Ok(AppState {
        config: Arc::new(config),
        channels,
        bots,
        dispatcher,
        signer,
        metrics,
        shutdown,
        mcp_stop: CancellationToken::new(),
        anonymous,
        sandbox: Arc::new(std::sync::OnceLock::new()),
        subscriptions,
        sessions,
        health: Arc::default(),
        page_streams: Arc::default(),
        started: Instant::now(),
    })
}

/// Compiles the harness to hash-checked bytecode next to its sources.
///
/// Every hook starts a fresh interpreter on the harness, which the sandbox
/// binds read-only and runs with `-B`: without a `__pycache__` Python would
/// recompile ~2,000 lines on every hook (about 15 ms on the reference
/// machine). Hash-checked `.pyc` files are ignored when their source changes,
/// so a stale cache can never run. Best effort: a read-only install (say, a
/// Nix store path, compiled at build time) is left as it is.
pub(crate) async fn precompile_harness(cfg: &crate::config::BotsConfig) {
    let dir = cfg.bots_dir.join("harness");
    let run = tokio::process::Command::new(&cfg.python)
        .args([
            "-I",
            "-m",
            "compileall",
            "-q",
            "--invalidation-mode",
            "checked-hash",
        ])
        .arg(&dir)
        .env_clear()
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    match tokio::time::timeout(Duration::from_secs(30), run).await {
        Ok(Ok(s)) if s.success() => tracing::debug!(dir = %dir.display(), "harness bytecode ready"),
        other => tracing::info!(dir = %dir.display(), result = ?other.map(|r| r.map(|s| s.code())),
            "could not precompile the harness; hooks will compile it each time"),
    }
}

/// Inspects a one-line bot in the sandbox, so that a broken sandbox shows at
/// start-up and in `/healthz` rather than at the first attach.
async fn sandbox_self_check(state: AppState) {
    precompile_harness(&state.bots.cfg).await;
    let src = "class Probe:\n    def on_message(self, msg):\n        pass\n";
    let r = match state
        .bots
        .prepare(Some(src.to_string()), None, None, false)
        .await
    {
        Ok(_) => {
            tracing::info!(runner = %state.bots.cfg.runner.display(), "sandbox self-check passed");
            Ok(())
        }
        Err(e) => {
            tracing::error!(runner = %state.bots.cfg.runner.display(), error = %e.message,
                "sandbox self-check failed: bots cannot run until this is fixed");
            Err(e.message)
        }
    };
    let _ = state.sandbox.set(r);
}

/// Serves until SIGTERM or SIGINT, then shuts down gracefully.
pub async fn serve(mut config: Config) -> anyhow::Result<()> {
    config.load_secrets()?;
    let open_files = raise_open_file_limit();
    let listen = config.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr()?;
    config.bound_to(addr);
    let mut signals = Signals::new()?;
    let state = build(config).await?;
    let limits = ConnLimits::new(&state.config.http, open_files);
    tracing::info!(
        %addr,
        db = %match &state.config.database {
            crate::config::DatabaseConfig::Sqlite => state.channels.store().path().display().to_string(),
            other => other.describe(),
        },
        open_files,
        max_connections = limits.max_total,
        max_unauthenticated = limits.max_unauthenticated,
        "serving"
    );
    // A plain line that scripts and tests can wait for.
    crate::logging::print_line(&format!("mcp-multiplayer listening on http://{addr}"));
    tokio::spawn(sandbox_self_check(state.clone()));
    state.sessions.spawn_expiry(state.mcp_stop.clone());
    let conns = Conns::new(limits, state.metrics.clone());
    let stop_accepting = CancellationToken::new();
    let accepting = tokio::spawn(accept_loop(
        listener,
        crate::http::app(state.clone()),
        conns.clone(),
        stop_accepting.clone(),
    ));

    signals.recv().await;
    // Act first: nothing below waits on stderr.
    state.shutdown.cancel();
    stop_accepting.cancel();
    let drain = state.config.http.drain;
    let deadline = tokio::time::Instant::now() + drain;
    tracing::info!(
        ?drain,
        "shutting down: answering parked calls and requests in flight"
    );
    let _ = accepting.await;
    let drained = tokio::select! {
        _ = conns.calls_done() => true,
        _ = tokio::time::sleep_until(deadline) => false,
        _ = signals.recv() => false,
    };
    // No call in flight: end MCP sessions and their event streams, which
    // closes the connections that held them.
    state.mcp_stop.cancel();
    let closed = drained
        && tokio::select! {
            _ = conns.closed_all() => true,
            _ = tokio::time::sleep_until(deadline) => false,
            _ = signals.recv() => false,
        };
    if !closed {
        tracing::warn!(
            open = conns.open(),
            "connections still open at the end of the drain time; stopping anyway"
        );
    }
    state.channels.store().close();
    tracing::info!("stopped");
    crate::logging::flush(Duration::from_secs(1));
    Ok(())
}

/// SIGTERM and SIGINT, as one stream of shutdown requests.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("listening for SIGINT")?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}
