//! `mcp-multiplayer replay`: re-runs every hook of every bot of a closed
//! channel, in the real sandbox, from the transcript alone, and checks that
//! each hook produces exactly the entries the chain records.
//!
//! A hook's inputs are all in the transcript or fixed by it before play
//! (`crate::bots::dispatch` builds them that way): the bot's exact source
//! (its `code_hash` is in `bot:attach`), its params (`params_hash`), the
//! trigger as the bot may see it, `ctx.players` as of the trigger (folded
//! from the seat events, `crate::bots::context`), the state the previous
//! hook left (threaded here, checked against every `state_hash`), and the
//! randomness and clock (`entropy` from the seed the `bot:reveal` entry
//! publishes and the trigger's seq, `now` the trigger's `ts`). So a replay
//! needs nothing from the daemon: the input is a transcript document
//! ([`Transcript`]), read from a JSON file or from the daemon's SQLite file.
//!
//! What a replay proves and what it cannot is in `docs/replay.md`. Per hook
//! the report says `matched`, `mismatch` (the first entry that differs, with
//! its seq) or `not replayable` (why: no seed, the seed not revealed yet, a
//! network bot, a private trigger the transcript does not hold, a state that
//! diverged earlier). A reveal that does not open its commitment, a source
//! or params that do not hash to what `bot:attach` announced, or a chain that
//! does not verify is a failure too, named by its seq.

use crate::bots::context::Seats;
use crate::bots::dispatch::hook_for;
use crate::bots::{Bots, seed};
use crate::model::{BotPostBody, Event, MessageKind, Seq};
use crate::quota::ChannelRefusal;
use crate::store::{ReadTx, Store, StoredMessage};
use crate::transcript::{self, CanonicalJson, canonical, sha256_tagged};
use hook_protocol::{BotSpec, Entropy, Hook, HookContext, HookError, HookOutcome, Origin};
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// What a replay reads: a channel's chain entries as one reader received
/// them (the shape `sync_messages` returns: `seq`, `sender`, `kind`, `ts`,
/// `hash`, `body` or `body_hash`, `to`, `body_salt`, `cause`,
/// `state_hash`), and each bot's exact source and params.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transcript {
    pub channel_id: String,
    pub messages: Vec<Value>,
    pub bots: Vec<BotSource>,
}

/// A bot's exact source and the params it was attached with (what
/// `get_bot_code` returns).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BotSource {
    pub bot_id: String,
    pub source: String,
    pub params: Map<String, Value>,
}

/// Why a transcript document cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(String);

fn bad(s: impl Into<String>) -> BadInput {
    BadInput(s.into())
}

