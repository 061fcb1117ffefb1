//! The dispatcher on a real SQLite store with a scripted hook runner in
//! place of the sandbox: hook order, what triggers hooks and what never
//! does, failures, limits, crash recovery and parallelism.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::Bots;
use super::dispatch::Dispatcher;
use crate::channels::{Channels, NewChannelRequest, SlotSpec, SyncRequest};
use crate::model::{MessageKind, MessageView, Principal};
use crate::store::Store;
use crate::testing::{Scripted, TempStore, bot, bots_config, echo, ok, post, principal};
use hook_protocol::{Hook, HookError, HookOutcome, Limits, Post};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const ALL_HOOKS: &[&str] = &["on_init", "on_join", "on_message"];

struct World {
    t: TempStore,
    ch: Channels,
    runner: Arc<Scripted>,
    d: Dispatcher,
    alice: Principal,
    bob: Principal,
}

async fn start(store: &Store, runner: Arc<Scripted>, parallel: usize) -> (Channels, Dispatcher) {
    let ch = Channels::new(store.clone(), 64 * 1024, CancellationToken::new());
    let bots = Bots::with_runner(bots_config(parallel), runner);
    let d = Dispatcher::start(store.clone(), bots).await.unwrap();
    (ch, d)
}

/// [`World::table`], with `alice` creating it in `ch`.
async fn table(ch: &Channels, alice: &Principal, hooks: &[&str]) -> (String, String) {
    let c = ch
        .create(
            alice,
            NewChannelRequest {
                name: "t".into(),
                slots: ["alice", "bob", "bot:ref"]
                    .iter()
                    .map(|s| SlotSpec::parse(s).unwrap())
                    .collect(),
                join_as: Some("alice".into()),
                allow_network: false,
                bot: Some(bot("Ref", hooks)),
            },
        )
        .await
        .unwrap();
    (c.channel_id, c.invites[0].invite_code.clone())
}

async fn world(runner: Arc<Scripted>) -> World {
    let t = TempStore::new();
    let (ch, d) = start(&t.store, runner.clone(), 4).await;
    World {
        alice: principal(&t.store, "alice").await,
        bob: principal(&t.store, "bob").await,
        t,
        ch,
        runner,
        d,
    }
}

impl World {
    /// A channel with players alice (seated, admin) and bob, and one bot
    /// defining `hooks`. Returns the channel id and bob's invite.
    async fn table(&self, hooks: &[&str]) -> (String, String) {
        table(&self.ch, &self.alice, hooks).await
    }

    async fn say(&self, who: &Principal, cid: &str, body: Value) -> i64 {
        self.ch.post(who, cid, None, &body, None).await.unwrap().seq
    }

    async fn settled(&self) {
        tokio::time::timeout(Duration::from_secs(20), self.d.settled())
            .await
            .expect("the dispatcher did not settle");
    }

