//! Seeds, reveals and replay on a real SQLite store, with a scripted hook
//! runner in place of the sandbox (the layer below the dispatcher and the
//! replayer; `tests/e2e/test_replay.py` runs the builtin bots in the real
//! one). The scripted bot is a function of its job only, as a bot in the
//! sandbox is once the job carries entropy and a clock: so every hook's
//! inputs must reach it identically in the daemon and in the replay.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::{Transcript, Verdict, replay};
use crate::bots::dispatch::Dispatcher;
use crate::bots::{Bots, seed};
use crate::channels::{Channels, NewChannelRequest, SlotSpec, SyncRequest, UpdateOp};
use crate::model::{MessageView, Principal};
use crate::testing::{Scripted, TempStore, bot, bots_config, ok, post, principal};
use crate::transcript::{CanonicalJson, Entry, GENESIS};
use hook_protocol::{Entropy, Hook, HookError, HookJob, HookOutcome, Post};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// A bot whose every post and state is a function of its job: it shows the
/// entropy, the hash seed, the clock and the players it was given, counts in
/// its state, answers privately on request, changes only its state on
/// "count", stays silent on "quiet" and raises on "fail".
fn pure_bot(job: &HookJob) -> HookOutcome {
    let n = job.state["n"].as_i64().unwrap_or(0);
    let e = job
        .entropy
        .as_ref()
        .map(|e| hex::encode(&e.as_bytes()[..4]));
    let seen = json!({
        "e": e,
        "hash_seed": job.hash_seed,
        "now": job.now.map(|t| t.to_string()),
        "players": job.context.players.iter().map(|p| json!([p.label, p.filled])).collect::<Vec<_>>(),
    });
    match &job.hook {
        Hook::OnMessage { message } => match message["body"].as_str().unwrap_or("") {
            "quiet" => ok(Vec::new(), job.state.clone()),
            "count" => ok(Vec::new(), json!({"n": n + 1})),
            "fail" => HookOutcome::Error {
                error: HookError::Exception {
                    message: "asked to fail".into(),
                    traceback: String::new(),
                },
            },
            "secret" => ok(
                vec![Post {
                    kind: "secret".into(),
                    body: seen,
                    to: Some(vec![message["sender"].as_str().unwrap().to_string()]),
                }],
                json!({"n": n + 1}),
            ),
            _ => ok(
                vec![post("echo", json!({"body": message["body"], "seen": seen}))],
                json!({"n": n + 1}),
            ),
        },
        _ => ok(vec![post(job.hook.method(), seen)], json!({"n": n + 1})),
    }
}

struct Game {
    t: TempStore,
    ch: Channels,
    d: Dispatcher,
    alice: Principal,
    bob: Principal,
    cid: String,
}

impl Game {
    /// alice (admin, seated) and bob in a channel with a seeded pure bot
    /// whose params are `{"max": 64}`; bob joined.
    async fn start(runner: Arc<Scripted>) -> Game {
        let t = TempStore::new();
        let ch = Channels::new(t.store.clone(), 64 * 1024, CancellationToken::new());
        let d = Dispatcher::start(t.store.clone(), Bots::with_runner(bots_config(2), runner))
            .await
            .unwrap();
        let alice = principal(&t.store, "alice").await;
        let bob = principal(&t.store, "bob").await;
        let mut b = bot("Pure", &["on_init", "on_join", "on_message"]);
        b.params = serde_json::from_value(json!({"max": 64})).unwrap();
        let c = ch
            .create(
                &alice,
                NewChannelRequest {
                    name: "t".into(),
                    slots: ["alice", "bob", "bot:ref"]
                        .iter()
                        .map(|s| SlotSpec::parse(s).unwrap())
                        .collect(),
                    join_as: Some("alice".into()),
                    allow_network: false,
                    bot: Some(b),
                },
            )
            .await
            .unwrap();
        ch.join(&bob, &c.invites[0].invite_code).await.unwrap();
        Game {
            t,
            ch,
            d,
            alice,
            bob,
            cid: c.channel_id,
        }
    }

    async fn say(&self, who: &Principal, body: &str, to: Option<Vec<String>>) -> i64 {
        self.ch
            .post(who, &self.cid, None, &json!(body), to)
            .await
            .unwrap()
            .seq
    }

    async fn settled(&self) {
        tokio::time::timeout(Duration::from_secs(20), self.d.settled())
            .await
            .expect("the dispatcher did not settle");
    }

