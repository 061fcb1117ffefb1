//! Hook dispatch: runs each bot's hooks in transcript order.
//!
//! The transcript drives everything. Each bot has a durable `cursor`: it has
//! handled every message up to that `seq`. The next message past the cursor
//! decides the hook: its own `bot:attach` → `on_init`; `seat:filled` or
//! `seat:moved` → `on_join`; a user message the bot may read → `on_message`;
//! anything else (bot posts included, so bots never trigger bots) is passed
//! over, as is a hook the bot's class does not define. An outcome must keep
//! the hook protocol's rules (`Limits::enforce`, the check the runner applies
//! too). A hook's posts, its
//! new state and the cursor move commit in one transaction; a failed hook
//! commits only one `control` `bot:error` message and the cursor move. So a
//! crash between a message and its hook loses nothing (the hook runs after
//! restart) and a committed hook never runs again.
//!
//! A hook's inputs are a function of the transcript up to its trigger (so
//! that `mcp-multiplayer replay` can re-run it): the trigger as the bot may
//! see it, the state the bot's previous hook left, `ctx.players` as of the
//! trigger (`super::context`), and, for a bot with a seed, the entropy
//! derived from the seed and the trigger's seq, the trigger's `ts` as its
//! clock and the hash seed the bot's seed gives (`super::seed`).
//!
//! Every entry a hook writes records its `cause`, the `seq` of the message
//! that triggered the hook, and the last one the salted `state_hash` of the
//! bot's state after it; a hook that posts nothing but changes its state
//! writes one `control` `bot:state` entry to carry them. So the chain shows
//! what each bot had seen when it wrote (a commitment caused by seq 7 landed
//! at seq 10 was made before the guesses at 8 and 9), and commits to every
//! state a hook left (`crate::transcript` has the format).
//!
//! The dispatcher follows the store's commit bus: a commit that attached a
//! bot registers its channel, and every commit of a channel with bots
//! schedules it. One task per channel drains that channel's backlog, so a
//! channel's hooks run one at a time in order; a semaphore bounds hooks
//! across channels. Tools never wait for hooks, so a slow or hostile bot
//! cannot delay another channel's tools, only its own channel's bot replies.

use super::{Bots, context, seed};
use crate::channels::rules;
use crate::model::{BotPostBody, Event, MessageKind, Seq};
use crate::quota::Quotas;
use crate::store::{
    BotRecord, BotRuntime, NewMessage, ReadTx, Store, StoreError, StoredMessage, Tx,
};
use crate::transcript::{self, CanonicalJson};
use hook_protocol::{BotSpec, Hook, HookContext, HookError, HookOutcome, Origin, Player, Post};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, Semaphore};

/// Messages scanned per read while looking for the next hook.
const SCAN: usize = 64;

/// Messages read first: the next hook's trigger is nearly always among the
/// first few (past the bot's own posts), so the rest of a backlog is read
/// only when it is not.
const SCAN_FIRST: usize = 4;

/// How often a daemon sharing the database looks for channels whose hooks no
/// live daemon runs (their owner died): the longest a game waits for its
/// bot after a daemon is killed, unless someone posts meanwhile.
const OWNERSHIP_SWEEP: std::time::Duration = std::time::Duration::from_secs(1);

/// Handle to the dispatcher. Cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    bots: Bots,
    /// Where drain tasks are spawned (the bus calls from the writer thread).
    runtime: tokio::runtime::Handle,
    permits: Semaphore,
    /// Uid offsets not in use by a running hook (one per permit).
    free_slots: Mutex<Vec<u32>>,
    /// Channels that have at least one bot.
    with_bots: Mutex<HashSet<String>>,
    /// Channels whose drain task is running, and whether it was poked since.
    running: Mutex<HashMap<String, bool>>,
    /// Signalled whenever the last drain task ends.
    idle: Notify,
    hooks_run: AtomicU64,
    /// Bots' posts count against their channel's quotas.
    quotas: Quotas,
}

/// A bot's next piece of work in one channel.
struct Work {
    bot_id: String,
    /// The cursor the work was computed from.
    cursor: Seq,
    /// The message that triggers a hook, or only a cursor move to `skip_to`.
    next: Next,
}

enum Next {
    /// Nothing to run up to this seq: move the cursor.
    Skip(Seq),
    Hook(Box<HookWork>),
}

struct HookWork {
    trigger: Seq,
    /// The trigger's `ts`: the hook's clock.
    trigger_ts: String,
    hook: Hook,
    bot: BotRecord,
    runtime: BotRuntime,
    /// `ctx.players` as of the trigger ([`context::players_at`]).
    players: Vec<Player>,
}