impl Transcript {
    /// Reads a transcript document: `{"channel_id", "messages": [...],
    /// "bots": [{"bot_id", "source", "params"}]}`, or an export
    /// (`docs/transcripts.md`: `channel.channel_id`, `entries`, `bots` as
    /// `get_bot_code` returns them). Members it does not use are ignored.
    ///
    /// # Errors
    /// A member missing or of the wrong type, said with what to give.
    pub fn from_json(v: &Value) -> Result<Transcript, BadInput> {
        // An export document (docs/transcripts.md) names its format.
        if let Some(f) = v.get("format") {
            if f != "mcp-multiplayer-transcript" {
                return Err(bad(format!(
                    "unknown document format {f}; expected an export (\"mcp-multiplayer-transcript\") or a replay document"
                )));
            }
            if v["version"] != 1 {
                return Err(bad(format!(
                    "export version {} is not one this replayer reads (1)",
                    v["version"]
                )));
            }
        }
        if v.get("page").is_some() {
            return Err(bad(
                "this is one page of an export: join the pages' entries (or export over HTTP, which is never paged)",
            ));
        }
        let channel_id = v["channel_id"]
            .as_str()
            .or_else(|| v["channel"]["channel_id"].as_str())
            .ok_or_else(|| bad("the document has no channel_id (a string)"))?
            .to_string();
        let messages = v
            .get("messages")
            .or_else(|| v.get("entries"))
            .and_then(Value::as_array)
            .ok_or_else(|| bad("the document has no messages (an array of chain entries)"))?
            .clone();
        let mut bots = Vec::new();
        for (i, b) in v["bots"].as_array().into_iter().flatten().enumerate() {
            let bot_id = b["bot_id"]
                .as_str()
                .ok_or_else(|| bad(format!("bots[{i}] has no bot_id")))?;
            let source = b["source"]
                .as_str()
                .or_else(|| b["code"]["source"].as_str())
                .ok_or_else(|| bad(format!("bots[{i}] ({bot_id}) has no source")))?;
            let params = match b.get("params") {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(m)) => m.clone(),
                Some(_) => {
                    return Err(bad(format!(
                        "bots[{i}] ({bot_id}): params is not an object"
                    )));
                }
            };
            bots.push(BotSource {
                bot_id: bot_id.to_string(),
                source: source.to_string(),
                params,
            });
        }
        Ok(Transcript {
            channel_id,
            messages,
            bots,
        })
    }

    /// Reads channel `channel_id` from the daemon's SQLite file: every entry
    /// with its body (the view of someone who may read everything), and
    /// every bot's source and params. Seeds are taken from the transcript's
    /// `bot:reveal` entries only, never from the bots' rows.
    ///
    /// # Errors
    /// The database cannot be opened, or has no such channel.
    pub async fn from_db(path: &Path, channel_id: &str) -> Result<Transcript, BadInput> {
        if !path.is_file() {
            return Err(bad(format!("no database file at {}", path.display())));
        }
        let store =
            Store::open(path).map_err(|e| bad(format!("cannot open {}: {e}", path.display())))?;
        let doc = Transcript::from_store(&store, channel_id).await;
        store.close();
        doc.map_err(|e| bad(format!("{e} in {}", path.display())))
    }

    /// Reads channel `channel_id` from an open store (either backend), as
    /// [`Transcript::from_db`] does from a SQLite file.
    ///
    /// # Errors
    /// The store cannot be read, or has no such channel.
    pub async fn from_store(store: &Store, channel_id: &str) -> Result<Transcript, BadInput> {
        let cid = channel_id.to_string();
        let read = store
            .read(move |tx: &dyn ReadTx| {
                if tx.channel(&cid)?.is_none() {
                    return Ok(None);
                }
                let messages = tx.messages_after(&cid, 0, usize::MAX)?;
                let mut bots = Vec::new();
                for b in tx.bots(&cid)? {
                    if let Some(rt) = tx.bot_runtime(&cid, &b.bot_id)? {
                        bots.push(BotSource {
                            bot_id: b.bot_id,
                            source: rt.source,
                            params: rt.params,
                        });
                    }
                }
                Ok::<_, crate::store::StoreError>(Some((messages, bots)))
            })
            .await;
        let Some((messages, bots)) = read.map_err(|e| bad(format!("cannot read: {e}")))? else {
            return Err(bad(format!("no channel {channel_id:?}")));
        };
        Ok(Transcript {
            channel_id: channel_id.to_string(),
            messages: messages
                .iter()
                .map(|m| {
                    // Its sender may read every message, body and salt.
                    use crate::channels::rules::{SeatReader, message_view};
                    serde_json::to_value(message_view(m, &SeatReader::unsealed(&m.sender)))
                        .unwrap_or(Value::Null)
                })
                .collect(),
            bots,
        })
    }
}

/// The outcome of one hook's replay.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// The replay wrote exactly the recorded entries; `note` says what could
    /// only be compared in part (bodies a partial transcript does not hold).
    Matched {
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// The first entry that differs (or where one is missing or extra).
    Mismatch { seq: Seq, what: String },
    /// The hook could not be replayed, and why.
    NotReplayable { why: String },
}

/// One hook: which bot, which trigger, what ran, the verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HookReport {
    pub bot_id: String,
    pub trigger: Seq,
    /// `on_init`, `on_join alice`, `on_message`.
    pub hook: String,
    #[serde(flatten)]
    pub verdict: Verdict,
}

/// A failure that is not one hook's: a chain that does not verify, a reveal
/// that does not open its commitment, a source or params that are not the
/// announced ones, entries no hook accounts for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    pub seq: Seq,
    pub what: String,
}

/// The whole replay.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub channel_id: String,
    pub problems: Vec<Problem>,
    pub hooks: Vec<HookReport>,
    /// Hooks run in the sandbox and the time they took.
    pub hooks_run: usize,
    pub run_ms: u128,
    /// Of those, hooks forked from their bot's fork template (the rest ran
    /// in a pre-warmed or fresh sandbox).
    pub hooks_forked: usize,
}