    async fn close(&self) {
        self.ch
            .update(&self.alice, &self.cid, UpdateOp::Close)
            .await
            .unwrap();
        self.settled().await;
    }

    async fn transcript(&self) -> Vec<MessageView> {
        self.ch
            .sync(
                &self.alice,
                SyncRequest {
                    channel_id: self.cid.clone(),
                    slot: None,
                    cursor: Some(0),
                    limit: Some(500),
                    wait: Some(Duration::ZERO),
                },
                None,
                &CancellationToken::new(),
            )
            .await
            .unwrap()
            .messages
    }

    async fn document(&self) -> Transcript {
        Transcript::from_store(&self.t.store, &self.cid)
            .await
            .unwrap()
    }
}

fn body_type(m: &MessageView) -> &str {
    m.body
        .as_ref()
        .and_then(|b| b["type"].as_str())
        .unwrap_or("")
}

fn pure_bots() -> Bots {
    Bots::with_runner(bots_config(1), Scripted::answering(pure_bot))
}

/// Recomputes every link, as a forger rewriting the whole chain would.
fn reseal(cid: &str, msgs: &mut [Value]) {
    let mut prev = GENESIS.to_string();
    for m in msgs.iter_mut() {
        let body = CanonicalJson::of(&m["body"]);
        let to: Option<Vec<String>> = m
            .get("to")
            .map(|t| serde_json::from_value(t.clone()).unwrap());
        let salt = m["body_salt"].as_str().unwrap_or("").to_string();
        let state_hash = m["state_hash"].as_str().map(str::to_string);
        let e = Entry {
            seq: m["seq"].as_i64().unwrap(),
            channel_id: cid,
            sender: m["sender"].as_str().unwrap(),
            kind: m["kind"].as_str().unwrap(),
            ts: m["ts"].as_str().unwrap(),
            body: &body,
            private: to.as_deref().map(|t| (t, salt.as_str())),
            cause: m["cause"].as_i64(),
            state_hash: state_hash.as_deref(),
        };
        let sealed = e.seal(&prev);
        m["hash"] = json!(sealed.hash);
        prev = sealed.hash;
    }
}

/// Deletes message `i` and renumbers what follows (seqs, causes, a
/// `bot:error`'s seq), as a forger deleting an entry would; not resealed.
fn drop_entry(doc: &mut Transcript, i: usize) {
    let gone = doc.messages.remove(i)["seq"].as_i64().unwrap();
    for m in doc.messages.iter_mut() {
        let shift = |v: &mut Value| {
            if let Some(n) = v.as_i64().filter(|n| *n > gone) {
                *v = json!(n - 1);
            }
        };
        shift(&mut m["seq"]);
        if m.get("cause").is_some() {
            shift(&mut m["cause"]);
        }
        if m["body"]["type"] == "bot:error" {
            shift(&mut m["body"]["seq"]);
        }
    }
}

fn verdicts(r: &super::Report) -> Vec<(i64, String, &str)> {
    r.hooks
        .iter()
        .map(|h| {
            let v = match &h.verdict {
                Verdict::Matched { .. } => "matched",
                Verdict::Mismatch { .. } => "mismatch",
                Verdict::NotReplayable { .. } => "not_replayable",
            };
            (h.trigger, h.hook.clone(), v)
        })
        .collect()
}

