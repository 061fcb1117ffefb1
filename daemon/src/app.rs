//! Application state shared by every request: one `Clone` struct of `Arc`s.

use crate::bots::Bots;
use crate::channels::{Channels, Principal};
use crate::config::Config;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use tokio_util::sync::CancellationToken;

/// Counters exported at `/metrics`.
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
    pub metrics: Arc<Metrics>,
    /// Cancelled on SIGTERM: long-polls return, streams end.
    pub shutdown: CancellationToken,
    /// Set only with `--unsafe-no-auth`: every request acts as this principal.
    pub anonymous: Option<Principal>,
}