    async fn transcript(&self, cid: &str) -> Vec<MessageView> {
        self.ch
            .sync(
                &self.alice,
                SyncRequest {
                    channel_id: cid.into(),
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
}

fn of_kind(ms: &[MessageView], kind: MessageKind) -> Vec<MessageView> {
    ms.iter().filter(|m| m.kind == kind).cloned().collect()
}

#[tokio::test]
async fn hooks_run_in_transcript_order_on_init_first() {
    let w = world(Scripted::answering(echo)).await;
    let (cid, inv) = w.table(ALL_HOOKS).await;
    w.ch.join(&w.bob, &inv).await.unwrap();
    w.say(&w.alice, &cid, json!("hi")).await;
    w.say(&w.bob, &cid, json!({"n": 2})).await;
    w.settled().await;
    assert_eq!(
        w.runner.hooks_in(&cid),
        vec![
            "on_init",
            "on_join:alice",
            "on_join:bob",
            "on_message:\"hi\"",
            "on_message:{\"n\":2}"
        ]
    );
    assert_eq!(w.d.hooks_run(), 5);
}

#[tokio::test]
async fn a_bots_posts_commit_as_bot_messages_and_trigger_no_bot() {
    let w = world(Scripted::answering(echo)).await;
    let (cid, _) = w.table(ALL_HOOKS).await;
    // A second bot in the same channel: it must not see the first one's posts.
    w.ch.attach_bot(
        &w.alice,
        &cid,
        Some("other".into()),
        bot("Other", ALL_HOOKS),
    )
    .await
    .unwrap();
    w.say(&w.alice, &cid, json!("ping")).await;
    w.settled().await;
    let ms = w.transcript(&cid).await;
    let replies = of_kind(&ms, MessageKind::Bot);
    assert_eq!(replies.len(), 2, "one echo from each bot");
    for r in &replies {
        assert_eq!(
            r.body,
            Some(json!({"type": "echo", "data": {"body": "ping"}}))
        );
    }
    let messages: Vec<_> = w
        .runner
        .hooks_in(&cid)
        .into_iter()
        .filter(|h| h.starts_with("on_message"))
        .collect();
    assert_eq!(messages, vec!["on_message:\"ping\"", "on_message:\"ping\""]);
}

#[tokio::test]
async fn hooks_a_bot_does_not_define_are_never_run() {
    let w = world(Scripted::answering(echo)).await;
    let (cid, inv) = w.table(&["on_message"]).await;
    w.ch.join(&w.bob, &inv).await.unwrap();
    w.say(&w.bob, &cid, json!("only this")).await;
    w.settled().await;
    assert_eq!(w.runner.hooks_in(&cid), vec!["on_message:\"only this\""]);
}

#[tokio::test]
async fn state_carries_from_one_hook_to_the_next() {
    let w = world(Scripted::answering(echo)).await;
    let (cid, _) = w.table(&["on_message"]).await;
    for i in 0..3 {
        w.say(&w.alice, &cid, json!({"i": i})).await;
    }
    w.settled().await;
    let states: Vec<Value> = w.runner.calls().into_iter().map(|c| c.state).collect();
    assert_eq!(
        states,
        vec![json!({}), json!({"seen": 1}), json!({"seen": 2})]
    );
}

#[tokio::test]
async fn a_failed_hook_commits_exactly_one_bot_error_and_keeps_the_state() {
    let runner = Scripted::answering(|job| match &job.hook {
        Hook::OnMessage { message } if message["body"] == "crash" => HookOutcome::Error {
            error: HookError::Exception {
                message: "ZeroDivisionError: division by zero".into(),
                traceback: "line 3".into(),
            },
        },
        _ => echo(job),
    });
    let w = world(runner).await;
    let (cid, _) = w.table(&["on_message"]).await;
    w.say(&w.alice, &cid, json!("a")).await;
    let crash = w.say(&w.alice, &cid, json!("crash")).await;
    w.say(&w.alice, &cid, json!("b")).await;
    w.settled().await;
    let ms = w.transcript(&cid).await;
    let errors = of_kind(&ms, MessageKind::Control);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].sender, "bot:ref");
    assert_eq!(
        errors[0].body,
        Some(
            json!({"type": "bot:error", "bot_id": "bot:ref", "seq": crash,
                    "reason": "exception: ZeroDivisionError: division by zero"})
        )
    );
    assert_eq!(
        of_kind(&ms, MessageKind::Bot).len(),
        2,
        "the other two hooks replied"
    );
    let states: Vec<Value> = w.runner.calls().into_iter().map(|c| c.state).collect();
    assert_eq!(
        states[2],
        json!({"seen": 1}),
        "the failed hook's state did not stick"
    );
}

#[tokio::test]
async fn an_outcome_over_the_limits_is_refused_whole() {
    let runner = Scripted::answering(|job| {
        let Hook::OnMessage { message } = &job.hook else {
            return ok(vec![], json!({}));
        };
        let n = message["body"]["case"].as_i64().unwrap();
        match n {
            0 => ok(
                (0..=Limits::default().max_posts)
                    .map(|_| post("spam", json!(1)))
                    .collect(),
                json!({}),
            ),
            1 => ok(vec![post("x", json!(1))], json!(["not", "an", "object"])),
            2 => ok(
                vec![Post {
                    kind: "dm".into(),
                    body: json!(1),
                    to: Some(vec!["mallory".into()]),
                }],
                json!({}),
            ),
            _ => ok(vec![post(&"k".repeat(65), json!(1))], json!({})),
        }
    });
    let w = world(runner).await;
    let (cid, _) = w.table(&["on_message"]).await;
    for case in 0..4 {
        w.say(&w.alice, &cid, json!({"case": case})).await;
    }
    w.settled().await;
    let ms = w.transcript(&cid).await;
    assert!(
        of_kind(&ms, MessageKind::Bot).is_empty(),
        "nothing of a refused outcome is posted"
    );
    let reasons: Vec<String> = of_kind(&ms, MessageKind::Control)
        .iter()
        .map(|m| {
            m.body.as_ref().unwrap()["reason"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert!(reasons[0].contains("21 posts"), "{reasons:?}");
    assert!(reasons[1].contains("JSON object"), "{reasons:?}");
    assert!(reasons[2].contains("mallory"), "{reasons:?}");
    assert!(reasons[3].contains("1 to 64 characters"), "{reasons:?}");
}

#[tokio::test]
async fn a_bot_hears_only_the_private_messages_it_may_read() {
    let w = world(Scripted::answering(echo)).await;
    let (cid, inv) = w.table(&["on_message"]).await;
    w.ch.join(&w.bob, &inv).await.unwrap();
    w.ch.post(
        &w.alice,
        &cid,
        None,
        &json!("to bob"),
        Some(vec!["bob".into()]),
    )
    .await
    .unwrap();
    w.ch.post(
        &w.alice,
        &cid,
        None,
        &json!({"bid": 450}),
        Some(vec!["bot:ref".into()]),
    )
    .await
    .unwrap();
    w.settled().await;
    let calls = w.runner.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].hook, "on_message:{\"bid\":450}");
}

#[tokio::test]
async fn a_private_bot_post_reaches_only_its_recipients() {
    let runner = Scripted::answering(|job| match &job.hook {
        Hook::OnMessage { .. } => ok(
            vec![Post {
                kind: "hand".into(),
                body: json!(["AS"]),
                to: Some(vec!["bob".into()]),
            }],
            json!({}),
        ),
        _ => ok(vec![], json!({})),
    });
    let w = world(runner).await;
    let (cid, inv) = w.table(&["on_message"]).await;
    w.ch.join(&w.bob, &inv).await.unwrap();
    w.say(&w.alice, &cid, json!("deal")).await;
    w.settled().await;
    let hand = of_kind(&w.transcript(&cid).await, MessageKind::Bot).remove(0);
    assert_eq!(
        hand.redacted,
        Some(true),
        "alice sees that bob got a hand, not the hand"
    );
    assert_eq!(hand.to, Some(vec!["bob".to_string()]));
}

#[tokio::test]
async fn the_backlog_is_run_when_the_dispatcher_starts() {
    let t = TempStore::new();
    let ch = Channels::new(t.store.clone(), 1024, CancellationToken::new());
    let alice = principal(&t.store, "alice").await;
    let c = ch
        .create(
            &alice,
            NewChannelRequest {
                name: "t".into(),
                slots: vec![SlotSpec::parse("alice").unwrap()],
                join_as: Some("alice".into()),
                allow_network: false,
                bot: Some(bot("Ref", ALL_HOOKS)),
            },
        )
        .await
        .unwrap();
    ch.post(
        &alice,
        &c.channel_id,
        None,
        &json!("while no one listened"),
        None,
    )
    .await
    .unwrap();
    let runner = Scripted::answering(echo);
    let (_, d) = start(&t.store, runner.clone(), 2).await;
    tokio::time::timeout(Duration::from_secs(20), d.settled())
        .await
        .unwrap();
    assert_eq!(
        runner.hooks_in(&c.channel_id),
        vec![
            "on_init",
            "on_join:alice",
            "on_message:\"while no one listened\""
        ]
    );
}

#[tokio::test]
async fn a_backlog_longer_than_a_scan_is_passed_over_and_each_hook_sees_the_seats_of_its_trigger() {
    let t = TempStore::new();
    let ch = Channels::new(t.store.clone(), 64 * 1024, CancellationToken::new());
    let alice = principal(&t.store, "alice").await;
    let bob = principal(&t.store, "bob").await;
    let (cid, invite) = table(&ch, &alice, &["on_join"]).await;
    // More messages that trigger nothing than one scan reads (64), then
    // bob's seat, then more: all waiting when the dispatcher starts.
    for i in 0..70 {
        ch.post(&alice, &cid, None, &json!({"i": i}), None)
            .await
            .unwrap();
    }
    ch.join(&bob, &invite).await.unwrap();
    for i in 0..5 {
        ch.post(&bob, &cid, None, &json!({"i": i}), None)
            .await
            .unwrap();
    }
    let seats = Arc::new(Mutex::new(Vec::new()));
    let seen = seats.clone();
    let runner = Scripted::answering(move |job| {
        let players: Vec<(String, bool)> = job
            .context
            .players
            .iter()
            .map(|p| (p.label.clone(), p.filled))
            .collect();
        seen.lock().unwrap().push(players);
        echo(job)
    });
    let (_, d) = start(&t.store, runner.clone(), 2).await;
    tokio::time::timeout(Duration::from_secs(20), d.settled())
        .await
        .unwrap();
    assert_eq!(runner.hooks_in(&cid), vec!["on_join:alice", "on_join:bob"]);
    let seat = |l: &str, filled| (l.to_string(), filled);
    assert_eq!(
        *seats.lock().unwrap(),
        vec![
            vec![seat("alice", true), seat("bob", false)],
            vec![seat("alice", true), seat("bob", true)],
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_hook_and_commit_reruns_the_hook_once_and_never_twice() {
    let t = TempStore::new();
    // The first daemon: its hook starts, and the daemon dies before the
    // hook's outcome commits.
    let started: Arc<Mutex<Option<tokio::sync::oneshot::Sender<()>>>> = Arc::default();
    let (tx, rx) = tokio::sync::oneshot::channel();
    *started.lock().unwrap() = Some(tx);
    let s = started.clone();
    let first = Scripted::with(move |job| {
        let is_message = matches!(job.hook, Hook::OnMessage { .. });
        if is_message && let Some(tx) = s.lock().unwrap().take() {
            let _ = tx.send(());
        }
        Box::pin(async move {
            if is_message {
                std::future::pending::<()>().await;
            }
            ok(vec![], json!({}))
        })
    });
    let (ch, _d1) = start(&t.store, first.clone(), 2).await;
    let alice = principal(&t.store, "alice").await;
    let c = ch
        .create(
            &alice,
            NewChannelRequest {
                name: "t".into(),
                slots: vec![SlotSpec::parse("alice").unwrap()],
                join_as: Some("alice".into()),
                allow_network: false,
                bot: Some(bot("Ref", &["on_message"])),
            },
        )
        .await
        .unwrap();
    ch.post(&alice, &c.channel_id, None, &json!("once"), None)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(20), rx)
        .await
        .unwrap()
        .unwrap();
    t.store.close();

    // The restarted daemon runs the interrupted hook, once.
    let store2 = t.reopen();
    let second = Scripted::answering(echo);
    let (ch2, d2) = start(&store2, second.clone(), 2).await;
    tokio::time::timeout(Duration::from_secs(20), d2.settled())
        .await
        .unwrap();
    assert_eq!(second.hooks_in(&c.channel_id), vec!["on_message:\"once\""]);
    let s = ch2
        .sync(
            &alice,
            SyncRequest {
                channel_id: c.channel_id.clone(),
                slot: None,
                cursor: Some(0),
                limit: None,
                wait: Some(Duration::ZERO),
            },
            None,
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(of_kind(&s.messages, MessageKind::Bot).len(), 1);
    store2.close();

    // And a third start finds nothing left to run.
    let store3 = t.reopen();
    let third = Scripted::answering(echo);
    let (_, d3) = start(&store3, third.clone(), 2).await;
    tokio::time::timeout(Duration::from_secs(20), d3.settled())
        .await
        .unwrap();
    assert!(third.calls().is_empty(), "{:?}", third.calls());
    store3.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_run_in_parallel_and_each_channel_one_hook_at_a_time() {
    // Every on_message hook waits until a hook of the other channel is
    // running too: only parallel channels get past it.
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let runner = Scripted::with(move |job| {
        let b = barrier.clone();
        Box::pin(async move {
            if matches!(job.hook, Hook::OnMessage { .. }) {
                b.wait().await;
            }
            echo(&job)
        })
    });
    let w = world(runner).await;
    let (a, _) = w.table(&["on_message"]).await;
    let (b, _) = w.table(&["on_message"]).await;
    for i in 0..3 {
        w.say(&w.alice, &a, json!(format!("{i}"))).await;
        w.say(&w.alice, &b, json!(format!("{i}"))).await;
    }
    w.settled().await;
    let want = vec!["on_message:\"0\"", "on_message:\"1\"", "on_message:\"2\""];
    assert_eq!(w.runner.hooks_in(&a), want);
    assert_eq!(w.runner.hooks_in(&b), want);
    assert_eq!(*w.runner.max_per_channel.lock().unwrap(), 1);
    // Running hooks had uids of their own, all in the configured range.
    let uids: std::collections::BTreeSet<u32> = w.runner.calls().iter().map(|c| c.uid).collect();
    assert!(uids.len() >= 2, "{uids:?}");
    assert!(uids.iter().all(|u| (60000..60004).contains(u)), "{uids:?}");
    let _ = &w.t;
}

/// The protocol's table of outcome edge cases, through the daemon's layer:
/// each case's outcome, as the runner would print it, answers a real
/// `on_init` hook, and the transcript shows the verdict (the posts, or one
/// `bot:error` saying which rule was broken).
#[tokio::test]
async fn the_protocols_outcome_cases_hold_through_the_dispatcher() {
    let table: Value =
        serde_json::from_str(include_str!("../../../protocol/tests/outcome-cases.json")).unwrap();
    let base_players: Vec<String> = table["players"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["label"].as_str().unwrap().to_string())
        .collect();
    let mut ran = 0;
    for case in table["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        // `inspect` outcomes never reach the dispatcher (see `Bots::prepare`).
        if case["hook"]["name"] == "inspect" {
            continue;
        }
        let players: Vec<String> = match case.get("players") {
            Some(p) => p
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["label"].as_str().unwrap().to_string())
                .collect(),
            None => base_players.clone(),
        };
        // A channel has at least one player slot; the protocol and runner
        // layers cover the empty case.
        if players.is_empty() {
            continue;
        }
        let mut limits = serde_json::to_value(Limits::default()).unwrap();
        for (k, v) in case
            .get("limits")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            limits[k] = v.clone();
        }
        let limits: Limits = serde_json::from_value(limits).unwrap();
        let outcome: HookOutcome = serde_json::from_value(case["outcome"].clone()).unwrap();
        let verdict = case.get("from_runner").unwrap_or(&case["expect"]);

        let t = TempStore::new();
        let answer = outcome.clone();
        let runner = Scripted::answering(move |_| answer.clone());
        let ch = Channels::new(t.store.clone(), 64 * 1024, CancellationToken::new());
        let bots = Bots::with_runner(bots_config(1), runner).with_limits(limits);
        let d = Dispatcher::start(t.store.clone(), bots).await.unwrap();
        let admin = principal(&t.store, "admin").await;
        let mut slots: Vec<SlotSpec> = players
            .iter()
            .map(|p| SlotSpec::parse(p).unwrap())
            .collect();
        slots.push(SlotSpec::parse("bot:referee").unwrap());
        let c = ch
            .create(
                &admin,
                NewChannelRequest {
                    name: "case".into(),
                    slots,
                    join_as: None,
                    allow_network: false,
                    bot: Some(bot("Case", &["on_init"])),
                },
            )
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(20), d.settled())
            .await
            .unwrap();
        let cid = c.channel_id.clone();
        let ms = t
            .store
            .read(move |tx: &dyn crate::store::ReadTx| tx.messages_after(&cid, 0, 500))
            .await
            .unwrap();
        let bot_posts = ms.iter().filter(|m| m.kind == MessageKind::Bot).count();
        let errors: Vec<String> = ms
            .iter()
            .filter(|m| m.kind == MessageKind::Control && m.body.to_value()["type"] == "bot:error")
            .map(|m| m.body.to_value()["reason"].as_str().unwrap().to_string())
            .collect();
        match (verdict, &outcome) {
            (Value::String(s), HookOutcome::Ok { posts, .. }) if s == "accepted" => {
                assert_eq!(bot_posts, posts.len(), "{name}: {errors:?}");
                assert!(errors.is_empty(), "{name}: {errors:?}");
            }
            (Value::String(s), HookOutcome::Error { error }) if s == "accepted" => {
                assert_eq!(errors, vec![error.short_reason()], "{name}");
            }
            (v, _) => {
                let want = v["refused"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{name}: verdict {v}"));
                assert_eq!(bot_posts, 0, "{name}");
                assert_eq!(errors.len(), 1, "{name}: {errors:?}");
                assert!(
                    errors[0].contains(want),
                    "{name}: {:?} should contain {want:?}",
                    errors[0]
                );
            }
        }
        ran += 1;
    }
    assert!(ran >= 60, "only {ran} cases ran");
}

fn inspecting(manifest: Option<Value>) -> Arc<Scripted> {
    Scripted::answering(move |job| {
        assert_eq!(job.hook, Hook::Inspect);
        HookOutcome::Ok {
            posts: vec![],
            state: json!({}),
            logs: String::new(),
            timings: Default::default(),
            manifest: manifest.clone(),
        }
    })
}

#[tokio::test]
async fn preparing_a_bot_hashes_its_exact_source_and_announces_only_the_documented_manifest() {
    let runner = inspecting(Some(json!({
        "name": "Tally", "version": "2", "summary": "Counts.", "hooks": ["on_message"],
        "params": {"max": {"default": 3}}, "class_name": "Tally", "secret": "not announced"
    })));
    let bots = Bots::with_runner(bots_config(1), runner.clone());
    let src = "class Tally:\n    def on_message(self, msg):\n        pass\n";
    let b = bots
        .prepare(Some(src.into()), None, None, true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        b.code_hash,
        crate::transcript::sha256_tagged(src.as_bytes())
    );
    let announced = serde_json::to_value(&b.manifest).unwrap();
    assert_eq!(
        announced,
        json!({"name": "Tally", "version": "2", "summary": "Counts.", "hooks": ["on_message"],
               "params": {"max": {"default": 3}}, "network": true})
    );
    assert_eq!(
        b.manifest_hash,
        crate::transcript::sha256_tagged(crate::transcript::canonical(&announced).as_bytes())
    );
    assert_eq!((b.name.as_str(), b.network), ("Tally", true));
    // Inspections run on the uid after the hooks' ones.
    assert_eq!(runner.calls()[0].uid, 60000 + 1);
}

#[tokio::test]
async fn a_bot_the_language_layer_refuses_is_refused_with_its_line() {
    let runner = Scripted::answering(|_| HookOutcome::Error {
        error: HookError::Policy {
            line: Some(3),
            message: "Import of 'os' is not allowed".into(),
        },
    });
    let bots = Bots::with_runner(bots_config(1), runner);
    let e = bots
        .prepare(Some("import os".into()), None, None, false)
        .await
        .unwrap_err();
    assert_eq!(e.code, crate::channels::Code::BadRequest);
    assert!(
        e.message.contains("line 3") && e.message.contains("'os'"),
        "{e}"
    );
}

#[tokio::test]
async fn an_inspection_without_a_manifest_is_a_bot_error() {
    let bots = Bots::with_runner(bots_config(1), inspecting(None));
    let e = bots
        .prepare(Some("class X: pass".into()), None, None, false)
        .await
        .unwrap_err();
    assert_eq!(e.code, crate::channels::Code::BotError, "{e}");
}

#[tokio::test]
async fn a_bot_is_given_as_code_or_preset_within_the_size_limit() {
    let runner = inspecting(Some(json!({"name": "X", "hooks": []})));
    let bots = Bots::with_runner(bots_config(1), runner.clone());
    assert!(
        bots.prepare(None, None, None, false)
            .await
            .unwrap()
            .is_none()
    );
    let e = bots
        .prepare(Some("x".into()), Some("echo".into()), None, false)
        .await
        .unwrap_err();
    assert!(e.message.contains("not both"), "{e}");
    let big = "#".repeat(super::MAX_SOURCE_BYTES + 1);
    let e = bots
        .prepare(Some(big), None, None, false)
        .await
        .unwrap_err();
    assert!(e.message.contains("the limit is"), "{e}");
    let e = bots
        .prepare(None, Some("../etc/passwd".into()), None, false)
        .await
        .unwrap_err();
    assert!(e.message.contains("unknown bot_preset"), "{e}");
    assert!(runner.calls().is_empty(), "nothing reached the sandbox");
}

fn values(ms: &[MessageView]) -> Vec<Value> {
    ms.iter()
        .map(|m| serde_json::to_value(m).unwrap())
        .collect()
}

/// The state salt the store keeps for a bot (secret: never in a view).
async fn state_salt(w: &World, cid: &str, bot_id: &str) -> String {
    let (c, b) = (cid.to_string(), bot_id.to_string());
    w.t.store
        .read(move |tx: &dyn crate::store::ReadTx| tx.bot_runtime(&c, &b))
        .await
        .unwrap()
        .unwrap()
        .state_salt
}

#[tokio::test]
async fn every_bot_entry_records_its_cause_and_each_hook_its_state() {
    // Echo posts on messages only; every hook bumps `seen`.
    let runner = Scripted::answering(|job| match &job.hook {
        Hook::OnMessage { message } if message["body"] == "crash" => HookOutcome::Error {
            error: HookError::Exception {
                message: "boom".into(),
                traceback: String::new(),
            },
        },
        Hook::OnMessage { message } if message["body"] == "quiet" => ok(vec![], job.state.clone()),
        Hook::OnMessage { message } if message["body"] == "twice" => ok(
            vec![post("a", json!(1)), post("b", json!(2))],
            json!({"seen": 99}),
        ),
        _ => echo(job),
    });
    let w = world(runner).await;
    let (cid, _) = w.table(ALL_HOOKS).await;
    let hi = w.say(&w.alice, &cid, json!("hi")).await;
    let quiet = w.say(&w.alice, &cid, json!("quiet")).await;
    let crash = w.say(&w.alice, &cid, json!("crash")).await;
    let twice = w.say(&w.alice, &cid, json!("twice")).await;
    w.settled().await;
    let ms = w.transcript(&cid).await;
    let salt = state_salt(&w, &cid, "bot:ref").await;
    let hash_of = |state: Value| {
        crate::transcript::state_hash(&salt, &crate::transcript::CanonicalJson::of(&state))
    };
    let bots: Vec<(Option<i64>, Value, Option<String>)> = ms
        .iter()
        .filter(|m| m.sender == "bot:ref")
        .map(|m| (m.cause, m.body.clone().unwrap(), m.state_hash.clone()))
        .collect();
    let attach = ms
        .iter()
        .find(|m| m.body.as_ref().unwrap()["type"] == "bot:attach")
        .unwrap()
        .seq;
    let alice_seat = ms
        .iter()
        .find(|m| m.body.as_ref().unwrap()["type"] == "seat:filled")
        .unwrap()
        .seq;
    let state = |b: &str| json!({"type": "bot:state", "bot_id": b});
    assert_eq!(
        bots,
        vec![
            // on_init and on_join post nothing but change the state.
            (
                Some(attach),
                state("bot:ref"),
                Some(hash_of(json!({"seen": 1})))
            ),
            (
                Some(alice_seat),
                state("bot:ref"),
                Some(hash_of(json!({"seen": 2})))
            ),
            (
                Some(hi),
                json!({"type": "echo", "data": {"body": "hi"}}),
                Some(hash_of(json!({"seen": 3})))
            ),
            // "quiet" changed nothing and wrote nothing.
            (
                Some(crash),
                json!({"type": "bot:error", "bot_id": "bot:ref", "seq": crash,
                       "reason": "exception: boom"}),
                None
            ),
            // Two posts of one hook: the state hash on the last.
            (Some(twice), json!({"type": "a", "data": 1}), None),
            (
                Some(twice),
                json!({"type": "b", "data": 2}),
                Some(hash_of(json!({"seen": 99})))
            ),
        ]
    );
    assert!(quiet < crash);
    // Every member verifies the chain and its causal order.
    let head = crate::transcript::verify_chain(&cid, &values(&ms)).unwrap();
    assert_eq!(head, w.ch.view(&w.alice, &cid).await.unwrap().head_hash);
}

/// The race of the finding, made deterministic: the bot's commitment hook
/// (on_init, triggered by its `bot:attach`) is held while both players
/// guess, so the guesses land in the chain before the commitment. The chain
/// still shows that the commitment was made first: its `cause` is the
/// attach, earlier than both guesses, and the hints are caused by the
/// guesses. A changed cause breaks the chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guess_race_shows_the_commitment_caused_before_the_guesses() {
    let (release, held) = tokio::sync::oneshot::channel::<()>();
    let held = Arc::new(tokio::sync::Mutex::new(Some(held)));
    let runner = Scripted::with(move |job| {
        let held = held.clone();
        Box::pin(async move {
            match &job.hook {
                Hook::OnInit => {
                    if let Some(rx) = held.lock().await.take() {
                        let _ = rx.await;
                    }
                    ok(
                        vec![post("commit", json!({"commitment": "sha256(42|n)"}))],
                        json!({"target": 42}),
                    )
                }
                Hook::OnMessage { message } => ok(
                    vec![post(
                        "hint",
                        json!({"guess": message["body"], "hint": "higher"}),
                    )],
                    job.state.clone(),
                ),
                _ => ok(vec![], job.state.clone()),
            }
        })
    });
    let w = world(runner).await;
    let (cid, inv) = w.table(&["on_init", "on_message"]).await;
    w.ch.join(&w.bob, &inv).await.unwrap();
    let g1 = w.say(&w.alice, &cid, json!("guess 50")).await;
    let g2 = w.say(&w.bob, &cid, json!("guess 20")).await;
    release.send(()).unwrap();
    w.settled().await;
    let ms = w.transcript(&cid).await;
    let find = |kind: &str| -> Vec<MessageView> {
        ms.iter()
            .filter(|m| m.kind == MessageKind::Bot && m.body.as_ref().unwrap()["type"] == kind)
            .cloned()
            .collect()
    };
    let attach = ms
        .iter()
        .find(|m| m.body.as_ref().unwrap()["type"] == "bot:attach")
        .unwrap()
        .seq;
    let commit = &find("commit")[0];
    assert!(
        commit.seq > g2,
        "the race: the commitment landed after both guesses"
    );
    assert_eq!(commit.cause, Some(attach));
    assert!(commit.cause < Some(g1), "caused before the first guess");
    let hints: Vec<(i64, Option<i64>)> = find("hint").iter().map(|h| (h.seq, h.cause)).collect();
    assert_eq!(hints.len(), 2);
    assert_eq!(
        hints.iter().map(|h| h.1).collect::<Vec<_>>(),
        vec![Some(g1), Some(g2)]
    );
    assert!(
        hints.iter().all(|h| h.0 > commit.seq),
        "judged after the commitment"
    );
    let vals = values(&ms);
    crate::transcript::verify_chain(&cid, &vals).unwrap();

    // A tampered cause (the commitment "after" the guesses) is caught at
    // that entry.
    let mut tampered = vals.clone();
    let i = (commit.seq - 1) as usize;
    tampered[i]["cause"] = json!(g2);
    let e = crate::transcript::verify_chain(&cid, &tampered).unwrap_err();
    assert_eq!(
        (e.seq, e.reason.as_str()),
        (commit.seq, "hash does not match")
    );
}

#[tokio::test]
async fn a_bots_posts_count_against_its_channel_not_a_principal_and_overrunning_fails_the_hook() {
    use crate::config::QuotaConfig;
    use crate::quota::Quotas;
    // Each message gets a reply of about 1 KB.
    let runner = Scripted::answering(|job| match &job.hook {
        Hook::OnMessage { .. } => ok(vec![post("big", json!("x".repeat(1000)))], json!({})),
        _ => ok(Vec::new(), json!({})),
    });
    let t = TempStore::new();
    let quotas = Quotas::new(
        QuotaConfig {
            bytes_per_channel: 2500,
            bytes_per_principal_per_day: 100,
            ..QuotaConfig::unlimited()
        },
        None,
    );
    let ch = Channels::new(t.store.clone(), 64 * 1024, CancellationToken::new())
        .with_quotas(quotas.clone());
    let bots = Bots::with_runner(bots_config(2), runner.clone());
    let d = Dispatcher::start_with_quotas(t.store.clone(), bots, quotas)
        .await
        .unwrap();
    let w = World {
        alice: principal(&t.store, "alice").await,
        bob: principal(&t.store, "bob").await,
        t,
        ch,
        runner,
        d,
    };
    let (cid, _) = w.table(&["on_message"]).await;
    for m in ["a", "b", "c"] {
        // Alice's daily bytes (100) hold her short posts, however much the
        // bot says in reply: its bytes are the channel's.
        w.say(&w.alice, &cid, json!(m)).await;
        w.settled().await;
    }
    let ms = w.transcript(&cid).await;
    assert_eq!(
        of_kind(&ms, MessageKind::Bot).len(),
        2,
        "two replies fit in 2,500 bytes"
    );
    let errors = of_kind(&ms, MessageKind::Control);
    assert_eq!(errors.len(), 1, "{errors:?}");
    let reason = errors[0].body.as_ref().unwrap()["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.contains("bytes"), "{reason}");
    // The channel still takes short user posts; the day's limit is hers.
    w.say(&w.alice, &cid, json!("d")).await;
    let big =
        w.ch.post(&w.alice, &cid, None, &json!("y".repeat(200)), None)
            .await
            .unwrap_err();
    assert_eq!(big.code.as_str(), "RATE_LIMITED", "{big}");
}
