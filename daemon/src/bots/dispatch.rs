//! Hook dispatch: runs each bot's hooks in transcript order.
//!
//! The transcript drives everything. Each bot has a durable `cursor`: it has
//! handled every message up to that `seq`. The next message past the cursor
//! decides the hook — its own `bot:attach` → `on_init`; `seat:filled` or
//! `seat:moved` → `on_join`; a user message the bot may read → `on_message`;
//! anything else (bot posts included, so bots never trigger bots) is passed
//! over. A hook's posts, its new state and the cursor move commit in one
//! transaction; a failed hook commits only one `control` `bot:error` message
//! and the cursor move. So a crash between a message and its hook loses
//! nothing (the hook runs after restart) and repeats nothing.
//!
//! One task per channel drains that channel's backlog, so a channel's hooks
//! run one at a time in order; a semaphore bounds hooks across channels. Tools
//! never wait for hooks, so a slow or hostile bot cannot delay another
//! channel's tools, only its own channel's bot replies.

use super::Bots;
use crate::channels::{self, Channels, StoredMessage, ToolError, append};
use crate::transcript;
use hook_protocol::{BotSpec, Hook, HookContext, HookError, HookOutcome, Player, Post};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

/// Messages scanned per read while looking for the next hook.
const SCAN: usize = 64;

/// Handle to the dispatcher. Cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    channels: Channels,
    bots: Bots,
    permits: Semaphore,
    /// Uid offsets not in use by a running hook (one per permit).
    free_slots: Mutex<Vec<u32>>,
    /// Channels that have at least one bot.
    with_bots: Mutex<HashSet<String>>,
    /// Channels whose drain task is running, and whether it was poked since.
    running: Mutex<std::collections::HashMap<String, bool>>,
    hooks_run: std::sync::atomic::AtomicU64,
}

/// One bot's next piece of work.
struct Work {
    bot_id: String,
    /// The message that triggers the hook, or only a cursor move.
    trigger: Option<(i64, Hook)>,
    /// The cursor to set when there is no hook.
    skip_to: i64,
    cursor: i64,
}

impl Dispatcher {
    /// Creates the dispatcher and schedules every channel with a backlog.
    pub async fn start(channels: Channels, bots: Bots) -> Result<Dispatcher, ToolError> {
        let ids: Vec<String> = channels
            .store
            .read(|c: &Connection| {
                let mut st = c.prepare("SELECT DISTINCT channel_id FROM bots")?;
                let v = st
                    .query_map([], |r| r.get(0))?
                    .collect::<Result<Vec<String>, _>>()?;
                Ok::<_, ToolError>(v)
            })
            .await?;
        let d = Dispatcher {
            inner: Arc::new(Inner {
                permits: Semaphore::new(bots.cfg.max_parallel_hooks),
                free_slots: Mutex::new((0..bots.cfg.max_parallel_hooks as u32).rev().collect()),
                channels,
                bots,
                with_bots: Mutex::new(ids.iter().cloned().collect()),
                running: Mutex::new(Default::default()),
                hooks_run: Default::default(),
            }),
        };
        for id in ids {
            d.poke(&id);
        }
        Ok(d)
    }

    /// Hooks run since start.
    pub fn hooks_run(&self) -> u64 {
        self.inner
            .hooks_run
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Notes that `channel_id` has a bot (after an attach).
    pub fn register(&self, channel_id: &str) {
        lock(&self.inner.with_bots).insert(channel_id.to_string());
    }

    /// Schedules a channel: starts its drain task, or tells the running one to
    /// look again.
    pub fn poke(&self, channel_id: &str) {
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
        tokio::spawn(async move { me.drain(cid).await });
    }

    async fn drain(self, cid: String) {
        loop {
            match self.step(&cid).await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => tracing::error!(channel = %cid, error = %e, "bot dispatch failed"),
            }
            let mut running = lock(&self.inner.running);
            match running.get_mut(&cid) {
                Some(again) if *again => *again = false,
                _ => {
                    running.remove(&cid);
                    return;
                }
            }
        }
    }

