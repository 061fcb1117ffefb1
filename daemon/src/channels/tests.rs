//! `Channels` on a real, temporary SQLite store: identity and seats,
//! invites, private messages, cursors, limits, long-poll and the chain.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::model::{Created, Credential, MessageView, Synced};
use crate::testing::{TempStore, bot, principal};
use crate::transcript;
use serde_json::json;
use std::time::Duration;

struct Fixture {
    t: TempStore,
    ch: Channels,
    alice: Principal,
    bob: Principal,
    carol: Principal,
}

async fn fixture() -> Fixture {
    let t = TempStore::new();
    let ch = Channels::new(t.store.clone(), 1024, CancellationToken::new());
    Fixture {
        alice: principal(&t.store, "alice").await,
        bob: principal(&t.store, "bob").await,
        carol: principal(&t.store, "carol").await,
        ch,
        t,
    }
}

fn slots(list: &[&str]) -> Vec<SlotSpec> {
    list.iter().map(|s| SlotSpec::parse(s).unwrap()).collect()
}

fn request(list: &[&str], join_as: Option<&str>) -> NewChannelRequest {
    NewChannelRequest {
        name: "table".into(),
        slots: slots(list),
        join_as: join_as.map(str::to_string),
        allow_network: false,
        bot: None,
    }
}

fn invite<'a>(c: &'a Created, slot: &str) -> &'a str {
    &c.invites
        .iter()
        .find(|i| i.slot == slot)
        .unwrap()
        .invite_code
}

fn sync_req(cid: &str, cursor: Seq) -> SyncRequest {
    SyncRequest {
        channel_id: cid.to_string(),
        slot: None,
        cursor: Some(cursor),
        limit: None,
        wait: Some(Duration::ZERO),
    }
}

impl Fixture {
    /// A channel where alice (admin) sits at `alice`, bob at `bob`, and
    /// `carol` is open.
    async fn table(&self) -> Created {
        let c = self
            .ch
            .create(
                &self.alice,
                request(&["alice", "bob", "carol"], Some("alice")),
            )
            .await
            .unwrap();
        self.ch.join(&self.bob, invite(&c, "bob")).await.unwrap();
        c
    }

    async fn read(&self, who: &Principal, cid: &str, cursor: Seq) -> Result<Synced, ToolError> {
        self.ch
            .sync(who, sync_req(cid, cursor), None, &CancellationToken::new())
            .await
    }

    async fn all(&self, who: &Principal, cid: &str) -> Vec<MessageView> {
        self.read(who, cid, 0).await.unwrap().messages
    }
}

fn bodies(ms: &[MessageView]) -> Vec<Value> {
    ms.iter().filter_map(|m| m.body.clone()).collect()
}