impl Report {
    /// No mismatch and no problem (hooks that are not replayable say so but
    /// do not fail the replay).
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
            && !self
                .hooks
                .iter()
                .any(|h| matches!(h.verdict, Verdict::Mismatch { .. }))
    }

    fn count(&self, f: impl Fn(&Verdict) -> bool) -> usize {
        self.hooks.iter().filter(|h| f(&h.verdict)).count()
    }

    /// The report as text, one line per hook.
    pub fn text(&self) -> String {
        let mut t = format!("replay of channel {}\n", self.channel_id);
        for p in &self.problems {
            t.push_str(&format!("FAILED at seq {}: {}\n", p.seq, p.what));
        }
        for h in &self.hooks {
            let v = match &h.verdict {
                Verdict::Matched { note: None } => "matched".to_string(),
                Verdict::Matched { note: Some(n) } => format!("matched ({n})"),
                Verdict::Mismatch { seq, what } => format!("MISMATCH at seq {seq}: {what}"),
                Verdict::NotReplayable { why } => format!("not replayable: {why}"),
            };
            t.push_str(&format!(
                "  {} seq {} {}: {v}\n",
                h.bot_id, h.trigger, h.hook
            ));
        }
        let per_s = if self.run_ms > 0 {
            self.hooks_run as f64 * 1000.0 / self.run_ms as f64
        } else {
            0.0
        };
        let forked = if self.hooks_forked > 0 {
            format!(", {} forked from the bot's template", self.hooks_forked)
        } else {
            String::new()
        };
        t.push_str(&format!(
            "{} hooks: {} matched, {} mismatched, {} not replayable; {} run in the sandbox in {} ms ({per_s:.1} hooks/s{forked})\n{}\n",
            self.hooks.len(),
            self.count(|v| matches!(v, Verdict::Matched { .. })),
            self.count(|v| matches!(v, Verdict::Mismatch { .. })),
            self.count(|v| matches!(v, Verdict::NotReplayable { .. })),
            self.hooks_run,
            self.run_ms,
            if self.passed() { "REPLAY PASSED" } else { "REPLAY FAILED" }
        ));
        t
    }
}

/// One chain entry, read from a reader's view of it.
#[derive(Debug, Clone)]
struct Msg {
    seq: Seq,
    sender: String,
    kind: MessageKind,
    ts: String,
    /// Absent when the reader could not read a private message.
    body: Option<Value>,
    to: Option<Vec<String>>,
    cause: Option<Seq>,
    state_hash: Option<String>,
    /// The message as the daemon stores it, when the body is known.
    stored: Option<StoredMessage>,
}

impl Msg {
    fn of(cid: &str, v: &Value) -> Msg {
        let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
        let kind =
            MessageKind::parse(v["kind"].as_str().unwrap_or("")).unwrap_or(MessageKind::User);
        let to: Option<Vec<String>> = v
            .get("to")
            .and_then(|t| serde_json::from_value(t.clone()).ok());
        let body = v.get("body").cloned();
        let stored = body.as_ref().map(|b| StoredMessage {
            channel_id: cid.to_string(),
            seq: v["seq"].as_i64().unwrap_or(-1),
            sender: s("sender"),
            kind,
            body: CanonicalJson::of(b),
            to: to.clone(),
            body_hash: String::new(),
            body_salt: v["body_salt"].as_str().map(str::to_string),
            ts: s("ts"),
            hash: s("hash"),
            cause: v["cause"].as_i64(),
            state_hash: v["state_hash"].as_str().map(str::to_string),
        });
        Msg {
            seq: v["seq"].as_i64().unwrap_or(-1),
            sender: s("sender"),
            kind,
            ts: s("ts"),
            body,
            to,
            cause: v["cause"].as_i64(),
            state_hash: v["state_hash"].as_str().map(str::to_string),
            stored,
        }
    }

    fn event(&self) -> Option<Event> {
        if self.kind == MessageKind::User || self.kind == MessageKind::Bot {
            return None;
        }
        serde_json::from_value(self.body.clone()?).ok()
    }
}