    /// Does one unit of work for the channel; `Ok(true)` if there may be more.
    async fn step(&self, cid: &str) -> Result<bool, ToolError> {
        let cid_owned = cid.to_string();
        let work = self
            .inner
            .channels
            .store
            .read(move |c: &Connection| next_work(c, &cid_owned))
            .await?;
        let Some(work) = work else { return Ok(false) };
        let Some((seq, hook)) = work.trigger else {
            let (cid2, bid, from, to) = (
                cid.to_string(),
                work.bot_id.clone(),
                work.cursor,
                work.skip_to,
            );
            self.inner
                .channels
                .store
                .write(move |c: &Connection| move_cursor(c, &cid2, &bid, from, to))
                .await?;
            return Ok(true);
        };
        let (bot, context, state, network) = {
            let (cid2, bid) = (cid.to_string(), work.bot_id.clone());
            self.inner
                .channels
                .store
                .read(move |c: &Connection| load_bot(c, &cid2, &bid))
                .await?
        };
        let mut job = self.inner.bots.job(bot, hook, context, state, network);
        let outcome = {
            let _permit = self
                .inner
                .permits
                .acquire()
                .await
                .map_err(ToolError::internal)?;
            // Each running hook gets a uid of its own (root mode): RLIMIT_NPROC
            // counts per uid, so hooks sharing one would share one thread budget.
            let slot = lock(&self.inner.free_slots).pop().unwrap_or(0);
            job.runtime.sandbox_uid = self.inner.bots.cfg.sandbox_uid.saturating_add(slot);
            let outcome = super::runner::run_job(&self.inner.bots.cfg.runner, &job).await;
            lock(&self.inner.free_slots).push(slot);
            outcome
        };
        self.inner
            .hooks_run
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let limits = job.limits.clone();
        let (cid2, bid, cursor) = (cid.to_string(), work.bot_id.clone(), work.cursor);
        let last = self
            .inner
            .channels
            .store
            .write(move |c: &Connection| {
                commit_outcome(c, &cid2, &bid, cursor, seq, outcome, &limits)
            })
            .await?;
        if let Some(last) = last {
            self.inner.channels.watch.notify(cid, last);
        }
        Ok(true)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Finds the first bot of the channel with unhandled messages and what to do.
fn next_work(c: &Connection, cid: &str) -> Result<Option<Work>, ToolError> {
    let mut st = c.prepare_cached(
        "SELECT b.bot_id, b.cursor, b.manifest FROM bots b JOIN channels ch ON ch.id = b.channel_id
         WHERE b.channel_id = ?1 AND b.cursor < ch.last_seq ORDER BY b.created_at, b.bot_id",
    )?;
    let bots: Vec<(String, i64, String)> = st
        .query_map(params![cid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let Some((bot_id, cursor, manifest)) = bots.into_iter().next() else {
        return Ok(None);
    };
    // Hooks the bot class does not define are not worth a sandbox start.
    let defined: Vec<String> = serde_json::from_str::<Value>(&manifest)
        .ok()
        .and_then(|m| serde_json::from_value(m["hooks"].clone()).ok())
        .unwrap_or_default();
    let msgs = channels::messages_after(c, cid, cursor, SCAN)?;
    let mut skip_to = cursor;
    for m in &msgs {
        let hook = hook_for(m, &bot_id).filter(|h| defined.iter().any(|d| d == h.method()));
        if let Some(hook) = hook {
            return Ok(Some(Work {
                bot_id,
                trigger: Some((m.seq, hook)),
                skip_to,
                cursor,
            }));
        }
        skip_to = m.seq;
    }
    Ok(Some(Work {
        bot_id,
        trigger: None,
        skip_to,
        cursor,
    }))
}

/// The hook a message triggers for a bot, if any.
fn hook_for(m: &StoredMessage, bot_id: &str) -> Option<Hook> {
    match m.kind.as_str() {
        "user" if m.readable_by(bot_id) => Some(Hook::OnMessage {
            message: m.view_for(bot_id),
        }),
        "system" => match m.body["type"].as_str()? {
            "bot:attach" if m.body["bot_id"].as_str() == Some(bot_id) => Some(Hook::OnInit),
            "seat:filled" | "seat:moved" => Some(Hook::OnJoin {
                player: m.body["slot"].as_str()?.to_string(),
            }),
            _ => None,
        },
        _ => None,
    }
}

fn load_bot(
    c: &Connection,
    cid: &str,
    bid: &str,
) -> Result<(BotSpec, HookContext, Value, bool), ToolError> {
    let (name, source, params_s, state_s, network): (String, String, String, String, i64) = c.query_row(
        "SELECT name, source, params, state, network FROM bots WHERE channel_id = ?1 AND bot_id = ?2",
        params![cid, bid],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
    )?;
    let mut st = c.prepare_cached(
        "SELECT label, principal_id IS NOT NULL FROM slots WHERE channel_id = ?1 AND kind = 'invite' ORDER BY position",
    )?;
    let players: Vec<Player> = st
        .query_map(params![cid], |r| {
            let label: String = r.get(0)?;
            Ok(Player {
                slot: format!("invite:{label}"),
                label,
                filled: r.get(1)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok((
        BotSpec {
            name,
            source,
            params: serde_json::from_str(&params_s).unwrap_or(json!({})),
        },
        HookContext {
            channel_id: cid.to_string(),
            bot_id: bid.to_string(),
            players,
        },
        serde_json::from_str(&state_s).unwrap_or(json!({})),
        network != 0,
    ))
}

fn move_cursor(c: &Connection, cid: &str, bid: &str, from: i64, to: i64) -> Result<(), ToolError> {
    c.execute(
        "UPDATE bots SET cursor = ?1 WHERE channel_id = ?2 AND bot_id = ?3 AND cursor = ?4",
        params![to, cid, bid, from],
    )?;
    Ok(())
}

/// Checks a hook's posts and state against the limits and the channel's slots.
fn validate(
    c: &Connection,
    cid: &str,
    posts: &[Post],
    state: &Value,
    limits: &hook_protocol::Limits,
) -> Result<(), String> {
    if posts.len() > limits.max_posts {
        return Err(format!(
            "the hook made {} posts; the limit is {}",
            posts.len(),
            limits.max_posts
        ));
    }
    if !state.is_object() {
        return Err("the state must be a JSON object".into());
    }
    let size = transcript::canonical(state).len();
    if size > limits.max_state_bytes {
        return Err(format!(
            "state is {size} bytes; the limit is {}",
            limits.max_state_bytes
        ));
    }
    let labels: Vec<String> = {
        let mut st = c
            .prepare_cached("SELECT label FROM slots WHERE channel_id = ?1")
            .map_err(|e| e.to_string())?;
        st.query_map(params![cid], |r| r.get(0))
            .and_then(|r| r.collect::<Result<_, _>>())
            .map_err(|e| e.to_string())?
    };
    for p in posts {
        if p.kind.is_empty() || p.kind.len() > 64 {
            return Err("a post's kind must be 1-64 characters".into());
        }
        let size = transcript::canonical(&p.body).len();
        if size > limits.max_post_bytes {
            return Err(format!(
                "a post is {size} bytes; the limit is {}",
                limits.max_post_bytes
            ));
        }
        if let Some(to) = &p.to {
            if to.is_empty() {
                return Err("a private post needs at least one recipient".into());
            }
            if let Some(bad) = to.iter().find(|t| !labels.contains(t)) {
                return Err(format!(
                    "a post is addressed to {bad:?}, which is not a slot of this channel"
                ));
            }
        }
    }
    Ok(())
}

/// Commits a hook's outcome with the cursor move. Returns the new last seq.
fn commit_outcome(
    c: &Connection,
    cid: &str,
    bid: &str,
    cursor: i64,
    trigger: i64,
    outcome: HookOutcome,
    limits: &hook_protocol::Limits,
) -> Result<Option<i64>, ToolError> {
    // Only this channel's drain task moves the cursor; check anyway.
    let now: Option<i64> = c
        .query_row(
            "SELECT cursor FROM bots WHERE channel_id = ?1 AND bot_id = ?2",
            params![cid, bid],
            |r| r.get(0),
        )
        .optional()?;
    if now != Some(cursor) {
        return Ok(None);
    }
    let last_before: i64 = c.query_row(
        "SELECT last_seq FROM channels WHERE id = ?1",
        params![cid],
        |r| r.get(0),
    )?;
    let result = match outcome {
        HookOutcome::Ok { posts, state, .. } => match validate(c, cid, &posts, &state, limits) {
            Ok(()) => Ok((posts, state)),
            Err(reason) => Err(HookError::Limit { message: reason }),
        },
        HookOutcome::Error { error } => Err(error),
    };
    let mut last = last_before;
    match result {
        Ok((posts, state)) => {
            for p in &posts {
                last = append(
                    c,
                    cid,
                    bid,
                    "bot",
                    &json!({"type": p.kind, "data": p.body}),
                    p.to.as_deref(),
                )?;
            }
            c.execute(
                "UPDATE bots SET state = ?1 WHERE channel_id = ?2 AND bot_id = ?3",
                params![transcript::canonical(&state), cid, bid],
            )?;
        }
        Err(e) => {
            tracing::warn!(channel = %cid, bot = %bid, error = ?e, "bot hook failed");
            last = append(
                c,
                cid,
                bid,
                "control",
                &json!({"type": "bot:error", "bot_id": bid, "seq": trigger, "reason": e.short_reason()}),
                None,
            )?;
        }
    }
    // If nothing else arrived since the trigger, the hook's own posts need no
    // second visit: move the cursor past them.
    let new_cursor = if last_before == trigger {
        last
    } else {
        trigger
    };
    c.execute(
        "UPDATE bots SET cursor = ?1 WHERE channel_id = ?2 AND bot_id = ?3",
        params![new_cursor, cid, bid],
    )?;
    Ok((last > last_before).then_some(last))
}