impl Dispatcher {
    /// Starts following `store`'s commits and schedules every channel with a
    /// backlog. Must be called inside the tokio runtime.
    ///
    /// # Errors
    /// The list of channels with bots cannot be read.
    #[cfg(test)]
    pub async fn start(store: Store, bots: Bots) -> Result<Dispatcher, StoreError> {
        Self::start_with_quotas(store, bots, Quotas::unlimited()).await
    }

    /// [`Dispatcher::start`], charging bots' posts to their channel's
    /// `quotas`.
    ///
    /// # Errors
    /// As [`Dispatcher::start`].
    pub async fn start_with_quotas(
        store: Store,
        bots: Bots,
        quotas: Quotas,
    ) -> Result<Dispatcher, StoreError> {
        let parallel = bots.cfg.max_parallel_hooks;
        let d = Dispatcher {
            inner: Arc::new(Inner {
                runtime: tokio::runtime::Handle::current(),
                permits: Semaphore::new(parallel),
                free_slots: Mutex::new((0..parallel as u32).rev().collect()),
                store: store.clone(),
                bots,
                with_bots: Mutex::default(),
                running: Mutex::default(),
                idle: Notify::new(),
                hooks_run: AtomicU64::new(0),
                quotas,
            }),
        };
        // Follow the bus before reading the backlog: a commit in between is
        // then seen by one or the other.
        let follower = d.clone();
        store.bus().subscribe(move |c| {
            if c.changes.bots {
                follower.register(&c.channel_id);
            }
            follower.poke(&c.channel_id);
        });
        let ids = store
            .read(|tx: &dyn ReadTx| tx.channels_with_bots())
            .await?;
        for id in ids {
            d.register(&id);
            d.poke(&id);
        }
        if store.is_shared() {
            d.inner.runtime.spawn(d.clone().sweep_ownership());
        }
        Ok(d)
    }

