//! Channels as MCP resources (`channel://ID`), with
//! `notifications/resources/updated` to subscribed sessions (DESIGN §4).
//!
//! This is a convenience for clients that use resources; `sync_messages` is
//! the path that must always work (claude.ai ignores notifications).
//! Subscriptions belong to an MCP session (the 2025 protocol revisions);
//! they end with it.

use rmcp::model::ResourceUpdatedNotificationParam;
use rmcp::{Peer, RoleServer};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// URI scheme of a channel resource.
pub const SCHEME: &str = "channel://";

/// The channel id of a `channel://ID` URI.
pub fn channel_of(uri: &str) -> Option<&str> {
    uri.strip_prefix(SCHEME).filter(|id| !id.is_empty())
}

/// One subscribed session: its id and the handle to notify it.
type Subscriber = (u64, Peer<RoleServer>);

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

    pub fn subscribe(&self, channel_id: &str, session: u64, peer: Peer<RoleServer>) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let subs = map.entry(channel_id.to_string()).or_default();
        if !subs.iter().any(|(s, _)| *s == session) {
            subs.push((session, peer));
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

    /// Tells every subscribed session that the channel changed; forgets
    /// sessions that are gone.
    pub fn notify(self: &Arc<Self>, channel_id: &str) {
        let peers: Vec<Subscriber> = {
            let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            match map.get(channel_id) {
                Some(v) => v.clone(),
                None => return,
            }
        };
        let cid = channel_id.to_string();
        let me = self.clone();
        tokio::spawn(async move {
            for (session, peer) in peers {
                let param = ResourceUpdatedNotificationParam::new(format!("{SCHEME}{cid}"));
                if peer.notify_resource_updated(param).await.is_err() {
                    me.unsubscribe(&cid, session);
                }
            }
        });
    }
}