/// What the chain says of one bot.
struct BotFacts {
    bot_id: String,
    attach_seq: Seq,
    code_hash: String,
    manifest_hash: String,
    network: bool,
    seed_commitment: Option<String>,
    params_hash: Option<String>,
    hooks: Vec<String>,
    /// The `bot:manifest` entry's seq and the hash of the manifest it holds.
    manifest: Option<(Seq, String)>,
    /// The `bot:reveal`: its seq, seed and state salt.
    reveal: Option<(Seq, String, String)>,
}

fn bots_of(msgs: &[Msg]) -> Vec<BotFacts> {
    let mut out: Vec<BotFacts> = Vec::new();
    for m in msgs {
        match m.event() {
            Some(Event::BotAttach {
                bot_id,
                code_hash,
                manifest_hash,
                network,
                seed_commitment,
                params_hash,
                ..
            }) if m.sender == "system" => out.push(BotFacts {
                bot_id,
                attach_seq: m.seq,
                code_hash,
                manifest_hash,
                network,
                seed_commitment,
                params_hash,
                hooks: Vec::new(),
                manifest: None,
                reveal: None,
            }),
            Some(Event::BotManifest { bot_id, manifest }) if m.sender == "system" => {
                if let Some(b) = out.iter_mut().rev().find(|b| b.bot_id == bot_id) {
                    let hash = sha256_tagged(canonical(&manifest).as_bytes());
                    b.manifest.get_or_insert((m.seq, hash));
                    b.hooks = manifest.hooks;
                }
            }
            Some(Event::BotReveal {
                bot_id,
                seed,
                state_salt,
            }) if m.sender == "system" => {
                if let Some(b) = out.iter_mut().rev().find(|b| b.bot_id == bot_id) {
                    b.reveal.get_or_insert((m.seq, seed, state_salt));
                }
            }
            _ => {}
        }
    }
    out
}

/// Re-runs every hook of every bot of `t` with `bots`' runner (the real
/// sandbox, configured as `bot run` is) and checks each against the chain.
pub async fn replay(t: &Transcript, bots: &Bots) -> Report {
    let mut report = Report {
        channel_id: t.channel_id.clone(),
        problems: Vec::new(),
        hooks: Vec::new(),
        hooks_run: 0,
        run_ms: 0,
        hooks_forked: 0,
    };
    if let Err(b) = transcript::verify_chain(&t.channel_id, &t.messages) {
        report.problems.push(Problem {
            seq: b.seq,
            what: format!("the chain does not verify: {}", b.reason),
        });
        return report;
    }
    let msgs: Vec<Msg> = t
        .messages
        .iter()
        .map(|v| Msg::of(&t.channel_id, v))
        .collect();
    let mut ran = Duration::ZERO;
    for facts in bots_of(&msgs) {
        let source = t.bots.iter().find(|b| b.bot_id == facts.bot_id);
        let mut r = BotReplay::new(&facts, source, &msgs, &mut report.problems);
        r.run(
            &msgs,
            bots,
            &mut report.hooks,
            &mut report.hooks_run,
            &mut ran,
        )
        .await;
        report.hooks_forked += r.forked;
    }
    report.run_ms = ran.as_millis();
    report
}

/// Replays one bot's hooks in transcript order.
struct BotReplay<'a> {
    facts: &'a BotFacts,
    source: Option<&'a BotSource>,
    /// Why none of this bot's hooks can run, if so.
    blocked: Option<String>,
    seed: Option<Entropy>,
    /// The state before the next hook, while it is known.
    state: Result<Value, String>,
    /// The bot's entries by cause, consumed as hooks account for them.
    entries: BTreeMap<Seq, Vec<&'a Msg>>,
    /// Hooks forked from the bot's template.
    forked: usize,
}