    /// With several daemons: takes over the channels whose owner died. A
    /// dead daemon's channel locks are free at once, but a channel with a
    /// backlog and no new commit would not be poked; so every
    /// [`OWNERSHIP_SWEEP`] each channel with bots that no daemon is known
    /// here to run is poked, and its drain task takes the lock if it is free.
    async fn sweep_ownership(self) {
        let mut tick = tokio::time::interval(OWNERSHIP_SWEEP);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if self.inner.store.is_closed() {
                return;
            }
            let idle: Vec<String> = {
                let running = lock(&self.inner.running);
                lock(&self.inner.with_bots)
                    .iter()
                    .filter(|c| !running.contains_key(*c) && !self.inner.store.holds_channel(c))
                    .cloned()
                    .collect()
            };
            for cid in idle {
                self.poke(&cid);
            }
        }
    }

    /// Hooks run since start.
    #[cfg(test)]
    pub fn hooks_run(&self) -> u64 {
        self.inner.hooks_run.load(Ordering::Relaxed)
    }

    /// Waits until no channel has hooks running or pending.
    #[cfg(test)]
    pub(crate) async fn settled(&self) {
        loop {
            let idle = self.inner.idle.notified();
            if lock(&self.inner.running).is_empty() {
                return;
            }
            idle.await;
        }
    }

    fn register(&self, channel_id: &str) {
        lock(&self.inner.with_bots).insert(channel_id.to_string());
    }

    /// Schedules a channel: starts its drain task, or tells the running one to
    /// look again.
    fn poke(&self, channel_id: &str) {
        if !lock(&self.inner.with_bots).contains(channel_id) {
            return;
        }
        {
            let mut running = lock(&self.inner.running);
            if let Some(again) = running.get_mut(channel_id) {
                *again = true;
                return;
            }
            running.insert(channel_id.to_string(), false);
        }
        let me = self.clone();
        let cid = channel_id.to_string();
        self.inner.runtime.spawn(async move { me.drain(cid).await });
    }

    async fn drain(self, cid: String) {
        loop {
            // With several daemons on one database, only the channel's owner
            // runs its hooks (always this daemon on SQLite).
            let owner = match self.inner.store.owns_channel(&cid).await {
                Ok(o) => o,
                Err(e) => {
                    tracing::error!(channel = %cid, error = %e, "cannot tell who runs this channel's bots");
                    false
                }
            };
            if owner {
                match self.step(&cid).await {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(e) => tracing::error!(channel = %cid, error = %e, "bot dispatch failed"),
                }
            }
            let mut running = lock(&self.inner.running);
            match running.get_mut(&cid) {
                Some(again) if *again && owner => *again = false,
                _ => {
                    running.remove(&cid);
                    if running.is_empty() {
                        self.inner.idle.notify_waiters();
                    }
                    return;
                }
            }
        }
    }

    /// Does one unit of work for the channel; `Ok(true)` if there may be more.
    async fn step(&self, cid: &str) -> Result<bool, StoreError> {
        let c = cid.to_string();
        let work = self
            .inner
            .store
            .read(move |tx: &dyn ReadTx| next_work(tx, &c))
            .await?;
        let Some(work) = work else { return Ok(false) };
        let hw = match work.next {
            Next::Skip(to) => {
                let (c, bid, from) = (cid.to_string(), work.bot_id, work.cursor);
                self.inner
                    .store
                    .write(move |tx: &mut dyn Tx| {
                        if cursor_of(tx, &c, &bid)? == Some(from) {
                            tx.set_bot_cursor(&c, &bid, to)?;
                        }
                        Ok::<_, StoreError>(())
                    })
                    .await?;
                return Ok(true);
            }
            Next::Hook(hw) => hw,
        };
        let HookWork {
            trigger,
            trigger_ts,
            hook,
            bot,
            runtime,
            players,
        } = *hw;
        // Canonicalised only if the hook posts nothing (`commit_outcome`).
        let state_before = runtime.stored_state;
        let state_salt = runtime.state_salt;
        let mut job = self.inner.bots.job(
            BotSpec {
                name: bot.name,
                source: runtime.source,
                params: Value::Object(runtime.params),
                compiled: None,
            },
            hook,
            HookContext {
                channel_id: cid.to_string(),
                bot_id: bot.bot_id.clone(),
                players,
            },
            runtime.state,
            bot.network,
        );
        // A seeded bot's hook draws its randomness from the seed and reads
        // the trigger's time as its clock: a function of the transcript, the
        // bot and its seed, which the channel reveals when it closes.
        if let Some(bot_seed) = &runtime.seed {
            job.entropy = Some(seed::hook_entropy(bot_seed, trigger));
            job.hash_seed = Some(seed::hash_seed(bot_seed));
            job.now = trigger_ts.parse().ok();
            if job.now.is_none() {
                tracing::warn!(channel = %cid, seq = trigger, "a message ts the hook clock cannot read");
            }
        }
        let outcome = {
            let _permit = self
                .inner
                .permits
                .acquire()
                .await
                .map_err(|e| StoreError::Join(e.to_string()))?;
            // Each running hook gets a uid of its own (root mode): RLIMIT_NPROC
            // counts per uid, so hooks sharing one would share one thread budget.
            // Among the free uids, the runner's choice (one a sandbox
            // pre-warmed for this bot waits with, else one with room for
            // the sandbox its next hook will want), else the last freed.
            // A seeded bot with a fork template runs with the template's
            // own uid, which no other bot's hook has meanwhile.
            let first = self.inner.bots.cfg.sandbox_uid;
            let runner = &self.inner.bots.runner;
            let slot = match runner.reserve_uid(&job) {
                Some(uid) => {
                    job.runtime.sandbox_uid = uid;
                    None
                }
                None => {
                    let slot = {
                        let mut free = lock(&self.inner.free_slots);
                        let uids: Vec<u32> =
                            free.iter().map(|s| first.saturating_add(*s)).collect();
                        match runner.pick_uid(&job, &uids) {
                            Some(i) if i < free.len() => free.remove(i),
                            _ => free.pop().unwrap_or(0),
                        }
                    };
                    job.runtime.sandbox_uid = first.saturating_add(slot);
                    Some(slot)
                }
            };
            let started = std::time::Instant::now();
            let outcome = runner.run(&job).await;
            match slot {
                Some(slot) => lock(&self.inner.free_slots).push(slot),
                None => {
                    if runner.release_uid(&job) {
                        self.inner.store.metrics().hook_forked();
                    }
                }
            }
            let (kind, step) = outcome_kind(&outcome);
            self.inner
                .store
                .metrics()
                .hook_run(kind, step, started.elapsed());
            outcome
        };
        self.inner.hooks_run.fetch_add(1, Ordering::Relaxed);
        // The protocol's one check of an outcome (the runner applies it to
        // what the harness wrote; the daemon to what the runner printed):
        // posts, their types, sizes and recipients (players only), the state.
        // A broken rule becomes a `limit` failure.
        let outcome = job
            .limits
            .enforce(outcome, &job.hook, &job.context.players, Origin::Runner);
        let result = match outcome {
            HookOutcome::Ok { posts, state, .. } => Ok((posts, state)),
            HookOutcome::Error { error } => Err(error),
        };
        let ran = HookRan {
            channel_id: cid.to_string(),
            bot_id: bot.bot_id,
            cursor: work.cursor,
            trigger,
            state_before,
            state_salt,
        };
        let quotas = self.inner.quotas.clone();
        self.inner
            .store
            .write(move |tx: &mut dyn Tx| commit_outcome(tx, &quotas, &ran, result))
            .await?;
        Ok(true)
    }
}

