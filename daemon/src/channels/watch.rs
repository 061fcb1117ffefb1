//! Wake-ups for long-polling `sync_messages` calls, driven by the commit bus.
//!
//! One `tokio::sync::watch` per channel that someone waits on carries a
//! counter the bus bumps on every commit of that channel. A waiter subscribes
//! *before* it reads the database, so a commit that lands between its read and
//! its wait still wakes it; waking a thousand waiters costs one counter bump
//! and no polling. Channels nobody waits on keep no entry.
//!
//! It also counts, per channel, the waiters a commit woke whose wake-up is
//! not yet resolved (answered, or parked again): the [`Herd`]. A waiter
//! parks with [`Watchers::park`]; a commit turns every parked waiter of its
//! channel into one such wake-up ([`Woken`]), which the waiter holds until
//! its answer is handed over. The direct long-poll path uses the count to
//! let a woken waiter's *next* request wait until the rest of its herd has
//! been answered (`http::longpoll`).

use crate::store::Commit;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// Per-channel commit notifications.
#[derive(Default)]
pub(crate) struct Watchers {
    map: Mutex<HashMap<String, Entry>>,
}

struct Entry {
    tx: watch::Sender<u64>,
    /// Waiters parked since the last commit.
    parked: usize,
    herd: Arc<Herd>,
}

impl Entry {
    fn new() -> Entry {
        Entry {
            tx: watch::channel(0).0,
            parked: 0,
            herd: Arc::default(),
        }
    }
}

/// The waiters of one channel that a commit woke and that have not yet
/// resolved their wake-up.
#[derive(Default, Debug)]
pub(crate) struct Herd {
    pending: AtomicUsize,
    settled: Notify,
}

impl Herd {
    /// Wake-ups not yet resolved.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// Returns once every wake-up counted now or later is resolved, or
    /// after `at_most`, whichever comes first.
    pub async fn settled(&self, at_most: Duration) {
        let _ = tokio::time::timeout(at_most, async {
            loop {
                let settled = self.settled.notified();
                tokio::pin!(settled);
                settled.as_mut().enable();
                if self.pending() == 0 {
                    return;
                }
                settled.await;
            }
        })
        .await;
    }

    fn resolve(&self) {
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.settled.notify_waiters();
        }
    }
}

/// A waiter parked on a channel, until [`Watchers::unpark`] (or drop).
pub(crate) struct Parked<'a> {
    watchers: &'a Watchers,
    channel_id: &'a str,
    /// The channel's commit counter when it parked.
    at: u64,
    done: bool,
}

/// One waiter's wake-up by a commit, counted in its channel's [`Herd`]
/// until dropped (resolved).
#[derive(Debug)]
pub(crate) struct Woken {
    herd: Arc<Herd>,
}

impl Woken {
    /// A wake-up of a herd of its own (tests).
    #[cfg(test)]
    pub fn alone() -> Woken {
        let herd = Arc::new(Herd::default());
        herd.pending.store(1, Ordering::Release);
        Woken { herd }
    }

    /// The herd this wake-up belongs to.
    pub fn herd(&self) -> &Arc<Herd> {
        &self.herd
    }
}

impl Drop for Woken {
    fn drop(&mut self) {
        self.herd.resolve();
    }
}

impl Watchers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A receiver that changes whenever a write commits in `channel_id`.
    pub fn subscribe(&self, channel_id: &str) -> watch::Receiver<u64> {
        self.lock()
            .entry(channel_id.to_string())
            .or_insert_with(Entry::new)
            .tx
            .subscribe()
    }

    /// Counts a waiter as parked on `channel_id` (it holds a receiver of
    /// [`Watchers::subscribe`], so the channel keeps its entry): the next
    /// commit counts it as woken.
    pub fn park<'a>(&'a self, channel_id: &'a str) -> Parked<'a> {
        let mut map = self.lock();
        let e = map.entry(channel_id.to_string()).or_insert_with(Entry::new);
        e.parked += 1;
        Parked {
            watchers: self,
            channel_id,
            at: *e.tx.borrow(),
            done: false,
        }
    }

    /// Ends a wait: the wake-up to resolve if a commit counted the waiter
    /// while it was parked.
    pub fn unpark(&self, mut p: Parked<'_>) -> Option<Woken> {
        p.done = true;
        self.settle(p.channel_id, p.at)
    }

    fn settle(&self, channel_id: &str, at: u64) -> Option<Woken> {
        let mut map = self.lock();
        let e = map.get_mut(channel_id)?;
        if *e.tx.borrow() == at {
            e.parked = e.parked.saturating_sub(1);
            return None;
        }
        Some(Woken {
            herd: e.herd.clone(),
        })
    }

    /// Wakes the channel's waiters (called from the commit bus).
    pub fn committed(&self, commit: &Commit) {
        let mut map = self.lock();
        if let Some(e) = map.get_mut(&commit.channel_id) {
            if e.tx.receiver_count() == 0 {
                map.remove(&commit.channel_id);
            } else {
                // Under the lock: a waiter is counted woken here or has
                // unparked before, never both.
                if e.parked > 0 {
                    e.herd.pending.fetch_add(e.parked, Ordering::AcqRel);
                    e.parked = 0;
                }
                e.tx.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        if !self.done {
            // The wait was given up (its caller went away): resolved now.
            drop(self.watchers.settle(self.channel_id, self.at));
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

    #[test]
    fn a_commit_counts_the_parked_waiters_once_until_each_resolves() {
        let w = Watchers::default();
        let _rx: Vec<_> = (0..3).map(|_| w.subscribe("a")).collect();
        let p: Vec<_> = (0..3).map(|_| w.park("a")).collect();
        let herd = w.lock()["a"].herd.clone();
        // One waiter leaves before the commit (a deadline): not counted.
        let mut p = p.into_iter();
        assert!(w.unpark(p.next().unwrap()).is_none());
        w.committed(&commit("a"));
        // A second commit before they resolve counts nobody twice.
        w.committed(&commit("a"));
        assert_eq!(herd.pending(), 2);
        let woken = w.unpark(p.next().unwrap()).unwrap();
        assert!(Arc::ptr_eq(woken.herd(), &herd));
        // A waiter that goes away while woken resolves as it goes.
        drop(p.next().unwrap());
        assert_eq!(herd.pending(), 1);
        drop(woken);
        assert_eq!(herd.pending(), 0);
        // Parked again after the wake-up: counted by the next commit only.
        let again = w.park("a");
        w.committed(&commit("a"));
        assert_eq!(herd.pending(), 1);
        drop(w.unpark(again));
        assert_eq!(herd.pending(), 0);
    }

    #[tokio::test]
    async fn settled_returns_when_the_last_wake_up_resolves_or_at_the_bound() {
        let w = Watchers::default();
        let _rx = w.subscribe("a");
        let p = w.park("a");
        let herd = w.lock()["a"].herd.clone();
        w.committed(&commit("a"));
        let woken = w.unpark(p).unwrap();
        let waiting = tokio::spawn({
            let herd = herd.clone();
            async move { herd.settled(Duration::from_secs(3600)).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(woken);
        waiting.await.unwrap();
        // Nothing pending: at once.
        herd.settled(Duration::from_secs(3600)).await;
        // Something pending that never resolves: at the bound.
        let p = w.park("a");
        w.committed(&commit("a"));
        let _stuck = w.unpark(p).unwrap();
        let started = std::time::Instant::now();
        herd.settled(Duration::from_millis(20)).await;
        assert!(started.elapsed() >= Duration::from_millis(20));
    }
}
