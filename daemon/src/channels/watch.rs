//! Wake-ups for long-polling `sync_messages` calls and the bot dispatcher.
//!
//! One `tokio::sync::watch` per channel carries the channel's last committed
//! `seq`. A waiter subscribes *before* it reads the database, so a commit that
//! lands between its read and its wait still wakes it; waking costs one
//! atomic store per commit and no polling. Channels nobody waits on keep no
//! entry.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use tokio::sync::watch;

/// Called after every commit with the channel id and its new last `seq`.
pub type CommitHook = Box<dyn Fn(&str, i64) + Send + Sync>;

/// Per-channel commit notifications.
#[derive(Default)]
pub struct Watchers {
    map: Mutex<HashMap<String, watch::Sender<i64>>>,
    /// The bot dispatcher's doorbell, installed once at start-up.
    on_commit: OnceLock<CommitHook>,
}

impl Watchers {
    /// A receiver that changes whenever a message commits in `channel_id`.
    pub fn subscribe(&self, channel_id: &str) -> watch::Receiver<i64> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(channel_id.to_string())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// Installs the function told of every commit (the bot dispatcher).
    pub fn set_commit_hook(&self, hook: CommitHook) {
        let _ = self.on_commit.set(hook);
    }

    /// Announces that `seq` committed in `channel_id`. Call after the commit.
    pub fn notify(&self, channel_id: &str, seq: i64) {
        {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(tx) = map.get(channel_id) {
                if tx.receiver_count() == 0 {
                    map.remove(channel_id);
                } else {
                    tx.send_if_modified(|cur| {
                        if seq > *cur {
                            *cur = seq;
                            true
                        } else {
                            false
                        }
                    });
                }
            }
        }
        // Outside the lock: the hook takes locks of its own.
        if let Some(hook) = self.on_commit.get() {
            hook(channel_id, seq);
        }
    }
}
