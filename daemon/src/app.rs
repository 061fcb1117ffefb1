//! Application state shared by every request: one `Clone` struct of `Arc`s.

use crate::bots::Bots;
use crate::bots::dispatch::Dispatcher;
use crate::channels::Channels;
use crate::config::Config;
use crate::http::Health;
use crate::http::sessions::Sessions;
use crate::metrics::Metrics;
use crate::model::Principal;
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub channels: Channels,
    pub bots: Bots,
    /// Runs bot hooks; held here so that it lives as long as the app.
    #[allow(dead_code)]
    pub dispatcher: Dispatcher,
    /// Signs transcript heads; its key list is published.
    pub signer: crate::signing::Signer,
    /// Every series `/metrics` exports (the store's registry).
    pub metrics: Arc<Metrics>,
    /// Cancelled on SIGTERM: long-polls return their normal empty result.
    pub shutdown: CancellationToken,
    /// Cancelled once shutdown has answered every request in flight: ends
    /// MCP sessions and their streams.
    pub mcp_stop: CancellationToken,
    /// Set only with `--unsafe-no-auth`: every request acts as this principal.
    pub anonymous: Option<Principal>,
    /// Result of the start-up sandbox self-check: `None` until it finished,
    /// then `Ok` or the reason bots cannot run.
    pub sandbox: Arc<std::sync::OnceLock<Result<(), String>>>,
    /// Sessions subscribed to channel resources.
    pub subscriptions: Arc<crate::mcp::resources::Subscriptions>,
    /// MCP sessions and the principals they belong to.
    pub sessions: Arc<Sessions>,
    /// The last `/healthz` reading.
    pub health: Arc<Health>,
    /// The channel pages' open event streams.
    pub page_streams: Arc<crate::page::Streams>,
    pub started: Instant,
}
