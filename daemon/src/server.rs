//! Start-up and shutdown of `mcp-multiplayer serve`.

use crate::app::{AppState, Metrics};
use crate::bots::Bots;
use crate::bots::dispatch::Dispatcher;
use crate::channels::Channels;
use crate::config::Config;
use crate::store::Store;
use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long shutdown waits for open connections before it stops anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Opens the state and builds the application (no socket yet).
pub async fn build(config: Config) -> anyhow::Result<AppState> {
    let store = Store::open(&config.db_path())
        .with_context(|| format!("opening the database {}", config.db_path().display()))?;
    let shutdown = CancellationToken::new();
    // Everything downstream of a commit follows the store's bus: long-poll
    // wake-ups (inside `Channels`), resource notifications, bot hooks.
    let channels = Channels::new(store.clone(), config.max_body_bytes, shutdown.clone())
        .with_max_sync_bytes(config.max_sync_bytes);
    let subscriptions = Arc::new(crate::mcp::resources::Subscriptions::default());
    subscriptions.follow(&channels, tokio::runtime::Handle::current());
    let bots = Bots::new(config.bots.clone());
    let dispatcher = Dispatcher::start(store.clone(), bots.clone())
        .await
        .context("starting the bot dispatcher")?;
    let anonymous = if config.auth.unsafe_no_auth {
        tracing::warn!("--unsafe-no-auth: /mcp is served without authentication (loopback only)");
        Some(crate::store::principals::anonymous_principal(&store).await?)
    } else {
        None
    };
    Ok(AppState {
        config: Arc::new(config),
        channels,
        bots,
        dispatcher,
        metrics: Arc::new(Metrics::default()),
        shutdown,
        anonymous,
        sandbox: Arc::new(std::sync::OnceLock::new()),
        subscriptions,
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
async fn precompile_harness(cfg: &crate::config::BotsConfig) {
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
    let listen = config.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr()?;
    config.bound_to(addr);
    let state = build(config).await?;
    tracing::info!(%addr, db = %state.channels.store().path().display(), "serving");
    // A plain line that scripts and tests can wait for.
    eprintln!("mcp-multiplayer listening on http://{addr}");
    tokio::spawn(sandbox_self_check(state.clone()));
    let shutdown = state.shutdown.clone();
    let store = state.channels.store().clone();
    let router = crate::http::app(state);
    let signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        signal.cancel();
    });
    // TCP_NODELAY: a response goes out in several small writes (headers, then
    // SSE events); with Nagle's algorithm the later ones wait for the peer's
    // delayed ACK, which adds ~40 ms to a request (measured in BENCHMARKS.md).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    // With the peer address: OAuth rate limits and lockouts are per IP.
    let graceful = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    tokio::select! {
        r = graceful => r.context("serving HTTP")?,
        _ = async { shutdown.cancelled().await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
            tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}; stopping anyway");
        }
    }
    store.close();
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