/// A hook outcome as `/metrics` labels it, and the confinement step of a
/// sandbox failure.
fn outcome_kind(o: &HookOutcome) -> (&'static str, Option<&str>) {
    match o {
        HookOutcome::Ok { .. } => ("ok", None),
        HookOutcome::Error { error } => match error {
            HookError::Syntax { .. } => ("syntax", None),
            HookError::Policy { .. } => ("policy", None),
            HookError::Exception { .. } => ("exception", None),
            HookError::Memory { .. } => ("memory", None),
            HookError::OutputOverrun { .. } => ("output_overrun", None),
            HookError::Limit { .. } => ("limit", None),
            HookError::Timeout { .. } => ("timeout", None),
            HookError::Confinement { step, .. } => ("confinement", Some(step.as_str())),
            HookError::Internal { .. } => ("internal", None),
        },
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn cursor_of(tx: &dyn ReadTx, cid: &str, bid: &str) -> Result<Option<Seq>, StoreError> {
    tx.bot_cursor(cid, bid)
}

/// Finds the first bot of the channel with unhandled messages and what to do.
fn next_work(tx: &dyn ReadTx, cid: &str) -> Result<Option<Work>, StoreError> {
    let Some(ch) = tx.channel(cid)? else {
        return Ok(None);
    };
    let Some(bot) = tx.bots(cid)?.into_iter().find(|b| b.cursor < ch.last_seq) else {
        return Ok(None);
    };
    let mut msgs = tx.messages_after(cid, bot.cursor, SCAN_FIRST)?;
    let mut skip_to = bot.cursor;
    let mut read_rest = false;
    let mut i = 0;
    loop {
        if i == msgs.len() {
            if read_rest || msgs.len() < SCAN_FIRST {
                break;
            }
            // The first messages trigger nothing: the rest of the scan.
            read_rest = true;
            msgs.extend(tx.messages_after(cid, skip_to, SCAN - SCAN_FIRST)?);
            if i == msgs.len() {
                break;
            }
        }
        let m = &msgs[i];
        i += 1;
        // Hooks the bot class does not define are not worth a sandbox start.
        if let Some(hook) = hook_for(m, &bot.bot_id).filter(|h| bot.manifest.defines(h.method())) {
            let runtime = tx
                .bot_runtime(cid, &bot.bot_id)?
                .ok_or_else(|| StoreError::Corrupt {
                    what: "bot",
                    detail: format!("{} vanished from {cid}", bot.bot_id),
                })?;
            // The seats as of the trigger: the slots now, with the seat
            // events committed since undone (all read in this snapshot).
            let events: Vec<Event> = if m.seq < ch.last_seq {
                tx.system_bodies_after(cid, m.seq)?
                    .iter()
                    .filter_map(|body| serde_json::from_str(body).ok())
                    .collect()
            } else {
                Vec::new()
            };
            let players = context::players_at(&tx.slots(cid)?, events.iter());
            return Ok(Some(Work {
                bot_id: bot.bot_id.clone(),
                cursor: bot.cursor,
                next: Next::Hook(Box::new(HookWork {
                    trigger: m.seq,
                    trigger_ts: m.ts.clone(),
                    hook,
                    players,
                    bot,
                    runtime,
                })),
            }));
        }
        skip_to = m.seq;
    }
    Ok(Some(Work {
        bot_id: bot.bot_id,
        cursor: bot.cursor,
        next: Next::Skip(skip_to),
    }))
}

/// The hook a message triggers for a bot, if any.
pub(crate) fn hook_for(m: &StoredMessage, bot_id: &str) -> Option<Hook> {
    let reader = rules::SeatReader::unsealed(bot_id);
    match m.kind {
        MessageKind::User if rules::readable_by(m, &reader) => Some(Hook::OnMessage {
            message: serde_json::to_value(rules::message_view(m, &reader)).ok()?,
        }),
        MessageKind::System => match serde_json::from_str::<Event>(m.body.as_str()).ok()? {
            Event::BotAttach { bot_id: b, .. } if b == bot_id => Some(Hook::OnInit),
            Event::SeatFilled { slot } | Event::SeatMoved { slot } => {
                Some(Hook::OnJoin { player: slot })
            }
            _ => None,
        },
        _ => None,
    }
}

/// The canonical text of a state as stored.
fn state_of(stored: &str) -> Result<CanonicalJson, StoreError> {
    let state: Value = serde_json::from_str(stored).map_err(|e| StoreError::Corrupt {
        what: "bot state",
        detail: e.to_string(),
    })?;
    Ok(CanonicalJson::of(&state))
}

/// A hook that ran: where, from which cursor, for which message, and the
/// bot's state before it.
struct HookRan {
    channel_id: String,
    bot_id: String,
    /// The bot's cursor the hook was chosen from.
    cursor: Seq,
    /// The message that triggered the hook: the `cause` of what it writes.
    trigger: Seq,
    /// The bot's state before the hook, as stored.
    state_before: String,
    /// The secret salt of the bot's state hashes.
    state_salt: String,
}

/// Commits a hook's outcome with the cursor move: its posts and state, or
/// one `bot:error`. Every entry carries the trigger as its `cause`; the last
/// one the state hash after the hook (a `bot:state` entry when the hook
/// changed its state without posting). Nothing happens if the cursor moved
/// meanwhile (only this channel's drain task moves it; checked anyway).
fn commit_outcome(
    tx: &mut dyn Tx,
    quotas: &Quotas,
    ran: &HookRan,
    result: Result<(Vec<Post>, Value), HookError>,
) -> Result<(), StoreError> {
    let (cid, bid, trigger) = (ran.channel_id.as_str(), ran.bot_id.as_str(), ran.trigger);
    if cursor_of(tx, cid, bid)? != Some(ran.cursor) {
        return Ok(());
    }
    let Some(ch) = tx.channel(cid)? else {
        return Ok(());
    };
    let last_before = ch.last_seq;
    let mut last = last_before;
    // The bodies as they will be stored, measured against the channel's
    // quotas before anything is appended: the hook's posts commit whole or
    // not at all.
    let result = result.map(|(posts, state)| {
        let bodies: Vec<(CanonicalJson, Option<Vec<String>>)> = posts
            .into_iter()
            .map(|p| {
                let body = CanonicalJson::of(&BotPostBody {
                    kind: p.kind,
                    data: p.body,
                });
                (body, p.to)
            })
            .collect();
        (bodies, state)
    });
    let result = match result {
        Ok((bodies, state)) => {
            let bytes = bodies.iter().map(|(b, _)| b.len() as u64).sum();
            match quotas.charge_bot(tx, &ch, bodies.len() as u64, bytes)? {
                Ok(()) => Ok((bodies, state)),
                Err(reason) => Err(HookError::Limit { message: reason }),
            }
        }
        Err(e) => Err(e),
    };
    let mut append = |tx: &mut dyn Tx,
                      kind: MessageKind,
                      body: &CanonicalJson,
                      to: Option<&[String]>,
                      state_hash: Option<&str>|
     -> Result<(), StoreError> {
        last = tx
            .append(
                cid,
                NewMessage {
                    to,
                    cause: Some(trigger),
                    state_hash,
                    ..NewMessage::new(bid, kind, body)
                },
            )?
            .seq;
        Ok(())
    };
    match result {
        Ok((bodies, state)) => {
            let state = CanonicalJson::of(&state);
            let hash = transcript::state_hash(&ran.state_salt, &state);
            let n = bodies.len();
            for (i, (body, to)) in bodies.into_iter().enumerate() {
                let last_post = i + 1 == n;
                append(
                    tx,
                    MessageKind::Bot,
                    &body,
                    to.as_deref(),
                    last_post.then_some(hash.as_str()),
                )?;
            }
            if n == 0 && state != state_of(&ran.state_before)? {
                let event = Event::BotState {
                    bot_id: bid.to_string(),
                };
                append(
                    tx,
                    event.kind(),
                    &CanonicalJson::of(&event),
                    None,
                    Some(&hash),
                )?;
            }
            tx.set_bot_state(cid, bid, &state)?;
        }
        Err(e) => {
            // The short reason only: a traceback may quote the bot's state.
            tracing::warn!(channel = %cid, bot = %bid, reason = %e.short_reason(), "bot hook failed");
            let event = Event::BotError {
                bot_id: bid.to_string(),
                seq: trigger,
                reason: e.short_reason(),
            };
            append(tx, event.kind(), &CanonicalJson::of(&event), None, None)?;
        }
    }
    // If nothing else arrived since the trigger, the hook's own entries need
    // no second visit: move the cursor past them.
    let new_cursor = if last_before == trigger {
        last
    } else {
        trigger
    };
    tx.set_bot_cursor(cid, bid, new_cursor)
}
