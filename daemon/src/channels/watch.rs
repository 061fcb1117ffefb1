//! Wake-ups for long-polling `sync_messages` calls, driven by the commit bus.
//!
//! One `tokio::sync::watch` per channel that someone waits on carries a
//! counter the bus bumps on every commit of that channel. A waiter subscribes
//! *before* it reads the database, so a commit that lands between its read and
//! its wait still wakes it; waking a thousand waiters costs one counter bump
//! and no polling. Channels nobody waits on keep no entry.

use crate::store::Commit;
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::watch;

/// Per-channel commit notifications.
#[derive(Default)]
pub(crate) struct Watchers {
    map: Mutex<HashMap<String, watch::Sender<u64>>>,
}

impl Watchers {
    /// A receiver that changes whenever a write commits in `channel_id`.
    pub fn subscribe(&self, channel_id: &str) -> watch::Receiver<u64> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(channel_id.to_string())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// Wakes the channel's waiters (called from the commit bus).
    pub fn committed(&self, commit: &Commit) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = map.get(&commit.channel_id) {
            if tx.receiver_count() == 0 {
                map.remove(&commit.channel_id);
            } else {
                tx.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::store::Commit;

    fn commit(channel: &str) -> Commit {
        Commit {
            channel_id: channel.into(),
            head: 1,
            changes: Default::default(),
        }
    }

    #[test]
    fn a_commit_wakes_that_channels_waiters_only() {
        let w = Watchers::default();
        let mut a = w.subscribe("a");
        let b = w.subscribe("b");
        w.committed(&commit("a"));
        assert!(a.has_changed().unwrap());
        assert!(!b.has_changed().unwrap());
        a.borrow_and_update();
        w.committed(&commit("a"));
        assert!(
            a.has_changed().unwrap(),
            "every commit wakes, not only the first"
        );
    }

    #[test]
    fn a_channel_nobody_waits_on_keeps_no_entry() {
        let w = Watchers::default();
        drop(w.subscribe("a"));
        w.committed(&commit("a"));
        w.committed(&commit("never-watched"));
        assert!(w.map.lock().unwrap().is_empty());
    }
}