#[tokio::test]
async fn hooks_carry_the_seeds_entropy_and_the_triggers_time_and_close_reveals_the_seed() {
    let jobs: Arc<Mutex<Vec<HookJob>>> = Arc::default();
    let seen = jobs.clone();
    let g = Game::start(Scripted::answering(move |job| {
        seen.lock().unwrap().push(job.clone());
        pure_bot(job)
    }))
    .await;
    let hi = g.say(&g.alice, "hi", None).await;
    g.settled().await;
    let before = g.transcript().await;
    let attach = before
        .iter()
        .find(|m| body_type(m) == "bot:attach")
        .unwrap();
    let a = attach.body.as_ref().unwrap();
    let commitment = a["seed_commitment"].as_str().unwrap().to_string();
    assert_eq!(
        a["params_hash"],
        json!(crate::transcript::sha256_tagged(br#"{"max":64}"#))
    );
    assert!(
        before.iter().all(|m| body_type(m) != "bot:reveal"),
        "no reveal while the channel is open"
    );

    g.close().await;
    let after = g.transcript().await;
    let closed = after
        .iter()
        .find(|m| body_type(m) == "channel:closed")
        .unwrap();
    let reveal = after.iter().find(|m| body_type(m) == "bot:reveal").unwrap();
    assert_eq!(reveal.seq, closed.seq + 1, "revealed in the closing write");
    let r = reveal.body.as_ref().unwrap();
    let bot_seed = seed::check_reveal(
        &commitment,
        r["seed"].as_str().unwrap(),
        r["state_salt"].as_str().unwrap(),
    )
    .expect("the reveal opens the commitment");

    // Every hook's job: entropy from the seed and the trigger's seq, the
    // clock at the trigger's ts.
    let by_seq = |s: i64| after.iter().find(|m| m.seq == s).unwrap();
    let jobs = jobs.lock().unwrap().clone();
    assert_eq!(
        jobs.len(),
        4,
        "on_init, on_join alice, on_join bob, on_message"
    );
    let triggers = [
        attach.seq,
        after
            .iter()
            .find(|m| body_type(m) == "seat:filled")
            .unwrap()
            .seq,
        after
            .iter()
            .filter(|m| body_type(m) == "seat:filled")
            .nth(1)
            .unwrap()
            .seq,
        hi,
    ];
    for (job, trigger) in jobs.iter().zip(triggers) {
        assert_eq!(
            job.entropy,
            Some(Entropy::for_hook(&bot_seed, trigger as u64)),
            "{:?}",
            job.hook
        );
        assert_eq!(job.now.unwrap().to_string(), by_seq(trigger).ts);
        // One hash seed for all the bot's hooks: its seed's.
        assert_eq!(job.hash_seed, Some(bot_seed.python_hash_seed()));
    }
    // The state hashes are salted with the seed's salt.
    let last = after.iter().rfind(|m| m.state_hash.is_some()).unwrap();
    assert_eq!(
        last.state_hash.as_deref(),
        Some(seed::state_hash_under(&bot_seed, &json!({"n": 4})).as_str())
    );
    // Closing again reveals nothing more.
    g.ch.update(&g.alice, &g.cid, UpdateOp::Close)
        .await
        .unwrap();
    let again = g.transcript().await;
    assert_eq!(again.len(), after.len());
}

#[tokio::test]
async fn a_bot_without_a_seed_runs_as_before_and_is_not_replayable() {
    let jobs: Arc<Mutex<Vec<HookJob>>> = Arc::default();
    let seen = jobs.clone();
    let g = Game::start(Scripted::answering(move |job| {
        seen.lock().unwrap().push(job.clone());
        pure_bot(job)
    }))
    .await;
    g.settled().await;
    // As a bot attached before seeds existed has it.
    g.t.store
        .sql_write(|c| {
            c.execute("UPDATE bots SET seed = NULL", rusqlite::params![])
                .map_err(crate::store::StoreError::from)
        })
        .await
        .unwrap();
    g.say(&g.alice, "hi", None).await;
    g.close().await;
    let last = jobs.lock().unwrap().last().cloned().unwrap();
    assert_eq!((last.entropy, last.now, last.hash_seed), (None, None, None));
    assert!(
        g.transcript()
            .await
            .iter()
            .all(|m| body_type(m) != "bot:reveal"),
        "nothing to reveal"
    );
    // Its reveal is missing: the earlier seeded hooks cannot be replayed either.
    let r = replay(&g.document().await, &pure_bots()).await;
    assert!(r.passed(), "{}", r.text());
    assert!(
        r.hooks.iter().all(|h| matches!(&h.verdict,
        Verdict::NotReplayable { why } if why.contains("not revealed"))),
        "{}",
        r.text()
    );

    // A channel from before seeds: no commitment in its bot:attach.
    let mut doc = g.document().await;
    for m in doc.messages.iter_mut() {
        if m["body"]["type"] == "bot:attach" {
            let b = m["body"].as_object_mut().unwrap();
            b.remove("seed_commitment");
            b.remove("params_hash");
        }
    }
    reseal(&doc.channel_id, &mut doc.messages);
    let r = replay(&doc, &pure_bots()).await;
    assert!(r.passed(), "{}", r.text());
    assert!(
        r.hooks.iter().all(|h| matches!(&h.verdict,
        Verdict::NotReplayable { why } if why.starts_with("no seed"))),
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn a_seat_kicked_while_a_hook_waits_is_still_filled_in_that_hooks_players() {
    // The hook of "block" waits until bob has been kicked, so the hook of
    // bob's "slow" is built after the kick committed.
    let gate = Arc::new(Notify::new());
    let open = gate.clone();
    let g = Game::start(Scripted::with(move |job| {
        let gate = open.clone();
        Box::pin(async move {
            if matches!(&job.hook, Hook::OnMessage { message } if message["body"] == "block") {
                gate.notified().await;
            }
            pure_bot(&job)
        })
    }))
    .await;
    g.settled().await;
    g.say(&g.alice, "block", None).await;
    let slow = g.say(&g.bob, "slow", None).await;
    g.ch.update(&g.alice, &g.cid, UpdateOp::Kick { slot: "bob".into() })
        .await
        .unwrap();
    gate.notify_one();
    g.say(&g.alice, "after", None).await;
    g.settled().await;
    let ms = g.transcript().await;
    let players = |cause: i64| {
        ms.iter()
            .find(|m| m.cause == Some(cause))
            .unwrap()
            .body
            .as_ref()
            .unwrap()["data"]["seen"]["players"]
            .clone()
    };
    assert_eq!(
        players(slow),
        json!([["alice", true], ["bob", true]]),
        "as of its trigger, not of the kick committed while it waited"
    );
    let after = ms
        .iter()
        .find(|m| m.body.as_ref().is_some_and(|b| b == "after"))
        .unwrap()
        .seq;
    assert_eq!(players(after), json!([["alice", true], ["bob", false]]));
    // on_init ran at the attach, before alice's own seat:filled.
    let init = ms.iter().find(|m| body_type(m) == "on_init").unwrap();
    assert_eq!(
        init.body.as_ref().unwrap()["data"]["players"],
        json!([["alice", false], ["bob", false]])
    );
    g.close().await;
    let r = replay(&g.document().await, &pure_bots()).await;
    assert!(r.passed(), "{}", r.text());
}

#[tokio::test]
async fn every_hook_replays_to_a_match_and_each_forgery_is_caught_at_its_seq() {
    let g = Game::start(Scripted::answering(pure_bot)).await;
    g.say(&g.alice, "one", None).await;
    g.say(&g.bob, "count", None).await;
    g.say(&g.alice, "quiet", None).await;
    g.say(&g.bob, "fail", None).await;
    g.say(&g.bob, "secret", Some(vec!["bot:ref".into()])).await;
    g.say(&g.alice, "psst", Some(vec!["bob".into()])).await;
    g.say(&g.alice, "two", None).await;
    g.settled().await;
    g.close().await;
    let doc = g.document().await;
    let r = replay(&doc, &pure_bots()).await;
    assert!(r.passed(), "{}", r.text());
    let v = verdicts(&r);
    let hooks: Vec<&str> = v.iter().map(|(_, h, _)| h.as_str()).collect();
    assert_eq!(
        hooks,
        [
            "on_init",
            "on_join alice",
            "on_join bob",
            "on_message",
            "on_message",
            "on_message",
            "on_message",
            "on_message",
            "on_message"
        ],
        "the private message to bob runs no hook of the bot"
    );
    assert!(v.iter().all(|(_, _, v)| *v == "matched"), "{}", r.text());
    assert_eq!(r.hooks_run, 9);

    let find =
        |doc: &Transcript, f: &dyn Fn(&Value) -> bool| doc.messages.iter().position(f).unwrap();

    // A bot post the code did not produce, the chain rewritten around it.
    let mut forged = doc.clone();
    let i = find(&forged, &|m| m["body"]["type"] == "echo");
    forged.messages[i]["body"]["data"]["body"] = json!("uno");
    reseal(&forged.channel_id, &mut forged.messages);
    let seq = forged.messages[i]["seq"].as_i64().unwrap();
    let r = replay(&forged, &pure_bots()).await;
    assert!(!r.passed());
    let bad: Vec<_> = r
        .hooks
        .iter()
        .filter_map(|h| match &h.verdict {
            Verdict::Mismatch { seq, what } => Some((*seq, what.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(bad.len(), 1, "{}", r.text());
    assert_eq!(bad[0].0, seq);
    assert!(bad[0].1.contains("differs"), "{}", bad[0].1);

    // A state hash the replay cannot reach (a server hiding a state): the
    // later hooks start from an unknown state and say so.
    let mut hidden = doc.clone();
    let i = find(&hidden, &|m| m["body"]["type"] == "bot:state");
    hidden.messages[i]["state_hash"] = json!(format!("sha256:{}", "0".repeat(64)));
    reseal(&hidden.channel_id, &mut hidden.messages);
    let r = replay(&hidden, &pure_bots()).await;
    let v = verdicts(&r);
    let at = v.iter().position(|(_, _, v)| *v == "mismatch").unwrap();
    assert!(
        v[at + 1..].iter().all(|(_, _, v)| *v == "not_replayable"),
        "{}",
        r.text()
    );

    // A failure recorded with another reason still matches a failure (the
    // hook changed nothing either way), with a note.
    let mut reason = doc.clone();
    let i = find(&reason, &|m| m["body"]["type"] == "bot:error");
    let trigger = reason.messages[i]["cause"].as_i64().unwrap();
    reason.messages[i]["body"]["reason"] = json!("exception: something else");
    reseal(&reason.channel_id, &mut reason.messages);
    let r = replay(&reason, &pure_bots()).await;
    assert!(r.passed(), "a failure matches a failure: {}", r.text());
    let noted = r.hooks.iter().find(|h| h.trigger == trigger).unwrap();
    assert!(
        matches!(&noted.verdict, Verdict::Matched { note: Some(n) } if n.contains("failed in both"))
    );

    // A hook's post deleted (the chain renumbered and rewritten): a later
    // entry of the bot shows the hook ran, so its missing output is caught.
    let mut deleted = doc.clone();
    let i = find(&deleted, &|m| m["body"]["type"] == "echo");
    let trigger = deleted.messages[i]["cause"].as_i64().unwrap();
    drop_entry(&mut deleted, i);
    reseal(&deleted.channel_id, &mut deleted.messages);
    let r = replay(&deleted, &pure_bots()).await;
    assert!(!r.passed());
    let h = r.hooks.iter().find(|h| h.trigger == trigger).unwrap();
    assert!(
        matches!(&h.verdict, Verdict::Mismatch { what, .. } if what.contains("is missing")),
        "{}",
        r.text()
    );

    // The last hook's entries not written yet when the transcript was
    // taken: pending, not a mismatch (nothing of the bot follows).
    let mut pending = doc.clone();
    let last = pending
        .messages
        .iter()
        .rposition(|m| m["sender"] == "bot:ref")
        .unwrap();
    let trigger = pending.messages[last]["cause"].as_i64().unwrap();
    drop_entry(&mut pending, last);
    reseal(&pending.channel_id, &mut pending.messages);
    let r = replay(&pending, &pure_bots()).await;
    assert!(r.passed(), "{}", r.text());
    let h = r.hooks.iter().find(|h| h.trigger == trigger).unwrap();
    assert!(
        matches!(&h.verdict, Verdict::NotReplayable { why } if why.starts_with("pending")),
        "{}",
        r.text()
    );

    // A hook refused for the channel's quota: the chain's bot:error says
    // so; the replay cannot check the quota and says that, keeping the state.
    let mut quota = doc.clone();
    let i = find(&quota, &|m| m["body"]["type"] == "echo");
    let trigger = quota.messages[i]["cause"].as_i64().unwrap();
    let n = quota.messages[i]["seq"].as_i64().unwrap() - 1;
    quota.messages[i] = json!({
        "seq": n + 1, "sender": "bot:ref", "kind": "control", "ts": quota.messages[i]["ts"],
        "cause": trigger,
        "body": {"type": "bot:error", "bot_id": "bot:ref", "seq": trigger,
                 "reason": format!("This channel holds {n} messages, its limit is {n}. Start a new channel to go on.")}});
    reseal(&quota.channel_id, &mut quota.messages);
    let r = replay(&quota, &pure_bots()).await;
    let h = r.hooks.iter().position(|h| h.trigger == trigger).unwrap();
    assert!(
        matches!(&r.hooks[h].verdict, Verdict::NotReplayable { why } if why.contains("quota")),
        "{}",
        r.text()
    );
    // The next hook starts from the state before the refused one, which
    // the chain committed to: it replays, and mismatches only because the
    // pure bot's counter differs (its state hash says so).
    assert!(
        !matches!(&r.hooks[h + 1].verdict, Verdict::NotReplayable { .. }),
        "{}",
        r.text()
    );

    // A refusal that the transcript contradicts is a forgery, caught at its
    // seq: the wrong message count before it, a limit the hook's one post
    // would not pass, the wrong size of its posts, a byte limit they would
    // not pass. The same refusal for the posts' real size stays not
    // replayable.
    let echo = quota.messages[i].clone();
    let posted = doc.messages[i]["body"].clone();
    let size = crate::transcript::canonical(&posted).len();
    for (reason, mismatch) in [
        (
            format!(
                "This channel holds {} messages, its limit is {}. Start a new channel to go on.",
                n - 1,
                n - 1
            ),
            true,
        ),
        (
            format!(
                "This channel holds {n} messages, its limit is {}. Start a new channel to go on.",
                n + 1
            ),
            true,
        ),
        (
            format!(
                "This channel's messages hold 900 bytes; {} more would pass its limit of 1000 bytes. Start a new channel to go on.",
                size + 1
            ),
            true,
        ),
        (
            format!(
                "This channel's messages hold 900 bytes; {size} more would pass its limit of {} bytes. Start a new channel to go on.",
                900 + size
            ),
            true,
        ),
        (
            format!(
                "This channel's messages hold 900 bytes; {size} more would pass its limit of {} bytes. Start a new channel to go on.",
                899 + size
            ),
            false,
        ),
    ] {
        let mut forged = quota.clone();
        forged.messages[i] = echo.clone();
        forged.messages[i]["body"]["reason"] = json!(reason);
        reseal(&forged.channel_id, &mut forged.messages);
        let r = replay(&forged, &pure_bots()).await;
        let h = r.hooks.iter().find(|h| h.trigger == trigger).unwrap();
        if mismatch {
            assert!(
                matches!(&h.verdict, Verdict::Mismatch { seq, what } if *seq == n + 1 && what.contains("quota refusal")),
                "{reason}: {}",
                r.text()
            );
        } else {
            assert!(
                matches!(&h.verdict, Verdict::NotReplayable { why } if why.contains("quota")),
                "{reason}: {}",
                r.text()
            );
        }
    }

    // A wrong seed in the reveal.
    let mut wrong = doc.clone();
    let i = find(&wrong, &|m| m["body"]["type"] == "bot:reveal");
    let s = wrong.messages[i]["body"]["seed"]
        .as_str()
        .unwrap()
        .to_string();
    let flipped = format!("{}{}", if s.starts_with('0') { "1" } else { "0" }, &s[1..]);
    wrong.messages[i]["body"]["seed"] = json!(flipped);
    reseal(&wrong.channel_id, &mut wrong.messages);
    let r = replay(&wrong, &pure_bots()).await;
    assert!(!r.passed());
    assert_eq!(
        r.problems[0].seq,
        wrong.messages[i]["seq"].as_i64().unwrap()
    );
    assert!(r.problems[0].what.contains("does not open"), "{}", r.text());

    // A changed param.
    let mut changed = doc.clone();
    changed.bots[0].params.insert("max".into(), json!(65));
    let r = replay(&changed, &pure_bots()).await;
    assert!(!r.passed());
    let attach = find(&changed, &|m| m["body"]["type"] == "bot:attach");
    assert_eq!(
        r.problems[0].seq,
        changed.messages[attach]["seq"].as_i64().unwrap()
    );
    assert!(r.problems[0].what.contains("params_hash"), "{}", r.text());

    // A manifest that drops a hook (so that its runs would be skipped).
    let mut manifest = doc.clone();
    let i = find(&manifest, &|m| m["body"]["type"] == "bot:manifest");
    manifest.messages[i]["body"]["hooks"] = json!(["on_init", "on_message"]);
    reseal(&manifest.channel_id, &mut manifest.messages);
    let r = replay(&manifest, &pure_bots()).await;
    assert_eq!(
        r.problems[0].seq,
        manifest.messages[i]["seq"].as_i64().unwrap()
    );
    assert!(r.problems[0].what.contains("manifest_hash"), "{}", r.text());

    // Another source.
    let mut other = doc.clone();
    other.bots[0].source.push('\n');
    let r = replay(&other, &pure_bots()).await;
    assert!(r.problems[0].what.contains("code_hash"), "{}", r.text());

    // An edit without re-chaining: the chain check names it first.
    let mut raw = doc.clone();
    let i = find(&raw, &|m| m["body"]["type"] == "echo");
    raw.messages[i]["body"]["data"]["body"] = json!("uno");
    let r = replay(&raw, &pure_bots()).await;
    assert_eq!(r.problems[0].seq, raw.messages[i]["seq"].as_i64().unwrap());
    assert!(r.problems[0].what.contains("does not verify"));
}

#[tokio::test]
async fn a_players_transcript_replays_what_it_can_read_and_says_what_it_cannot() {
    let g = Game::start(Scripted::answering(pure_bot)).await;
    g.say(&g.alice, "one", None).await;
    let secret = g.say(&g.bob, "secret", Some(vec!["bot:ref".into()])).await;
    g.say(&g.alice, "two", None).await;
    g.settled().await;
    g.close().await;
    // alice's transcript: bob's private message to the bot and its answer
    // to bob come without bodies.
    let msgs: Vec<Value> = g
        .transcript()
        .await
        .iter()
        .map(|m| serde_json::to_value(m).unwrap())
        .collect();
    let mut doc = g.document().await;
    doc.messages = msgs;
    let r = replay(&doc, &pure_bots()).await;
    assert!(r.passed(), "{}", r.text());
    let at = r.hooks.iter().position(|h| h.trigger == secret).unwrap();
    assert!(
        matches!(&r.hooks[at].verdict,
        Verdict::NotReplayable { why } if why.contains("private to the bot")),
        "{}",
        r.text()
    );
    assert!(
        r.hooks[..at]
            .iter()
            .all(|h| matches!(h.verdict, Verdict::Matched { .. }))
    );
    assert!(
        r.hooks[at + 1..].iter().all(|h| matches!(&h.verdict,
        Verdict::NotReplayable { why } if why.contains("state is unknown"))),
        "{}",
        r.text()
    );

    // bob's transcript reads both: the private answer is compared whole.
    let bob_view: Vec<Value> =
        g.ch.sync(
            &g.bob,
            SyncRequest {
                channel_id: g.cid.clone(),
                slot: None,
                cursor: Some(0),
                limit: Some(500),
                wait: Some(Duration::ZERO),
            },
            None,
            &CancellationToken::new(),
        )
        .await
        .unwrap()
        .messages
        .iter()
        .map(|m| serde_json::to_value(m).unwrap())
        .collect();
    doc.messages = bob_view;
    let r = replay(&doc, &pure_bots()).await;
    assert!(r.passed(), "{}", r.text());
    assert!(
        r.hooks
            .iter()
            .all(|h| h.verdict == Verdict::Matched { note: None }),
        "{}",
        r.text()
    );
}

#[test]
fn a_document_reads_in_either_shape_and_pages_or_other_formats_are_refused() {
    let bot = json!({"bot_id": "bot:r", "name": "G", "source": "class G: pass\n",
                     "code_hash": "sha256:x", "params": {"max": 3}, "network": false});
    let entry =
        json!({"seq": 1, "sender": "system", "kind": "system", "ts": "t", "hash": "h", "body": {}});
    let plain = Transcript::from_json(&json!({
        "channel_id": "ch_1", "messages": [entry], "bots": [bot]}))
    .unwrap();
    let export = Transcript::from_json(&json!({
        "format": "mcp-multiplayer-transcript", "version": 1, "exported_as": "alice",
        "channel": {"channel_id": "ch_1"}, "entries": [entry], "bots": [bot],
        "signed_heads": [], "keys": [], "replay": {}}))
    .unwrap();
    assert_eq!(plain, export);
    assert_eq!(export.bots[0].params["max"], 3);
    for (doc, why) in [
        (
            json!({"format": "other", "channel_id": "c", "messages": []}),
            "unknown document format",
        ),
        (
            json!({"format": "mcp-multiplayer-transcript", "version": 2, "channel": {"channel_id": "c"}, "entries": []}),
            "version 2",
        ),
        (
            json!({"channel_id": "c", "entries": [], "page": {"after": 0}}),
            "one page",
        ),
        (json!({"messages": []}), "no channel_id"),
        (json!({"channel_id": "c"}), "no messages"),
        (
            json!({"channel_id": "c", "messages": [], "bots": [{"bot_id": "b"}]}),
            "has no source",
        ),
        (
            json!({"channel_id": "c", "messages": [], "bots": [{"bot_id": "b", "source": "", "params": 1}]}),
            "not an object",
        ),
    ] {
        let e = Transcript::from_json(&doc).unwrap_err();
        assert!(e.to_string().contains(why), "{doc}: {e}");
    }
}