impl<'a> BotReplay<'a> {
    fn new(
        facts: &'a BotFacts,
        source: Option<&'a BotSource>,
        msgs: &'a [Msg],
        problems: &mut Vec<Problem>,
    ) -> BotReplay<'a> {
        let bid = &facts.bot_id;
        let mut entries: BTreeMap<Seq, Vec<&Msg>> = BTreeMap::new();
        for m in msgs
            .iter()
            .filter(|m| &m.sender == bid && m.seq > facts.attach_seq)
        {
            if let Some(c) = m.cause {
                entries.entry(c).or_default().push(m);
            }
        }
        let mut r = BotReplay {
            facts,
            source,
            blocked: None,
            seed: None,
            state: Ok(json!({})),
            entries,
            forked: 0,
        };
        let at = facts.attach_seq;
        let Some(src) = source else {
            r.blocked = Some(format!("the transcript holds no source for {bid}"));
            return r;
        };
        if sha256_tagged(src.source.as_bytes()) != facts.code_hash {
            problems.push(Problem {
                seq: at,
                what: format!(
                    "the source given for {bid} does not hash to the code_hash its bot:attach announced"
                ),
            });
            r.blocked = Some("its source is not the announced one".into());
            return r;
        }
        // Which hooks run comes from the manifest the chain announced.
        match &facts.manifest {
            Some((_, hash)) if *hash == facts.manifest_hash => {}
            other => {
                problems.push(Problem {
                    seq: other.as_ref().map_or(at, |(seq, _)| *seq),
                    what: format!(
                        "{bid}'s bot:manifest is missing or does not hash to the manifest_hash its bot:attach announced"
                    ),
                });
                r.blocked = Some("its manifest is not the announced one".into());
                return r;
            }
        }
        let Some(commitment) = &facts.seed_commitment else {
            r.blocked = Some("no seed (the bot was attached before hooks were seeded)".into());
            return r;
        };
        if facts.params_hash.as_deref() != Some(seed::params_hash(&src.params).as_str()) {
            problems.push(Problem {
                seq: at,
                what: format!(
                    "the params given for {bid} do not hash to the params_hash its bot:attach announced"
                ),
            });
            r.blocked = Some("its params are not the announced ones".into());
            return r;
        }
        if facts.network {
            r.blocked =
                Some("network (what a hook read from the network is not in the transcript)".into());
            return r;
        }
        let Some((reveal_seq, seed_hex, salt)) = &facts.reveal else {
            r.blocked =
                Some("the seed is not revealed yet (it is, when the channel closes)".into());
            return r;
        };
        match seed::check_reveal(commitment, seed_hex, salt) {
            Ok(s) => r.seed = Some(s),
            Err(e) => {
                problems.push(Problem {
                    seq: *reveal_seq,
                    what: format!(
                        "{bid}'s bot:reveal is wrong: {} (committed in its bot:attach at seq {at})",
                        e.0
                    ),
                });
                r.blocked = Some(format!("its reveal at seq {reveal_seq} is wrong"));
            }
        }
        r
    }

    async fn run(
        &mut self,
        msgs: &'a [Msg],
        bots: &Bots,
        out: &mut Vec<HookReport>,
        hooks_run: &mut usize,
        ran: &mut Duration,
    ) {
        let bid = self.facts.bot_id.clone();
        let mut seats = Seats::default();
        for m in msgs {
            if let Some(e) = m.event() {
                match &e {
                    Event::ChannelCreated { slots, .. } => seats = Seats::created(slots),
                    other => seats.apply(other),
                }
            }
            if m.seq < self.facts.attach_seq {
                continue;
            }
            let Some((hook, label)) = self.hook_of(m) else {
                continue;
            };
            let verdict = match (&self.blocked, &self.state) {
                (Some(why), _) => Verdict::NotReplayable { why: why.clone() },
                (None, Err(why)) => Verdict::NotReplayable { why: why.clone() },
                (None, Ok(_)) => match hook {
                    Err(why) => {
                        self.state = Err(format!(
                            "the state is unknown after seq {}, whose hook could not run",
                            m.seq
                        ));
                        Verdict::NotReplayable { why }
                    }
                    Ok(hook) => {
                        let started = Instant::now();
                        let v = self.run_hook(m, hook, seats.players(), bots).await;
                        *ran += started.elapsed();
                        *hooks_run += 1;
                        v
                    }
                },
            };
            out.push(HookReport {
                bot_id: bid.clone(),
                trigger: m.seq,
                hook: label,
                verdict,
            });
        }
        // Entries with a cause no hook of the bot accounts for.
        if self.blocked.is_none()
            && self.state.is_ok()
            && let Some((cause, es)) = self.entries.iter().find(|(_, es)| !es.is_empty())
        {
            out.push(HookReport {
                bot_id: bid,
                trigger: *cause,
                hook: "(none)".into(),
                verdict: Verdict::Mismatch {
                    seq: es[0].seq,
                    what: format!("an entry caused by seq {cause}, which runs no hook of this bot"),
                },
            });
        }
    }

    /// The hook `m` runs for this bot (as the dispatcher decides), with a
    /// label; `Err` when it would run one but the transcript does not hold
    /// the trigger's body.
    fn hook_of(&self, m: &Msg) -> Option<(Result<Hook, String>, String)> {
        let bid = &self.facts.bot_id;
        let Some(stored) = &m.stored else {
            // A private message this transcript's reader could not read: a
            // hook of this bot if the bot was among its readers.
            let to_bot = m.kind == MessageKind::User
                && m.to.as_ref().is_some_and(|t| t.iter().any(|x| x == bid));
            return (to_bot && self.facts.hooks.iter().any(|h| h == "on_message")).then(|| {
                (
                    Err(format!(
                        "its trigger (seq {}) is private to the bot and this transcript does not hold its body",
                        m.seq
                    )),
                    "on_message".to_string(),
                )
            });
        };
        let hook =
            hook_for(stored, bid).filter(|h| self.facts.hooks.iter().any(|d| d == h.method()))?;
        let label = match &hook {
            Hook::OnJoin { player } => format!("on_join {player}"),
            h => h.method().to_string(),
        };
        Some((Ok(hook), label))
    }

    async fn run_hook(
        &mut self,
        m: &Msg,
        hook: Hook,
        players: Vec<hook_protocol::Player>,
        bots: &Bots,
    ) -> Verdict {
        let (Some(src), Some(seed), Ok(state)) = (self.source, &self.seed, &self.state) else {
            return Verdict::NotReplayable {
                why: "internal: nothing to run".into(),
            };
        };
        let before = state.clone();
        let mut job = bots.job(
            BotSpec {
                name: String::new(),
                source: src.source.clone(),
                params: Value::Object(src.params.clone()),
                compiled: None,
            },
            hook,
            HookContext {
                channel_id: m
                    .stored
                    .as_ref()
                    .map_or(String::new(), |s| s.channel_id.clone()),
                bot_id: self.facts.bot_id.clone(),
                players,
            },
            before.clone(),
            false,
        );
        job.entropy = Some(seed::hook_entropy(seed, m.seq));
        job.hash_seed = Some(seed::hash_seed(seed));
        job.now = m.ts.parse().ok();
        // As the dispatcher runs it: a seeded bot's hook forks from the
        // bot's template when the runner keeps templates (`[bots]
        // fork_templates`), with the template's uid; else it runs in a
        // pre-warmed or fresh sandbox.
        let templated = bots.runner.reserve_uid(&job);
        if let Some(uid) = templated {
            job.runtime.sandbox_uid = uid;
        }
        let outcome = bots.runner.run(&job).await;
        if templated.is_some() && bots.runner.release_uid(&job) {
            self.forked += 1;
        }
        let outcome = job
            .limits
            .enforce(outcome, &job.hook, &job.context.players, Origin::Runner);
        let recorded = self.entries.remove(&m.seq).unwrap_or_default();
        // Hooks run in transcript order: with nothing from this hook and no
        // entry of the bot caused later, the hook may simply not have run
        // yet when the transcript was taken (its output would follow).
        let pending = recorded.is_empty() && self.entries.range(m.seq + 1..).next().is_none();
        let salt_seed = seed.clone();
        match outcome {
            HookOutcome::Ok { posts, state, .. } => {
                let hash = seed::state_hash_under(&salt_seed, &state);
                let mut expected: Vec<Expected> = posts
                    .into_iter()
                    .map(|p| Expected {
                        kind: MessageKind::Bot,
                        body: serde_json::to_value(BotPostBody {
                            kind: p.kind,
                            data: p.body,
                        })
                        .unwrap_or(Value::Null),
                        to: p.to,
                        state_hash: None,
                    })
                    .collect();
                if expected.is_empty() && canonical(&state) != canonical(&before) {
                    expected.push(Expected {
                        kind: MessageKind::Control,
                        body: serde_json::to_value(Event::BotState {
                            bot_id: self.facts.bot_id.clone(),
                        })
                        .unwrap_or(Value::Null),
                        to: None,
                        state_hash: None,
                    });
                }
                if let Some(last) = expected.last_mut() {
                    last.state_hash = Some(hash);
                }
                if pending && !expected.is_empty() {
                    return self.pending(m.seq);
                }
                // The daemon refuses a hook's posts whole when they would
                // pass the channel's message or byte quota (its config, not
                // in the transcript): the hook then changed nothing. What
                // the refusal says of the transcript must hold.
                if let [e] = recorded.as_slice()
                    && let Some(reason) = e
                        .body
                        .as_ref()
                        .filter(|b| b["type"] == "bot:error")
                        .and_then(|b| b["reason"].as_str())
                    && let Some(refusal) = ChannelRefusal::parse(reason)
                {
                    let posts: Vec<&Expected> = expected
                        .iter()
                        .filter(|x| x.kind == MessageKind::Bot)
                        .collect();
                    let bytes: u64 = posts.iter().map(|x| canonical(&x.body).len() as u64).sum();
                    if let Some(what) =
                        refusal_contradicts(&refusal, e.seq, posts.len() as u64, bytes)
                    {
                        return Verdict::Mismatch {
                            seq: e.seq,
                            what: format!("the chain's quota refusal ({reason:?}) {what}"),
                        };
                    }
                    return Verdict::NotReplayable {
                        why: format!(
                            "the daemon refused this hook's posts for the channel's quota ({reason:?}), which the transcript does not show; the state stays as it was"
                        ),
                    };
                }
                let v = compare(m.seq, &expected, &recorded);
                // A later hook starts from this state only if the chain
                // committed to it.
                let state_ok = match &v {
                    Verdict::Mismatch { what, .. } => !what.contains("state_hash"),
                    _ => true,
                };
                self.state = if state_ok {
                    Ok(state)
                } else {
                    Err(format!("the state diverged at seq {}", m.seq))
                };
                v
            }
            HookOutcome::Error { error } => {
                let reason = error.short_reason();
                match error {
                    HookError::Timeout { .. }
                    | HookError::Confinement { .. }
                    | HookError::Internal { .. } => {
                        self.state = Err(format!(
                            "the state is unknown after seq {}, whose hook could not run",
                            m.seq
                        ));
                        return Verdict::NotReplayable {
                            why: format!("the replay's sandbox run failed: {reason}"),
                        };
                    }
                    _ => {}
                }
                // A failed hook changes nothing but one bot:error.
                match recorded.as_slice() {
                    [e] if e.kind == MessageKind::Control
                        && e.body.as_ref().is_some_and(|b| b["type"] == "bot:error") =>
                    {
                        let said = e
                            .body
                            .as_ref()
                            .map_or("", |b| b["reason"].as_str().unwrap_or(""));
                        Verdict::Matched {
                            note: (said != reason).then(|| {
                                format!(
                                    "failed in both; the chain says {said:?}, the replay {reason:?}"
                                )
                            }),
                        }
                    }
                    [] if pending => self.pending(m.seq),
                    [] => Verdict::Mismatch {
                        seq: m.seq,
                        what: format!(
                            "the replayed hook failed ({reason}) but the chain records nothing for it"
                        ),
                    },
                    [first, ..] => Verdict::Mismatch {
                        seq: first.seq,
                        what: format!(
                            "the replayed hook failed ({reason}) but the chain records its entries"
                        ),
                    },
                }
            }
        }
    }
}

