//! The commit bus: what every committed write changed, told to whoever
//! follows it.
//!
//! The store's executor publishes one [`Commit`] per channel a write changed,
//! after the COMMIT that made the write durable and only for writes that kept
//! their changes. Subscribers (long-poll wake-ups, resource notifications, the
//! bot dispatcher) register once at start-up. They are called on the writer's
//! thread, in commit order, so each must be quick and must not block: wake a
//! `watch`, spawn a task, never wait on the store.
//!
//! A backend shared by several daemons would also feed this bus from its
//! notification channel (PostgreSQL's LISTEN/NOTIFY), so that a commit made
//! by another daemon wakes this one's waiters the same way.

use crate::model::Seq;
use std::sync::{Arc, RwLock};

/// What one write changed in one channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Changes {
    /// Messages were appended (up to the commit's `head`).
    pub messages: bool,
    /// A seat was filled, moved or freed.
    pub seats: bool,
    /// A bot was attached.
    pub bots: bool,
    pub closed: bool,
    pub renamed: bool,
    /// Page links were revoked (open page streams re-check theirs).
    pub links: bool,
}

/// One committed change of one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Commit {
    pub channel_id: String,
    /// The channel's last `seq` after the write (0 when it appended nothing).
    pub head: Seq,
    pub changes: Changes,
}

type Subscriber = Arc<dyn Fn(&Commit) + Send + Sync>;

/// When, relative to the answers of the writes that made it, a subscriber
/// hears of a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Before any write of the batch returns: once a write returned, this
    /// subscriber has been told of it (resource notifications, the bot
    /// dispatcher, tests).
    BeforeAnswers,
    /// Right after the batch's writers were answered: long-poll wake-ups.
    /// Waking a thousand waiters schedules a thousand tasks; the poster's
    /// acknowledgement goes out first instead of queueing behind them. A
    /// waiter misses nothing by this: it subscribes before it reads, and the
    /// commit is durable and visible before either phase runs.
    AfterAnswers,
}

/// Subscribers to committed writes.
#[derive(Default)]
pub(crate) struct CommitBus {
    before: RwLock<Vec<Subscriber>>,
    after: RwLock<Vec<Subscriber>>,
}

impl CommitBus {
    /// Calls `f` with every commit from now on (on the writer's thread),
    /// before the writes that made it return.
    pub fn subscribe(&self, f: impl Fn(&Commit) + Send + Sync + 'static) {
        self.subscribe_at(Phase::BeforeAnswers, f);
    }

    /// Calls `f` with every commit from now on (on the writer's thread), at
    /// `phase`.
    pub fn subscribe_at(&self, phase: Phase, f: impl Fn(&Commit) + Send + Sync + 'static) {
        let list = match phase {
            Phase::BeforeAnswers => &self.before,
            Phase::AfterAnswers => &self.after,
        };
        let mut subs = list.write().unwrap_or_else(|p| p.into_inner());
        subs.push(Arc::new(f));
    }

    /// Tells every subscriber of one commit (a commit nobody here waits an
    /// answer for: another daemon's).
    pub fn publish(&self, commit: &Commit) {
        self.publish_at(Phase::BeforeAnswers, commit);
        self.publish_at(Phase::AfterAnswers, commit);
    }

    /// Tells the subscribers of `phase` of one commit.
    pub fn publish_at(&self, phase: Phase, commit: &Commit) {
        let list = match phase {
            Phase::BeforeAnswers => &self.before,
            Phase::AfterAnswers => &self.after,
        };
        let subs = list.read().unwrap_or_else(|p| p.into_inner());
        for s in subs.iter() {
            s(commit);
        }
    }
}
