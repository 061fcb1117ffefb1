//! Application state shared by every request: one `Clone` struct of `Arc`s.

use crate::bots::Bots;
use crate::channels::{Channels, Principal};
use crate::config::Config;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64};
use tokio_util::sync::CancellationToken;

/// Counters exported at `/metrics`.
#[derive(Default)]
pub struct Metrics {
    pub posts: AtomicU64,
    pub auth_failures: AtomicU64,
    /// `sync_messages` calls currently waiting for a message.
    pub sync_waiting: AtomicI64,
}

/// Counts one waiting `sync_messages` while alive.
pub struct WaitingGuard<'a>(&'a AtomicI64);

impl<'a> WaitingGuard<'a> {
    pub fn new(gauge: &'a AtomicI64) -> Self {
        gauge.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        WaitingGuard(gauge)
    }
}

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
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
    /// Result of the start-up sandbox self-check: `None` until it finished,
    /// then `Ok` or the reason bots cannot run.
    pub sandbox: Arc<std::sync::OnceLock<Result<(), String>>>,
    /// Sessions subscribed to channel resources.
    pub subscriptions: Arc<crate::mcp::resources::Subscriptions>,
}
