//! Application state shared by every request: one `Clone` struct of `Arc`s.

use crate::bots::Bots;
use crate::bots::dispatch::Dispatcher;
use crate::channels::Channels;
use crate::config::Config;
use crate::model::Principal;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use tokio_util::sync::CancellationToken;

/// Counters exported at `/metrics` (with the channels' waiting gauge and the
/// dispatcher's hook count).
#[derive(Default)]
pub struct Metrics {
    pub posts: AtomicU64,
    pub auth_failures: AtomicU64,
}

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub channels: Channels,
    pub bots: Bots,
    pub dispatcher: Dispatcher,
    pub metrics: Arc<Metrics>,
    /// Cancelled on SIGTERM: long-polls return, streams end.
    pub shutdown: CancellationToken,
    /// Set only with `--unsafe-no-auth`: every request acts as this principal.
    pub anonymous: Option<Principal>,
    /// Result of the start-up sandbox self-check: `None` until it finished,
    /// then `Ok` or the reason bots cannot run.
    pub sandbox: Arc<std::sync::OnceLock<Result<(), String>>>,
    /// Sessions subscribed to channel resources.
    pub subscriptions: Arc<crate::mcp::resources::Subscriptions>,
}
