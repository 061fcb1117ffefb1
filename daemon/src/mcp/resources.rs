//! Channels as MCP resources (`channel://ID`), with
//! `notifications/resources/updated` to subscribed sessions, following the
//! store's commit bus.
//!
//! This is a convenience for clients that use resources; `sync_messages` is
//! the path that must always work (claude.ai ignores notifications).
//! Subscriptions come two ways: `resources/subscribe` in an MCP session (the
//! 2025 revisions), ending with the session, and `subscriptions/listen`
//! (2026-07-28), ending with that request.

use rmcp::model::ResourceUpdatedNotificationParam;
use rmcp::service::SubscriptionSink;
use rmcp::{Peer, RoleServer};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::runtime::Handle;

/// URI scheme of a channel resource.
pub const SCHEME: &str = "channel://";

/// The channel id of a `channel://ID` URI.
pub fn channel_of(uri: &str) -> Option<&str> {
    uri.strip_prefix(SCHEME).filter(|id| !id.is_empty())
}

/// Where a subscriber hears of updates.
#[derive(Clone)]
pub enum Sink {
    /// A 2025 session that called `resources/subscribe`.
    Session(Peer<RoleServer>),
    /// A 2026 `subscriptions/listen` request.
    Listen(SubscriptionSink),
}

/// One subscriber: its id and where to notify it.
type Subscriber = (u64, Sink);

/// Sessions subscribed to each channel.
#[derive(Default)]
pub struct Subscriptions {
    next: AtomicU64,
    map: Mutex<HashMap<String, Vec<Subscriber>>>,
}

impl Subscriptions {
    /// A fresh id for one MCP server instance (one session).
    pub fn new_session_id(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    pub fn subscribe(&self, channel_id: &str, session: u64, sink: Sink) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let subs = map.entry(channel_id.to_string()).or_default();
        if !subs.iter().any(|(s, _)| *s == session) {
            subs.push((session, sink));
        }
    }

    pub fn unsubscribe(&self, channel_id: &str, session: u64) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(subs) = map.get_mut(channel_id) {
            subs.retain(|(s, _)| *s != session);
            if subs.is_empty() {
                map.remove(channel_id);
            }
        }
    }

    /// Tells subscribers of every committed change from now on (sending on
    /// `rt`: the bus calls from the store's writer thread).
    pub fn follow(self: &Arc<Self>, bus: &crate::store::CommitBus, rt: Handle) {
        let me = self.clone();
        bus.subscribe(move |c| me.notify(&c.channel_id, &rt));
    }

    /// Tells every subscribed session that the channel changed; forgets
    /// sessions that are gone.
    fn notify(self: &Arc<Self>, channel_id: &str, rt: &Handle) {
        let peers: Vec<Subscriber> = {
            let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            match map.get(channel_id) {
                Some(v) => v.clone(),
                None => return,
            }
        };
        let cid = channel_id.to_string();
        let me = self.clone();
        rt.spawn(async move {
            let uri = format!("{SCHEME}{cid}");
            for (session, sink) in peers {
                let sent = match sink {
                    Sink::Session(peer) => peer
                        .notify_resource_updated(ResourceUpdatedNotificationParam::new(uri.clone()))
                        .await
                        .is_ok(),
                    Sink::Listen(sink) => sink.notify_resource_updated(uri.clone()).await.is_ok(),
                };
                if !sent {
                    me.unsubscribe(&cid, session);
                }
            }
        });
    }
}