impl BotReplay<'_> {
    /// A hook whose entries are not in the transcript, nor any later entry
    /// of the bot: it had not run when the transcript was taken.
    fn pending(&mut self, trigger: Seq) -> Verdict {
        self.state = Err(format!(
            "pending: the hook of seq {trigger} had not written its entries yet"
        ));
        Verdict::NotReplayable {
            why: "pending: the transcript ends before this hook's entries (no later entry of the bot either); take it again once the bot has caught up".into(),
        }
    }
}

/// What in a quota refusal recorded at `seq` the transcript and the
/// replayed hook's `count` posts of `bytes` contradict, if anything: the
/// channel's message count before it (the refusal is appended in the
/// transaction that refused), the posts' size, and that they would indeed
/// have passed the limit it states. The limit itself and the channel's
/// byte count are the daemon's, and stay unchecked.
fn refusal_contradicts(
    refusal: &ChannelRefusal,
    seq: Seq,
    count: u64,
    bytes: u64,
) -> Option<String> {
    match *refusal {
        ChannelRefusal::Messages { holds, limit } => {
            let before = (seq - 1).max(0) as u64;
            if holds != before {
                Some(format!(
                    "says the channel held {holds} messages; the chain has {before} before it"
                ))
            } else if holds.saturating_add(count) <= limit {
                Some(format!(
                    "states a limit of {limit} messages, which the replayed hook's {count} posts after {holds} would not pass"
                ))
            } else {
                None
            }
        }
        ChannelRefusal::Bytes {
            used,
            adding,
            limit,
        } => {
            if adding != bytes {
                Some(format!(
                    "says the hook's posts were {adding} bytes; the replayed hook's are {bytes}"
                ))
            } else if used.saturating_add(adding) <= limit {
                Some(format!(
                    "states a limit of {limit} bytes, which {adding} more after {used} would not pass"
                ))
            } else {
                None
            }
        }
    }
}

