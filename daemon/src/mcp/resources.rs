//! Channels as MCP resources (`channel://ID`), with
//! `notifications/resources/updated` to subscribed sessions, following the
//! store's commit bus.
//!
//! This is a convenience for clients that use resources; `sync_messages` is
//! the path that must always work (claude.ai ignores notifications).
//! Subscriptions come two ways: `resources/subscribe` in an MCP session (the
//! 2025 revisions), ending with the session, and `subscriptions/listen`
//! (2026-07-28), ending with that request.
//!
//! A subscription remembers who subscribed. Before each notification the
//! subscribers are checked again, in one read after the commit: a subscriber
//! whose token was revoked or expired, or who no longer holds a seat (nor
//! administers the channel), is dropped and hears nothing of that commit or
//! any later one.

use crate::channels::Channels;
use crate::model::Principal;
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
    /// A test's receiver (the transport below this module).
    #[cfg(test)]
    Test(tokio::sync::mpsc::UnboundedSender<String>),
}

impl Sink {
    /// Sends the notification; false when the subscriber is gone.
    async fn updated(&self, uri: &str) -> bool {
        match self {
            Sink::Session(peer) => peer
                .notify_resource_updated(ResourceUpdatedNotificationParam::new(uri.to_string()))
                .await
                .is_ok(),
            Sink::Listen(sink) => sink.notify_resource_updated(uri.to_string()).await.is_ok(),
            #[cfg(test)]
            Sink::Test(tx) => tx.send(uri.to_string()).is_ok(),
        }
    }
}