fn events(ms: &[MessageView]) -> Vec<String> {
    ms.iter()
        .filter(|m| m.kind == MessageKind::System)
        .map(|m| {
            m.body.as_ref().unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn create_hands_out_one_invite_per_open_player_slot() {
    let f = fixture().await;
    let c =
        f.ch.create(&f.alice, request(&["invite:x", "y", "bot:ref"], None))
            .await
            .unwrap();
    let slots: Vec<&str> = c.invites.iter().map(|i| i.slot.as_str()).collect();
    assert_eq!(slots, vec!["x", "y"]);
    assert!(
        c.invites
            .iter()
            .all(|i| i.invite_code.starts_with("mcpmp_inv_"))
    );
    assert!(c.seat.is_none());
    assert!(c.view.you_are_admin);
    assert_eq!(c.view.message_count, 1);
    let labels: Vec<&str> = c.view.slots.iter().map(|s| s.label.as_str()).collect();
    assert_eq!(labels, vec!["x", "y", "bot:ref"]);
    assert!(c.view.slots.iter().all(|s| !s.filled && !s.yours));
}

#[tokio::test]
async fn join_as_seats_the_creator_without_an_invite_for_that_slot() {
    let f = fixture().await;
    let c = f.table().await;
    let seat = c.seat.as_ref().unwrap();
    assert_eq!(seat.slot, "alice");
    assert!(seat.rejoin_token.starts_with("mcpmp_rj_"));
    assert!(!c.invites.iter().any(|i| i.slot == "alice"));
    let me = c.view.slots.iter().find(|s| s.label == "alice").unwrap();
    assert!(me.filled && me.yours && me.admin);
    let ms = f.all(&f.alice, &c.channel_id).await;
    assert_eq!(
        events(&ms),
        vec!["channel:created", "seat:filled", "seat:filled"]
    );
}

#[tokio::test]
async fn a_bot_at_creation_is_announced_before_the_creators_seat() {
    let f = fixture().await;
    let mut req = request(&["alice"], Some("alice"));
    req.bot = Some(bot("Echo", &["on_message"]));
    let c = f.ch.create(&f.alice, req).await.unwrap();
    assert!(
        c.view
            .slots
            .iter()
            .any(|s| s.label == "bot:referee" && s.filled)
    );
    assert_eq!(c.view.bots[0].bot_id, "bot:referee");
    let ms = f.all(&f.alice, &c.channel_id).await;
    assert_eq!(
        events(&ms),
        vec![
            "channel:created",
            "bot:attach",
            "bot:manifest",
            "seat:filled"
        ]
    );
    let attach = ms[1].body.as_ref().unwrap();
    assert_eq!(attach["code_hash"], json!(c.view.bots[0].code_hash));
    assert_eq!(ms[2].body.as_ref().unwrap()["hooks"], json!(["on_message"]));
}

#[tokio::test]
async fn create_refuses_bad_names_and_slot_lists() {
    let f = fixture().await;
    for (name, list, join_as, code) in [
        ("  ", vec!["a"], None, Code::BadRequest),
        ("ok", vec!["bot:only"], None, Code::BadRequest),
        ("ok", vec!["a", "invite:a"], None, Code::BadRequest),
        ("ok", vec!["a"], Some("b"), Code::UnknownSlot),
        ("ok", vec!["a", "bot:r"], Some("bot:r"), Code::UnknownSlot),
    ] {
        let mut req = request(&list, join_as);
        req.name = name.into();
        let e = f.ch.create(&f.alice, req).await.unwrap_err();
        assert_eq!(e.code, code, "{name:?} {list:?} {join_as:?}: {e}");
    }
    let many: Vec<String> = (0..=rules::MAX_SLOTS).map(|i| format!("p{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let e =
        f.ch.create(&f.alice, request(&many, None))
            .await
            .unwrap_err();
    assert!(e.message.contains("at most 16 slots"), "{e}");
    assert!(f.ch.list(&f.alice).await.unwrap().channels.is_empty());
}

#[tokio::test]
async fn an_invite_fills_its_seat_once() {
    let f = fixture().await;
    let c = f.table().await;
    let again = f.ch.join(&f.carol, invite(&c, "bob")).await.unwrap_err();
    assert_eq!(again.code, Code::InviteInvalid);
    let j = f.ch.join(&f.carol, invite(&c, "carol")).await.unwrap();
    assert_eq!((j.slot.as_str(), j.moved), ("carol", false));
    assert!(j.view.slots.iter().any(|s| s.label == "carol" && s.yours));
    assert_eq!(j.bots, j.view.bots);
}

#[tokio::test]
async fn a_code_of_the_wrong_shape_is_refused_before_any_lookup() {
    let f = fixture().await;
    for code in ["", "hello", "mcpmp_at_token", "mcpmp_inv_"] {
        let e = f.ch.join(&f.carol, code).await.unwrap_err();
        assert_eq!(e.code, Code::InviteInvalid, "{code:?}");
    }
    let e = f.ch.join(&f.carol, "mcpmp_rj_nope").await.unwrap_err();
    assert_eq!(e.code, Code::RejoinTokenInvalid);
}

#[tokio::test]
async fn rejoin_moves_the_seat_and_spends_the_token() {
    let f = fixture().await;
    let c = f.table().await;
    let cid = &c.channel_id;
    let token = c.seat.as_ref().unwrap().rejoin_token.clone();
    let moved = f.ch.join(&f.carol, &token).await.unwrap();
    assert_eq!((moved.slot.as_str(), moved.moved), ("alice", true));
    assert_ne!(moved.rejoin_token, token);
    // The old holder lost the seat (she stays admin: that is the channel's).
    let e =
        f.ch.post(&f.alice, cid, None, &json!("hi"), None)
            .await
            .unwrap_err();
    assert_eq!(e.code, Code::NotMember);
    assert!(f.ch.view(&f.alice, cid).await.unwrap().you_are_admin);
    let p =
        f.ch.post(&f.carol, cid, None, &json!("moved"), None)
            .await
            .unwrap();
    assert_eq!(p.sender, "alice");
    let e = f.ch.join(&f.bob, &token).await.unwrap_err();
    assert_eq!(e.code, Code::RejoinTokenInvalid);
    let ms = f.all(&f.bob, cid).await;
    assert_eq!(events(&ms).last().unwrap(), "seat:moved");
}

#[tokio::test]
async fn strangers_see_nothing_of_a_channel() {
    let f = fixture().await;
    let c = f.table().await;
    let cid = &c.channel_id;
    assert_eq!(
        f.read(&f.carol, cid, 0).await.unwrap_err().code,
        Code::NotMember
    );
    assert_eq!(
        f.ch.view(&f.carol, cid).await.unwrap_err().code,
        Code::NotMember
    );
    let e =
        f.ch.post(&f.carol, cid, None, &json!("let me in"), None)
            .await
            .unwrap_err();
    assert_eq!(e.code, Code::NotMember);
    let e = f.ch.bot_code(&f.carol, cid, "bot:x").await.unwrap_err();
    assert_eq!(e.code, Code::NotMember);
    assert!(f.ch.snapshot(&f.carol, cid).await.is_err());
    assert!(f.ch.list(&f.carol).await.unwrap().channels.is_empty());
    let e = f.ch.view(&f.carol, "ch_missing").await.unwrap_err();
    assert_eq!(e.code, Code::ChannelNotFound);
}

#[tokio::test]
async fn a_principal_with_two_seats_says_which_one_acts() {
    let f = fixture().await;
    let c =
        f.ch.create(&f.alice, request(&["red", "blue"], None))
            .await
            .unwrap();
    let cid = &c.channel_id;
    for i in &c.invites {
        f.ch.join(&f.bob, &i.invite_code).await.unwrap();
    }
    let e =
        f.ch.post(&f.bob, cid, None, &json!("who?"), None)
            .await
            .unwrap_err();
    assert_eq!(e.code, Code::SlotRequired);
    assert_eq!(e.data.unwrap()["your_seats"], json!(["red", "blue"]));
    let e =
        f.ch.post(&f.bob, cid, Some("green"), &json!("x"), None)
            .await
            .unwrap_err();
    assert_eq!(e.code, Code::UnknownSlot);
    let p =
        f.ch.post(&f.bob, cid, Some("red"), &json!("red speaks"), None)
            .await
            .unwrap();
    assert_eq!(p.sender, "red");
    let mut req = sync_req(cid, p.seq - 1);
    req.slot = Some("blue".into());
    let s =
        f.ch.sync(&f.bob, req, None, &CancellationToken::new())
            .await
            .unwrap();
    assert_eq!(s.as_seat, "blue");
    assert_eq!(s.messages[0].sender, "red");
    assert_eq!(
        f.read(&f.bob, cid, 0).await.unwrap_err().code,
        Code::SlotRequired
    );
}

#[tokio::test]
async fn a_private_message_is_redacted_for_everyone_but_its_sender_and_recipients() {
    let f = fixture().await;
    let c = f.table().await;
    let cid = &c.channel_id;
    f.ch.join(&f.carol, invite(&c, "carol")).await.unwrap();
    let secret = json!({"secret": "under the mat"});
    let p =
        f.ch.post(
            &f.alice,
            cid,
            None,
            &secret,
            Some(vec!["bob".into(), "bob".into()]),
        )
        .await
        .unwrap();
    let as_bob = f
        .read(&f.bob, cid, p.seq - 1)
        .await
        .unwrap()
        .messages
        .remove(0);
    let as_alice = f
        .read(&f.alice, cid, p.seq - 1)
        .await
        .unwrap()
        .messages
        .remove(0);
    let as_carol = f
        .read(&f.carol, cid, p.seq - 1)
        .await
        .unwrap()
        .messages
        .remove(0);
    for m in [&as_bob, &as_alice] {
        assert_eq!(m.body.as_ref(), Some(&secret));
        assert_eq!(
            m.to,
            Some(vec!["bob".to_string()]),
            "recipients deduplicated"
        );
        assert!(m.body_salt.is_some() && m.redacted.is_none());
    }
    assert_eq!(as_carol.body, None);
    assert_eq!(as_carol.body_salt, None);
    assert_eq!(as_carol.redacted, Some(true));
    let salt = as_bob.body_salt.clone().unwrap();
    let hash = as_carol.body_hash.clone().unwrap();
    let canon = transcript::canonical(&secret);
    assert_eq!(hash, transcript::private_body_hash(&salt, &canon));
    assert_ne!(hash, transcript::sha256_tagged(canon.as_bytes()), "salted");
    let text = serde_json::to_string(&as_carol).unwrap();
    assert!(!text.contains("under the mat"));
}

#[tokio::test]
async fn each_private_message_gets_its_own_salt() {
    let f = fixture().await;
    let c = f.table().await;
    let cid = &c.channel_id;
    let body = json!({"bid": 450});
    let a =
        f.ch.post(&f.alice, cid, None, &body, Some(vec!["bob".into()]))
            .await
            .unwrap();
    f.ch.post(&f.alice, cid, None, &body, Some(vec!["bob".into()]))
        .await
        .unwrap();
    let ms = f.read(&f.carol, cid, 0).await;
    assert!(ms.is_err(), "carol holds no seat yet");
    let ms = f.read(&f.bob, cid, a.seq - 1).await.unwrap().messages;
    assert_ne!(ms[0].body_salt, ms[1].body_salt);
}

#[tokio::test]
async fn recipients_must_be_slots_of_the_channel() {
    let f = fixture().await;
    let c = f.table().await;
    let cid = &c.channel_id;
    let e =
        f.ch.post(&f.alice, cid, None, &json!("x"), Some(vec!["dave".into()]))
            .await
            .unwrap_err();
    assert_eq!(e.code, Code::UnknownSlot);
    assert_eq!(e.data.unwrap()["slots"], json!(["alice", "bob", "carol"]));
    let e =
        f.ch.post(&f.alice, cid, None, &json!("x"), Some(vec![]))
            .await
            .unwrap_err();
    assert_eq!(e.code, Code::BadRequest);
    // An open seat may receive: it reads the message once filled.
    f.ch.post(
        &f.alice,
        cid,
        None,
        &json!("for later"),
        Some(vec!["carol".into()]),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn bodies_are_a_non_empty_string_or_an_object_within_the_limit() {
    let f = fixture().await;
    let c = f.table().await;
    let cid = &c.channel_id;
    for bad in [json!(""), json!(3), json!([1]), json!(null), json!(true)] {
        let e =
            f.ch.post(&f.alice, cid, None, &bad, None)
                .await
                .unwrap_err();
        assert_eq!(e.code, Code::BadRequest, "{bad}");
    }
    // The fixture's limit is 1024 bytes of canonical JSON: a string of 1022
    // characters plus its quotes fits, one more does not.
    let fits = json!("x".repeat(1022));
    f.ch.post(&f.alice, cid, None, &fits, None).await.unwrap();
    let over = json!("x".repeat(1023));
    let e =
        f.ch.post(&f.alice, cid, None, &over, None)
            .await
            .unwrap_err();
    assert!(e.message.contains("1025 bytes"), "{e}");
}

#[tokio::test]
async fn the_cursor_is_the_last_seq_returned_and_limits_apply() {
    let f = fixture().await;
    let c = f.table().await;
    let cid = &c.channel_id;
    let head = f.ch.view(&f.alice, cid).await.unwrap().message_count;
    for i in 0..5 {
        f.ch.post(&f.alice, cid, None, &json!({"n": i}), None)
            .await
            .unwrap();
    }
    let mut req = sync_req(cid, head);
    req.limit = Some(2);
    let s =
        f.ch.sync(&f.bob, req, None, &CancellationToken::new())
            .await
            .unwrap();
    assert_eq!(bodies(&s.messages), vec![json!({"n": 0}), json!({"n": 1})]);
    assert_eq!(s.cursor, head + 2);
    let s = f.read(&f.bob, cid, s.cursor).await.unwrap();
    assert_eq!(s.messages.len(), 3);
    assert_eq!(s.cursor, head + 5);
    assert_eq!(s.view.message_count, head + 5);
    let s = f.read(&f.bob, cid, s.cursor + 10).await.unwrap();
    assert!(s.messages.is_empty());
    assert_eq!(
        s.cursor,
        head + 15,
        "a cursor past the end comes back as given"
    );
    // A negative cursor is refused; limits and waits outside their range are
    // brought into it (the tool layer tells the caller).
    let mut req = sync_req(cid, -1);
    req.limit = None;
    let e =
        f.ch.sync(&f.bob, req, None, &CancellationToken::new())
            .await
            .unwrap_err();
    assert_eq!(e.code, Code::BadRequest);
    let mut req = sync_req(cid, head);
    req.limit = Some(0);
    let s =
        f.ch.sync(&f.bob, req, None, &CancellationToken::new())
            .await
            .unwrap();
    assert_eq!((s.messages.len(), s.more), (1, true), "limit 0 reads one");
    let mut req = sync_req(cid, 0);
    req.limit = Some(rules::MAX_SYNC_LIMIT + 1);
    req.wait = Some(MAX_WAIT + Duration::from_secs(3600));
    let s =
        f.ch.sync(&f.bob, req, None, &CancellationToken::new())
            .await
            .unwrap();
    assert_eq!(s.cursor, head + 5);
    assert!(!s.more);
}

/// Waits (bounded) until `n` syncs are parked in the channel service.
async fn parked(ch: &Channels, n: i64) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while ch.waiting() < n {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the sync never started waiting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_sync_wakes_on_the_commit() {
    let f = fixture().await;
    let c = f.table().await;
    let cid = c.channel_id.clone();
    let head = f.ch.view(&f.bob, &cid).await.unwrap().message_count;
    let (ch, bob) = (f.ch.clone(), f.bob.clone());
    let mut req = sync_req(&cid, head);
    req.wait = Some(Duration::from_secs(20));
    let waiter = tokio::spawn(async move {
        let t0 = std::time::Instant::now();
        let r = ch.sync(&bob, req, None, &CancellationToken::new()).await;
        (r, t0.elapsed())
    });
    parked(&f.ch, 1).await;
    f.ch.post(&f.alice, &cid, None, &json!({"move": "e4"}), None)
        .await
        .unwrap();
    let (r, took) = waiter.await.unwrap();
    assert_eq!(bodies(&r.unwrap().messages), vec![json!({"move": "e4"})]);
    assert!(
        took < Duration::from_secs(10),
        "woken by the commit, not the deadline"
    );
    assert_eq!(f.ch.waiting(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_kicked_while_waiting_gets_not_member_and_nothing_after_the_kick() {
    let f = fixture().await;
    let c = f.table().await;
    let cid = c.channel_id.clone();
    let head = f.ch.view(&f.bob, &cid).await.unwrap().message_count;
    let (ch, bob) = (f.ch.clone(), f.bob.clone());
    let mut req = sync_req(&cid, head);
    req.wait = Some(Duration::from_secs(20));
    let waiter =
        tokio::spawn(async move { ch.sync(&bob, req, None, &CancellationToken::new()).await });
    parked(&f.ch, 1).await;
    let kicked =
        f.ch.update(&f.alice, &cid, UpdateOp::Kick { slot: "bob".into() })
            .await
            .unwrap();
    f.ch.post(&f.alice, &cid, None, &json!("after the kick"), None)
        .await
        .unwrap();
    let e = waiter.await.unwrap().unwrap_err();
    assert_eq!(e.code, Code::NotMember);
    // The seat is open again, with a fresh invite.
    let j =
        f.ch.join(&f.carol, &kicked.invite.unwrap().invite_code)
            .await
            .unwrap();
    assert_eq!(j.slot, "bob");
    let s = f.read(&f.carol, &cid, head).await.unwrap();
    assert_eq!(events(&s.messages), vec!["seat:kicked", "seat:filled"]);
}

/// Waiters woken by one commit share an answer only when they see the
/// same: two of bob's calls get one delivery, carol's (who may not read a
/// message private to bob) gets her own, redacted, and a call of bob's whose
/// token was revoked while it waited gets `TOKEN_INVALID`, though it would
/// have seen what bob's other calls see.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_woken_together_share_an_answer_only_when_they_see_the_same() {
    let f = fixture().await;
    let c = f.table().await;
    let cid = c.channel_id.clone();
    f.ch.join(&f.carol, invite(&c, "carol")).await.unwrap();
    // bob again, through a second token of his.
    let bob_elsewhere = principal(&f.t.store, "bob").await;
    assert_eq!(bob_elsewhere.id, f.bob.id);
    let head = f.ch.view(&f.bob, &cid).await.unwrap().message_count;
    let wait = |who: &Principal, slot: Option<&str>| {
        let (ch, who) = (f.ch.clone(), who.clone());
        let mut req = sync_req(&cid, head);
        req.slot = slot.map(str::to_string);
        req.wait = Some(Duration::from_secs(20));
        tokio::spawn(async move {
            ch.sync_shared(&who, req, None, &CancellationToken::new())
                .await
        })
    };
    let waiters = [
        wait(&f.bob, None),
        wait(&f.bob, Some("bob")),
        wait(&f.carol, None),
        wait(&f.carol, None),
        wait(&f.alice, None),
    ];
    let revoked = wait(&bob_elsewhere, None);
    parked(&f.ch, 6).await;
    let Credential::Token(hash) = bob_elsewhere.credential.clone() else {
        unreachable!()
    };
    f.t.store
        .sql_write(move |c| {
            c.execute(
                "UPDATE access_tokens SET revoked = 1 WHERE token_hash = ?1",
                rusqlite::params![hash],
            )?;
            Ok::<_, crate::store::StoreError>(())
        })
        .await
        .unwrap();
    f.ch.post(
        &f.alice,
        &cid,
        None,
        &json!("for bob only"),
        Some(vec!["bob".into()]),
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    for w in waiters {
        let d = tokio::time::timeout(Duration::from_secs(10), w)
            .await
            .expect("a waiter was not woken by the post")
            .unwrap()
            .unwrap();
        got.push(d);
    }
    let e = revoked.await.unwrap().unwrap_err();
    assert_eq!(e.code, Code::TokenInvalid, "{e}");
    let [bob1, bob2, carol1, carol2, alice] = &got[..] else {
        unreachable!()
    };
    // Whether two waiters land in one read depends on timing (the test
    // below makes one batch on purpose); two reads sign their heads apart,
    // so only the time and signature of the head may differ.
    let unsigned = |d: &Delivery| {
        let mut s = d.synced().clone();
        if let Some(h) = &mut s.signed_head {
            h.time.clear();
            h.signature.clear();
        }
        s
    };
    assert_eq!(unsigned(bob1), unsigned(bob2));
    assert_eq!(unsigned(carol1), unsigned(carol2));
    assert_eq!(bodies(&bob1.synced().messages), vec![json!("for bob only")]);
    assert_eq!(
        bodies(&alice.synced().messages),
        vec![json!("for bob only")]
    );
    let redacted = &carol1.synced().messages;
    assert_eq!(redacted.len(), 1);
    assert!(redacted[0].body.is_none(), "carol may not read it");
    assert_eq!(carol1.synced().as_seat, "carol");
    let yours = |d: &Delivery| {
        d.synced()
            .view
            .slots
            .iter()
            .filter(|s| s.yours)
            .map(|s| s.label.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(yours(bob1), vec!["bob"]);
    assert_eq!(yours(carol1), vec!["carol"]);
    // Each is signed, at the message it delivers.
    for d in &got {
        let h = d.synced().signed_head.as_ref().unwrap();
        assert_eq!(h.seq, head + 1);
    }
}

/// Answers `reads` as one wake-up's batch, in one snapshot: the answers,
/// and for each read (in order) the index of the answer it got.
async fn answer_batch(
    f: &Fixture,
    cid: &str,
    reads: Vec<shared::SyncRead>,
) -> (shared::Answered, Vec<usize>) {
    let batch: shared::Queue = reads
        .into_iter()
        .map(|r| (r, tokio::sync::oneshot::channel().0))
        .collect();
    let key = cid.to_string();
    let answered =
        f.t.store
            .read(move |tx: &dyn ReadTx| Ok::<_, ToolError>(shared::answer_all(tx, &key, batch)))
            .await
            .unwrap();
    let at = answered
        .replies
        .iter()
        .map(|(_, o)| o.clone().unwrap().unwrap())
        .collect();
    (answered, at)
}

/// One batch of reads, as a wake-up queues them: the waiters that see the
/// same share one answer, and only they.
#[tokio::test]
async fn one_batch_builds_one_answer_per_principal_seat_and_page() {
    let f = fixture().await;
    let c = f.table().await;
    let cid = c.channel_id.clone();
    f.ch.join(&f.carol, invite(&c, "carol")).await.unwrap();
    f.ch.post(
        &f.alice,
        &cid,
        None,
        &json!("for bob only"),
        Some(vec!["bob".into()]),
    )
    .await
    .unwrap();
    let head = f.ch.view(&f.bob, &cid).await.unwrap().message_count;
    let read = |who: &Principal, slot: Option<&str>, cursor: Seq| shared::SyncRead {
        who: who.clone(),
        slot: slot.map(str::to_string),
        cursor,
        limit: 50,
        max_bytes: 1 << 20,
        last_read: false,
    };
    let reads = vec![
        read(&f.bob, None, head - 1),
        read(&f.carol, None, head - 1),
        read(&f.bob, Some("bob"), head - 1),
        read(&f.carol, None, head - 1),
        read(&f.bob, None, head - 2),
        read(&f.alice, None, head - 1),
    ];
    let (answered, at) = answer_batch(&f, &cid, reads).await;
    assert_eq!(at[0], at[2], "bob, by default or by name, at one cursor");
    assert_eq!(at[1], at[3], "carol twice");
    let distinct: std::collections::HashSet<usize> = at.iter().copied().collect();
    assert_eq!(distinct.len(), 4, "{at:?}");
    assert_eq!(answered.answers.len(), 4);
    let bob = &answered.answers[at[0]];
    let carol = &answered.answers[at[1]];
    assert_eq!(bodies(&bob.messages), vec![json!("for bob only")]);
    assert!(carol.messages[0].body.is_none(), "carol may not read it");
    assert_eq!(answered.answers[at[4]].messages.len(), 2);
}

/// Parks bob in a 20 s sync, lets `meanwhile` happen, then alice posts:
/// what does bob's waiting call return?
async fn bob_waits_while<F, Fut>(f: &Fixture, meanwhile: F) -> Result<Synced, ToolError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let c = f.table().await;
    let cid = c.channel_id.clone();
    let head = f.ch.view(&f.bob, &cid).await.unwrap().message_count;
    let (ch, bob) = (f.ch.clone(), f.bob.clone());
    let mut req = sync_req(&cid, head);
    req.wait = Some(Duration::from_secs(20));
    let waiter =
        tokio::spawn(async move { ch.sync(&bob, req, None, &CancellationToken::new()).await });
    parked(&f.ch, 1).await;
    meanwhile().await;
    f.ch.post(&f.alice, &cid, None, &json!("after it"), None)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the waiter was not woken by the post")
        .unwrap()
}

/// The attack: bob's token is revoked (`token revoke bob`) while his
/// sync_messages waits; the next message must not reach him. Stopped by the
/// credential check in the snapshot of every read (`rules::require_credential`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_whose_token_is_revoked_gets_token_invalid_and_nothing_after() {
    let f = fixture().await;
    let store = f.t.store.clone();
    let e = bob_waits_while(&f, || async move {
        let n = crate::store::principals::revoke_cli_tokens(&store, "bob")
            .await
            .unwrap();
        assert_eq!(n, 1);
    })
    .await
    .unwrap_err();
    assert_eq!(e.code, Code::TokenInvalid, "{e}");
}

/// The same for a token that expires while the call waits (an OAuth access
/// token's lifetime ends mid-wait).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_whose_token_expires_gets_token_invalid() {
    let f = fixture().await;
    let (store, bob) = (f.t.store.clone(), f.bob.clone());
    let e = bob_waits_while(&f, || async move {
        store
            .sql_write(move |c| {
                c.execute(
                    "UPDATE access_tokens SET expires_at = 1 WHERE principal_id = ?1",
                    rusqlite::params![bob.id],
                )?;
                Ok::<_, crate::store::StoreError>(())
            })
            .await
            .unwrap();
    })
    .await
    .unwrap_err();
    assert_eq!(e.code, Code::TokenInvalid, "{e}");
}

/// And the control: an untouched waiter gets the message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_in_good_standing_gets_the_message() {
    let f = fixture().await;
    let s = bob_waits_while(&f, || async {}).await.unwrap();
    assert_eq!(bodies(&s.messages), vec![json!("after it")]);
}

#[tokio::test]
async fn a_cancelled_sync_returns_at_once_with_what_there_is() {
    let f = fixture().await;
    let c = f.table().await;
    let cancel = CancellationToken::new();
    cancel.cancel();
    let mut req = sync_req(&c.channel_id, 1000);
    req.wait = Some(Duration::from_secs(20));
    let s = tokio::time::timeout(
        Duration::from_secs(5),
        f.ch.sync(&f.bob, req, None, &cancel),
    )
    .await
    .expect("a cancelled sync must not wait")
    .unwrap();
    assert!(s.messages.is_empty());
    assert_eq!(s.as_seat, "bob");
}

#[tokio::test]
async fn a_waiting_sync_reports_progress() {
    let mut f = fixture().await;
    f.ch.progress_every = Duration::from_millis(20);
    let c = f.table().await;
    let mut req = sync_req(&c.channel_id, 1000);
    req.wait = Some(Duration::from_millis(90));
    let mut ticks = Vec::new();
    let mut report = |n: u32| ticks.push(n);
    let s =
        f.ch.sync(&f.bob, req, Some(&mut report), &CancellationToken::new())
            .await
            .unwrap();
    assert!(s.messages.is_empty());
    assert!(ticks.len() >= 3, "{ticks:?}");
    assert_eq!(ticks[..3], [1, 2, 3]);
}

#[tokio::test]
async fn new_invite_replaces_an_open_seats_invite_and_refuses_a_held_one() {
    let f = fixture().await;
    let c = f.table().await;
    let cid = &c.channel_id;
    let fresh =
        f.ch.update(
            &f.alice,
            cid,
            UpdateOp::NewInvite {
                slot: "carol".into(),
            },
        )
        .await
        .unwrap();
    let code = fresh.invite.unwrap().invite_code;
    assert_eq!(
        f.ch.join(&f.carol, invite(&c, "carol"))
            .await
            .unwrap_err()
            .code,
        Code::InviteInvalid
    );
    f.ch.join(&f.carol, &code).await.unwrap();
    let e =
        f.ch.update(&f.alice, cid, UpdateOp::NewInvite { slot: "bob".into() })
            .await
            .unwrap_err();
    assert_eq!(e.code, Code::SlotAlreadyFilled);
}

#[tokio::test]
async fn only_the_admin_updates_and_only_player_slots_are_kicked() {
    let f = fixture().await;
    let mut req = request(&["alice", "bob", "bot:r"], Some("alice"));
    req.bot = Some(bot("R", &[]));
    let c = f.ch.create(&f.alice, req).await.unwrap();
    let cid = &c.channel_id;
    f.ch.join(&f.bob, invite(&c, "bob")).await.unwrap();
    for who in [&f.bob, &f.carol] {
        let e = f.ch.update(who, cid, UpdateOp::Close).await.unwrap_err();
        assert_eq!(e.code, Code::NotAdmin);
    }
    for slot in ["bot:r", "nobody"] {
        let e =
            f.ch.update(&f.alice, cid, UpdateOp::Kick { slot: slot.into() })
                .await
                .unwrap_err();
        assert_eq!(e.code, Code::UnknownSlot, "{slot}");
    }
    let e =
        f.ch.update(&f.alice, "ch_nope", UpdateOp::Close)
            .await
            .unwrap_err();
    assert_eq!(e.code, Code::ChannelNotFound);
}

#[tokio::test]
async fn rename_is_announced_and_validated() {
    let f = fixture().await;
    let c = f.table().await;
    let cid = &c.channel_id;
    let r =
        f.ch.update(
            &f.alice,
            cid,
            UpdateOp::Rename {
                name: "  club 2 ".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(r.renamed.as_deref(), Some("club 2"));
    assert_eq!(f.ch.view(&f.bob, cid).await.unwrap().name, "club 2");
    let ms = f.all(&f.bob, cid).await;
    assert_eq!(
        ms.last().unwrap().body,
        Some(json!({"type": "channel:renamed", "name": "club 2"}))
    );
    let long = "x".repeat(rules::MAX_NAME_CHARS + 1);
    let e =
        f.ch.update(&f.alice, cid, UpdateOp::Rename { name: long })
            .await
            .unwrap_err();
    assert_eq!(e.code, Code::BadRequest);
}

#[tokio::test]
async fn a_closed_channel_is_read_only_and_its_invites_die() {
    let f = fixture().await;
    let c = f.table().await;
    let cid = &c.channel_id;
    f.ch.update(&f.alice, cid, UpdateOp::Close).await.unwrap();
    let again = f.ch.update(&f.alice, cid, UpdateOp::Close).await.unwrap();
    assert_eq!(again.closed, Some(true));
    let e =
        f.ch.post(&f.bob, cid, None, &json!("anyone?"), None)
            .await
            .unwrap_err();
    assert_eq!(e.code, Code::ChannelClosed);
    let e = f.ch.join(&f.carol, invite(&c, "carol")).await.unwrap_err();
    assert_eq!(
        e.code,
        Code::InviteInvalid,
        "open invites are dropped at close"
    );
    let token = c.seat.as_ref().unwrap().rejoin_token.clone();
    let e = f.ch.join(&f.carol, &token).await.unwrap_err();
    assert_eq!(e.code, Code::ChannelClosed);
    let s = f.read(&f.bob, cid, 0).await.unwrap();
    assert!(s.view.closed);
    assert_eq!(
        events(&s.messages)
            .iter()
            .filter(|e| *e == "channel:closed")
            .count(),
        1,
        "closing twice announces once"
    );
}

#[tokio::test]
async fn list_and_view_say_what_is_yours() {
    let f = fixture().await;
    let c =
        f.ch.create(&f.alice, request(&["p1", "p2"], None))
            .await
            .unwrap();
    f.ch.join(&f.bob, invite(&c, "p2")).await.unwrap();
    let mine = f.ch.list(&f.alice).await.unwrap().channels;
    assert_eq!(mine.len(), 1);
    assert!(mine[0].admin && mine[0].your_seats.is_empty());
    let bobs = f.ch.list(&f.bob).await.unwrap().channels;
    assert_eq!(bobs[0].your_seats, vec!["p2".to_string()]);
    assert!(!bobs[0].admin);
    let v = f.ch.view(&f.bob, &c.channel_id).await.unwrap();
    let p2 = v.slots.iter().find(|s| s.label == "p2").unwrap();
    assert!(p2.yours && p2.filled && !p2.admin);
    assert!(!v.you_are_admin);
    // The admin without a seat sees the view but reads no messages.
    let snap = f.ch.snapshot(&f.alice, &c.channel_id).await.unwrap();
    assert_eq!(snap.seat, None);
    assert!(snap.messages.is_empty());
    let snap = f.ch.snapshot(&f.bob, &c.channel_id).await.unwrap();
    assert_eq!(snap.seat.as_deref(), Some("p2"));
    assert_eq!(snap.messages.len() as Seq, snap.view.message_count);
}

#[tokio::test]
async fn every_member_can_verify_the_whole_chain() {
    let f = fixture().await;
    let c = f.table().await;
    let cid = &c.channel_id;
    f.ch.join(&f.carol, invite(&c, "carol")).await.unwrap();
    f.ch.post(&f.alice, cid, None, &json!("hello"), None)
        .await
        .unwrap();
    f.ch.post(
        &f.alice,
        cid,
        None,
        &json!({"é": [1, 2.5]}),
        Some(vec!["bob".into()]),
    )
    .await
    .unwrap();
    f.ch.post(&f.bob, cid, None, &json!("bye"), None)
        .await
        .unwrap();
    for who in [&f.alice, &f.bob, &f.carol] {
        let s = f.read(who, cid, 0).await.unwrap();
        let values: Vec<Value> = s
            .messages
            .iter()
            .map(|m| serde_json::to_value(m).unwrap())
            .collect();
        let head = transcript::verify_chain(cid, &values).unwrap();
        assert_eq!(head, s.view.head_hash);
        let mut tampered = values.clone();
        tampered[4]["body"] = json!("hullo");
        assert_eq!(transcript::verify_chain(cid, &tampered).unwrap_err().seq, 5);
    }
}

#[tokio::test]
async fn attaching_a_bot_is_for_the_admin_of_an_open_channel() {
    let f = fixture().await;
    let c = f.table().await;
    let cid = &c.channel_id;
    assert_eq!(
        f.ch.bot_admin(&f.bob, cid).await.unwrap_err().code,
        Code::NotAdmin
    );
    assert_eq!(
        f.ch.bot_admin(&f.carol, cid).await.unwrap_err().code,
        Code::NotMember
    );
    assert!(!f.ch.bot_admin(&f.alice, cid).await.unwrap().allow_network);
    let e =
        f.ch.attach_bot(&f.bob, cid, None, bot("Judge", &[]))
            .await
            .unwrap_err();
    assert_eq!(e.code, Code::NotAdmin);
    let a =
        f.ch.attach_bot(&f.alice, cid, None, bot("Judge", &["on_init"]))
            .await
            .unwrap();
    assert_eq!(a.bot_id, "bot:judge");
    let e =
        f.ch.attach_bot(&f.alice, cid, Some("judge".into()), bot("Other", &[]))
            .await
            .unwrap_err();
    assert_eq!(e.code, Code::SlotAlreadyFilled);
    let e =
        f.ch.attach_bot(&f.alice, cid, Some("bad name".into()), bot("X", &[]))
            .await
            .unwrap_err();
    assert_eq!(e.code, Code::BadRequest);
    let v = f.ch.view(&f.bob, cid).await.unwrap();
    assert!(v.slots.iter().any(|s| s.label == "bot:judge" && s.filled));
    f.ch.update(&f.alice, cid, UpdateOp::Close).await.unwrap();
    let e =
        f.ch.attach_bot(&f.alice, cid, Some("late".into()), bot("Late", &[]))
            .await
            .unwrap_err();
    assert_eq!(e.code, Code::ChannelClosed);
}

#[tokio::test]
async fn bot_code_returns_the_exact_source_members_can_hash() {
    let f = fixture().await;
    let c = f.table().await;
    let cid = &c.channel_id;
    let b = bot("Tally", &["on_message"]);
    f.ch.attach_bot(&f.alice, cid, Some("tally".into()), b.clone())
        .await
        .unwrap();
    for id in ["bot:tally", "tally"] {
        let code = f.ch.bot_code(&f.bob, cid, id).await.unwrap();
        assert_eq!(code.source, b.source);
        assert_eq!(
            code.code_hash,
            transcript::sha256_tagged(b.source.as_bytes())
        );
        assert_eq!(code.manifest, b.manifest);
        assert_eq!(code.manifest_hash, b.manifest_hash);
    }
    let e = f.ch.bot_code(&f.bob, cid, "bot:nope").await.unwrap_err();
    assert_eq!(e.code, Code::UnknownSlot);
    assert_eq!(e.data.unwrap()["bots"], json!(["bot:tally"]));
}

#[tokio::test]
async fn a_slot_may_not_be_taken_twice_even_by_racing_joins() {
    let f = fixture().await;
    let c = f.table().await;
    let code = invite(&c, "carol").to_string();
    let (a, b) = tokio::join!(f.ch.join(&f.carol, &code), f.ch.join(&f.alice, &code));
    assert!(a.is_ok() != b.is_ok(), "exactly one join wins");
    let _ = &f.t;
}

/// Bob's private traffic in a table where alice (admin), bob and carol sit:
/// a bid bob sends carol and carol's answer to him. Returns the seq of the
/// last of them.
async fn bobs_secrets(f: &Fixture, c: &Created) -> Seq {
    let cid = &c.channel_id;
    f.ch.join(&f.carol, invite(c, "carol")).await.unwrap();
    f.ch.post(
        &f.bob,
        cid,
        None,
        &json!({"bid": 520, "nonce": "bobsecret"}),
        Some(vec!["carol".into()]),
    )
    .await
    .unwrap();
    f.ch.post(
        &f.carol,
        cid,
        None,
        &json!("carol's reply to bob"),
        Some(vec!["bob".into()]),
    )
    .await
    .unwrap()
    .seq
}

/// Whether any of `ms` shows a body of bob's private traffic.
fn shows_bobs_secrets(ms: &[MessageView]) -> bool {
    let text = serde_json::to_string(ms).unwrap();
    text.contains("bobsecret") || text.contains("carol's reply")
}

/// Alice kicks bob; the fresh invite is redeemed by `taker`. Returns the
/// seq of `seat:kicked`.
async fn kick_bob_and_refill(f: &Fixture, cid: &str, taker: &Principal) -> Seq {
    let kicked =
        f.ch.update(&f.alice, cid, UpdateOp::Kick { slot: "bob".into() })
            .await
            .unwrap();
    let code = kicked.invite.unwrap().invite_code;
    let head = f.ch.view(&f.alice, cid).await.unwrap().message_count;
    let joined = f.ch.join(taker, &code).await.unwrap();
    assert_eq!(joined.slot, "bob");
    head
}

/// The attack (red team F1): the admin, also a player, kicks bob, redeems
/// bob's fresh invite with her own account and reads everything ever sent
/// to or from the seat "bob" (his sealed bid) through every read she has:
/// `sync_messages` as that seat (alone and in a batch of waiters woken
/// together), `export_transcript` as that seat. Stopped by the seat's
/// `private_from` (set to the seq of `seat:kicked` by the kick) that
/// `rules::SeatReader::of` reads from the slots in the snapshot of every read
/// and `rules::readable_by` applies: the bodies stay hashes, the chain still
/// verifies, and what is sent to the seat after the kick is the new holder's.
#[tokio::test]
async fn the_admin_who_takes_a_kicked_seat_does_not_read_its_private_history() {
    let f = fixture().await;
    let c = f.table().await;
    let cid = c.channel_id.clone();
    let last_secret = bobs_secrets(&f, &c).await;
    assert!(
        shows_bobs_secrets(&f.all(&f.bob, &cid).await),
        "bob reads them"
    );
    let kick = kick_bob_and_refill(&f, &cid, &f.alice).await;
    f.ch.post(
        &f.carol,
        &cid,
        None,
        &json!("welcome, new bob"),
        Some(vec!["bob".into()]),
    )
    .await
    .unwrap();

    let mut req = sync_req(&cid, 0);
    req.slot = Some("bob".into());
    let synced =
        f.ch.sync(&f.alice, req, None, &CancellationToken::new())
            .await
            .unwrap();
    assert_eq!(synced.as_seat, "bob");
    assert!(!shows_bobs_secrets(&synced.messages), "sync as the seat");
    let sealed: Vec<&MessageView> = synced
        .messages
        .iter()
        .filter(|m| m.to.is_some() && m.seq < kick)
        .collect();
    assert_eq!(sealed.len(), 2);
    assert!(sealed.iter().all(|m| m.body.is_none()
        && m.body_salt.is_none()
        && m.body_hash.is_some()
        && m.redacted == Some(true)));
    assert!(
        bodies(&synced.messages).contains(&json!("welcome, new bob")),
        "what is sent to the seat after the kick is its new holder's"
    );
    let views: Vec<Value> = synced
        .messages
        .iter()
        .map(|m| serde_json::to_value(m).unwrap())
        .collect();
    assert!(
        transcript::verify_chain(&cid, &views).is_ok(),
        "the sealed entries still verify by their hash"
    );

    // Waiters woken together: the batch reads each seat as it is now.
    let read = |who: &Principal, slot: &str| shared::SyncRead {
        who: who.clone(),
        slot: Some(slot.to_string()),
        cursor: 0,
        limit: 50,
        max_bytes: 1 << 20,
        last_read: true,
    };
    let (answered, at) = answer_batch(
        &f,
        &cid,
        vec![read(&f.carol, "carol"), read(&f.alice, "bob")],
    )
    .await;
    assert!(
        shows_bobs_secrets(&answered.answers[at[0]].messages),
        "carol still reads what she sent and received"
    );
    assert!(!shows_bobs_secrets(&answered.answers[at[1]].messages));

    let doc =
        f.ch.export_page(&f.alice, &cid, Some("bob".into()), 0)
            .await
            .unwrap();
    assert_eq!(doc.exported_as, "bob");
    assert!(!shows_bobs_secrets(&doc.entries), "export as the seat");
    assert!(
        doc.entries
            .iter()
            .any(|m| m.seq == last_secret && m.body_hash.is_some())
    );
}

/// The same attack by the seat's old holder's own account or an accomplice
/// with one seat only, read through the channel resource (`snapshot`, the
/// caller's first seat): sealed for every holder after a kick, bob himself
/// included (the kick ended his claim; the rule needs no principal
/// identities). Stopped by the same `private_from`.
#[tokio::test]
async fn a_kicked_seat_stays_sealed_for_every_later_holder_and_every_read() {
    let f = fixture().await;
    let c = f.table().await;
    let cid = c.channel_id.clone();
    bobs_secrets(&f, &c).await;
    let mallory = principal(&f.t.store, "mallory").await;
    kick_bob_and_refill(&f, &cid, &mallory).await;
    let snap = f.ch.snapshot(&mallory, &cid).await.unwrap();
    assert_eq!(snap.seat.as_deref(), Some("bob"));
    assert!(!snap.messages.is_empty());
    assert!(!shows_bobs_secrets(&snap.messages), "the channel resource");
    assert!(!shows_bobs_secrets(&f.all(&mallory, &cid).await));
    // Kicked again and refilled by bob himself: still sealed.
    f.ch.update(&f.alice, &cid, UpdateOp::Kick { slot: "bob".into() })
        .await
        .unwrap();
    let kicked =
        f.ch.update(&f.alice, &cid, UpdateOp::NewInvite { slot: "bob".into() })
            .await
            .unwrap();
    f.ch.join(&f.bob, &kicked.invite.unwrap().invite_code)
        .await
        .unwrap();
    assert!(!shows_bobs_secrets(&f.all(&f.bob, &cid).await));
    assert!(!shows_bobs_secrets(
        &f.ch.snapshot(&f.bob, &cid).await.unwrap().messages
    ));
}

/// A seat moved with its holder's rejoin token is the same person on
/// another device or connector: it keeps its private history (only a kick
/// seals it).
#[tokio::test]
async fn a_seat_moved_by_its_rejoin_token_keeps_its_private_history() {
    let f = fixture().await;
    let c =
        f.ch.create(&f.alice, request(&["alice", "bob", "carol"], Some("alice")))
            .await
            .unwrap();
    let cid = c.channel_id.clone();
    let token =
        f.ch.join(&f.bob, invite(&c, "bob"))
            .await
            .unwrap()
            .rejoin_token;
    bobs_secrets(&f, &c).await;
    let laptop = principal(&f.t.store, "bob-laptop").await;
    assert_ne!(laptop.id, f.bob.id);
    let moved = f.ch.join(&laptop, &token).await.unwrap();
    assert_eq!((moved.slot.as_str(), moved.moved), ("bob", true));
    assert!(shows_bobs_secrets(&f.all(&laptop, &cid).await));
}

/// The attack (red team F3): carol, who cannot read alice's private message
/// to bob, learns its length from where her `sync_messages` pages end: the
/// page budget used to count its whole body. Two channels that differ only
/// in that body's length must cut carol's pages at the same place. Stopped
/// by the page budget counting each message as the reader receives it
/// (`StoredMessage::page_bytes` of `rules::shown_to`, passed to
/// `messages_page` by every paginated read).
#[tokio::test]
async fn where_a_page_ends_says_nothing_of_a_private_body_its_reader_cannot_read() {
    let f = fixture().await;
    let small = f.ch.clone().with_max_sync_bytes(4000);
    let mut cut = Vec::new();
    for len in [10, 1000] {
        let c = f.table().await;
        let cid = c.channel_id.clone();
        f.ch.join(&f.carol, invite(&c, "carol")).await.unwrap();
        let p =
            f.ch.post(
                &f.alice,
                &cid,
                None,
                &json!("x".repeat(len - 2)),
                Some(vec!["bob".into()]),
            )
            .await
            .unwrap();
        for i in 0..12 {
            f.ch.post(
                &f.alice,
                &cid,
                None,
                &json!(format!("{i:03}{}", "p".repeat(200))),
                None,
            )
            .await
            .unwrap();
        }
        let page = |who: &Principal| {
            let (small, who, cid) = (small.clone(), who.clone(), cid.clone());
            async move {
                let s = small
                    .sync(
                        &who,
                        sync_req(&cid, p.seq - 1),
                        None,
                        &CancellationToken::new(),
                    )
                    .await
                    .unwrap();
                assert!(s.more, "the budget cuts the page");
                s.cursor
            }
        };
        // The channel resource is cut by the same budget.
        let resource = small.snapshot(&f.carol, &cid).await.unwrap().messages;
        assert!(
            resource.last().unwrap().seq < p.seq + 12,
            "cut by the budget"
        );
        cut.push((page(&f.carol).await, page(&f.bob).await, resource.len()));
    }
    assert_eq!(
        (cut[0].0, cut[0].2),
        (cut[1].0, cut[1].2),
        "carol's pages end at the same seq whatever the private body's length"
    );
    assert!(
        cut[0].1 > cut[1].1,
        "bob, who receives the body, has it counted: {cut:?}"
    );
}