/// An entry the replayed hook would have written.
struct Expected {
    kind: MessageKind,
    body: Value,
    to: Option<Vec<String>>,
    state_hash: Option<String>,
}

fn short(v: &Value) -> String {
    let s = canonical(v);
    if s.chars().count() > 200 {
        format!("{}…", s.chars().take(200).collect::<String>())
    } else {
        s
    }
}

/// The first difference between what the replay wrote and what the chain
/// records for one hook.
fn compare(trigger: Seq, expected: &[Expected], recorded: &[&Msg]) -> Verdict {
    let mut redacted = 0;
    for (i, pair) in expected
        .iter()
        .map(Some)
        .chain(std::iter::repeat(None))
        .zip(recorded.iter().map(Some).chain(std::iter::repeat(None)))
        .take(expected.len().max(recorded.len()))
        .enumerate()
    {
        let n = i + 1;
        match pair {
            (Some(e), None) => {
                return Verdict::Mismatch {
                    seq: recorded.last().map_or(trigger, |r| r.seq),
                    what: format!(
                        "the replay wrote {} entries, the chain has {}: entry {n} ({}) is missing",
                        expected.len(),
                        recorded.len(),
                        short(&e.body)
                    ),
                };
            }
            (None, Some(r)) => {
                return Verdict::Mismatch {
                    seq: r.seq,
                    what: format!(
                        "the chain has {} entries for this hook, the replay wrote {}: this one is extra",
                        recorded.len(),
                        expected.len()
                    ),
                };
            }
            (Some(e), Some(r)) => {
                if r.kind != e.kind {
                    return Verdict::Mismatch {
                        seq: r.seq,
                        what: format!(
                            "entry {n} is of kind {} in the chain, {} in the replay ({})",
                            r.kind.as_str(),
                            e.kind.as_str(),
                            r.body.as_ref().map_or("private".into(), short)
                        ),
                    };
                }
                if r.to != e.to {
                    return Verdict::Mismatch {
                        seq: r.seq,
                        what: format!(
                            "entry {n} is addressed to {:?} in the chain, {:?} in the replay",
                            r.to, e.to
                        ),
                    };
                }
                match &r.body {
                    Some(b) if canonical(b) != canonical(&e.body) => {
                        return Verdict::Mismatch {
                            seq: r.seq,
                            what: format!(
                                "entry {n} differs: the chain has {}, the replay wrote {}",
                                short(b),
                                short(&e.body)
                            ),
                        };
                    }
                    Some(_) => {}
                    None => redacted += 1,
                }
                if r.state_hash != e.state_hash {
                    return Verdict::Mismatch {
                        seq: r.seq,
                        what: format!(
                            "entry {n}'s state_hash is {:?} in the chain, {:?} after the replay",
                            r.state_hash, e.state_hash
                        ),
                    };
                }
            }
            (None, None) => {}
        }
    }
    Verdict::Matched {
        note: (redacted > 0).then(|| {
            format!(
                "{redacted} private entr{} this transcript cannot read checked by recipients and state hash only",
                if redacted == 1 { "y" } else { "ies" }
            )
        }),
    }
}

#[cfg(test)]
mod tests;