/// One subscriber: its id, who it is, and where to notify it.
#[derive(Clone)]
struct Subscriber {
    id: u64,
    who: Principal,
    sink: Sink,
}

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

    /// Subscribes `who` (who was just found allowed to read the channel).
    pub fn subscribe(&self, channel_id: &str, session: u64, who: Principal, sink: Sink) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let subs = map.entry(channel_id.to_string()).or_default();
        if !subs.iter().any(|s| s.id == session) {
            subs.push(Subscriber {
                id: session,
                who,
                sink,
            });
        }
    }

    pub fn unsubscribe(&self, channel_id: &str, session: u64) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(subs) = map.get_mut(channel_id) {
            subs.retain(|s| s.id != session);
            if subs.is_empty() {
                map.remove(channel_id);
            }
        }
    }

    /// Tells subscribers of every committed change from now on (sending on
    /// `rt`: the bus calls from the store's writer thread), each only while
    /// `channels` says it may read the channel.
    pub fn follow(self: &Arc<Self>, channels: &Channels, rt: Handle) {
        let me = self.clone();
        let ch = channels.clone();
        channels
            .store()
            .bus()
            .subscribe(move |c| me.notify(&c.channel_id, &ch, &rt));
    }

    /// Tells every subscriber that may still read the channel that it
    /// changed; forgets the others, and subscribers that are gone.
    fn notify(self: &Arc<Self>, channel_id: &str, channels: &Channels, rt: &Handle) {
        let subs: Vec<Subscriber> = {
            let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            match map.get(channel_id) {
                Some(v) => v.clone(),
                None => return,
            }
        };
        let cid = channel_id.to_string();
        let me = self.clone();
        let channels = channels.clone();
        rt.spawn(async move {
            // Read after the commit was published: a kick or a revocation
            // that committed before it is seen here.
            let who = subs.iter().map(|s| s.who.clone()).collect();
            let allowed = match channels.readers_among(&cid, who).await {
                Ok(a) => a,
                Err(e) => {
                    // Nobody is told anything the check could not clear.
                    tracing::warn!(channel = %cid, error = %e, "subscribers not checked; no notification sent");
                    return;
                }
            };
            let uri = format!("{SCHEME}{cid}");
            for (s, may_read) in subs.into_iter().zip(allowed) {
                if !may_read {
                    tracing::info!(channel = %cid, "a subscriber lost access to the channel; unsubscribed");
                    me.unsubscribe(&cid, s.id);
                } else if !s.sink.updated(&uri).await {
                    me.unsubscribe(&cid, s.id);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::channels::{NewChannelRequest, SlotSpec, UpdateOp};
    use crate::store::principals;
    use crate::testing::{TempStore, principal};
    use serde_json::json;
    use std::time::Duration;
    use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
    use tokio_util::sync::CancellationToken;

    struct Fixture {
        _t: TempStore,
        channels: Channels,
        subs: Arc<Subscriptions>,
        alice: Principal,
        bob: Principal,
        cid: String,
    }

    /// alice (admin) and bob seated in one channel; both subscribed, bob
    /// first, so that every notification task decides bob's fate before it
    /// sends alice hers.
    async fn fixture() -> (
        Fixture,
        UnboundedReceiver<String>,
        UnboundedReceiver<String>,
    ) {
        let t = TempStore::new();
        let channels = Channels::new(t.store.clone(), 1024, CancellationToken::new());
        let subs = Arc::new(Subscriptions::default());
        subs.follow(&channels, Handle::current());
        let alice = principal(&t.store, "alice").await;
        let bob = principal(&t.store, "bob").await;
        let created = channels
            .create(
                &alice,
                NewChannelRequest {
                    name: "watched".into(),
                    slots: vec![
                        SlotSpec::parse("alice").unwrap(),
                        SlotSpec::parse("bob").unwrap(),
                    ],
                    join_as: Some("alice".into()),
                    allow_network: false,
                    bot: None,
                },
            )
            .await
            .unwrap();
        channels
            .join(&bob, &created.invites[0].invite_code)
            .await
            .unwrap();
        let cid = created.channel_id;
        let (tb, rb) = unbounded_channel();
        let (ta, ra) = unbounded_channel();
        subs.subscribe(&cid, 1, bob.clone(), Sink::Test(tb));
        subs.subscribe(&cid, 2, alice.clone(), Sink::Test(ta));
        let f = Fixture {
            _t: t,
            channels,
            subs,
            alice,
            bob,
            cid,
        };
        (f, ra, rb)
    }

    /// Waits (bounded) for the next notification.
    async fn next(rx: &mut UnboundedReceiver<String>) -> String {
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("no notification came")
            .expect("unsubscribed")
    }

    #[tokio::test]
    async fn members_hear_of_every_commit() {
        let (f, mut ra, mut rb) = fixture().await;
        f.channels
            .post(&f.bob, &f.cid, None, &json!("hi"), None)
            .await
            .unwrap();
        let uri = format!("channel://{}", f.cid);
        assert_eq!(next(&mut rb).await, uri);
        assert_eq!(next(&mut ra).await, uri);
    }

    /// The attack: bob, kicked, keeps his subscription and learns of every
    /// later commit. Stopped by the check of every subscriber, after the
    /// commit, before each notification (`Channels::readers_among`).
    #[tokio::test]
    async fn a_kicked_subscriber_hears_nothing_after_the_kick() {
        let (f, mut ra, mut rb) = fixture().await;
        f.channels
            .update(&f.alice, &f.cid, UpdateOp::Kick { slot: "bob".into() })
            .await
            .unwrap();
        f.channels
            .post(&f.alice, &f.cid, None, &json!("after the kick"), None)
            .await
            .unwrap();
        // alice hears of both commits; the task that told her had decided
        // about bob first.
        next(&mut ra).await;
        next(&mut ra).await;
        assert!(rb.try_recv().is_err(), "the kicked subscriber was notified");
        assert!(f.subs.map.lock().unwrap()[&f.cid].iter().all(|s| s.id != 1));
    }

    /// The same with bob's token revoked (`token revoke`): his subscription
    /// outlives the request that made it, not the token.
    #[tokio::test]
    async fn a_revoked_subscriber_hears_nothing_after_the_revocation() {
        let (f, mut ra, mut rb) = fixture().await;
        assert_eq!(
            principals::revoke_cli_tokens(f.channels.store(), "bob")
                .await
                .unwrap(),
            1
        );
        f.channels
            .post(&f.alice, &f.cid, None, &json!("after the revocation"), None)
            .await
            .unwrap();
        next(&mut ra).await;
        assert!(
            rb.try_recv().is_err(),
            "the revoked subscriber was notified"
        );
    }
}
