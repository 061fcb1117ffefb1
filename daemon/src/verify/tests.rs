//! The verifier against exports built the way the daemon builds them (the
//! chain sealed by `transcript`, heads signed by `signing`), and against
//! each way of tampering with one: every tampering is caught at its seq.

use super::*;
use crate::model::Manifest;
use crate::signing::Signer;
use crate::transcript::{GENESIS, link};
use serde_json::{Map, json};

const CH: &str = "ch_test";
const TS: &str = "2026-12-03T10:00:00.000Z";
const GUESS_SRC: &str = include_str!("../../../bots/guess.py");
/// The referee's seed (revealed at close, seq 12).
const SEED: &str = "5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed";

fn seed() -> hook_protocol::Entropy {
    SEED.parse().unwrap()
}

fn params() -> Map<String, Value> {
    serde_json::from_value(json!({"min": 1, "max": 100})).unwrap()
}

fn sha(s: &str) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(s.as_bytes()))
}

fn manifest() -> Value {
    serde_json::to_value(Manifest {
        name: "GuessBot".into(),
        version: "1.0.0".into(),
        summary: "s".into(),
        hooks: vec!["on_init".into(), "on_join".into(), "on_message".into()],
        params: Map::new(),
        network: false,
    })
    .unwrap()
}

/// The hashed entry of a public message (what `transcript` seals).
fn hashed(e: &Value) -> Value {
    let mut h = json!({"seq": e["seq"], "channel_id": CH, "sender": e["sender"],
                       "kind": e["kind"], "ts": e["ts"], "body": e["body"]});
    for k in ["cause", "state_hash"] {
        if let Some(v) = e.get(k) {
            h[k] = v.clone();
        }
    }
    h
}

/// Recomputes every hash: what a forger who edits an entry does.
fn reseal(entries: &mut [Value]) {
    let mut prev = GENESIS.to_string();
    for e in entries.iter_mut() {
        let h = link(&prev, &hashed(e));
        e["hash"] = json!(h);
        prev = h;
    }
}

/// Signs a head at every seq from `from` on with `signer`, keeping the
/// heads before.
fn resign(doc: &mut Value, signer: &Signer, from: i64) {
    let entries = doc["entries"].as_array().unwrap().clone();
    let mut heads: Vec<Value> = doc["signed_heads"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|h| h["seq"].as_i64().unwrap() < from)
        .collect();
    for e in &entries {
        let seq = e["seq"].as_i64().unwrap();
        if seq >= from {
            let h = signer.head(CH, seq, e["hash"].as_str().unwrap());
            heads.push(serde_json::to_value(h).unwrap());
        }
    }
    doc["signed_heads"] = json!(heads);
}

/// A whole GuessBot game (target 42) exported as alice after the channel
/// closed (the referee's seed revealed at seq 12), a head signed at every
/// seq.
fn game(signer: &Signer) -> Value {
    let nonce = "00112233445566778899aabbccddeeff";
    let commitment = sha(&format!("42|{nonce}"));
    let code_hash = format!("sha256:{}", sha(GUESS_SRC));
    let manifest_hash = format!("sha256:{}", sha(&canonical(&manifest())));
    let mut shown = manifest();
    shown["type"] = json!("bot:manifest");
    shown["bot_id"] = json!("bot:referee");
    let bot = |kind: &str, cause: i64, data: Value| {
        json!({"sender": "bot:referee", "kind": "bot", "cause": cause,
               "body": {"type": kind, "data": data}})
    };
    let mut entries = vec![
        json!({"sender": "system", "kind": "system", "body": {"type": "channel:created", "name": "g",
            "slots": [{"label": "alice", "kind": "invite"}, {"label": "bot:referee", "kind": "bot"}],
            "allow_network": false, "transcript_format": 2}}),
        json!({"sender": "system", "kind": "system", "body": {"type": "bot:attach", "bot_id": "bot:referee",
            "name": "GuessBot", "code_hash": code_hash, "manifest_hash": manifest_hash, "network": false,
            "seed_commitment": seed::commitment(&seed()), "params_hash": seed::params_hash(&params()),
            "origin": "builtin"}}),
        json!({"sender": "system", "kind": "system", "body": shown}),
        json!({"sender": "system", "kind": "system", "body": {"type": "seat:filled", "slot": "alice"}}),
        bot(
            "commit",
            2,
            json!({"commitment": commitment, "range": [1, 100]}),
        ),
        json!({"sender": "alice", "kind": "user", "body": "guess 50"}),
        bot(
            "hint",
            6,
            json!({"player": "alice", "guess": 50, "hint": "lower", "text": "lower"}),
        ),
        json!({"sender": "alice", "kind": "user", "body": "guess 42"}),
        bot(
            "hint",
            8,
            json!({"player": "alice", "guess": 42, "hint": "correct"}),
        ),
        bot(
            "reveal",
            8,
            json!({"target": 42, "nonce": nonce, "commitment": commitment, "winner": "alice"}),
        ),
        json!({"sender": "system", "kind": "system", "body": {"type": "channel:closed"}}),
        json!({"sender": "system", "kind": "system", "body": {"type": "bot:reveal", "bot_id": "bot:referee",
            "seed": SEED, "state_salt": seed::state_salt(&seed())}}),
    ];
    for (i, e) in entries.iter_mut().enumerate() {
        e["seq"] = json!(i + 1);
        e["channel_id"] = json!(CH);
        e["ts"] = json!(TS);
    }
    entries[9]["state_hash"] = json!("sha256:s");
    reseal(&mut entries);
    let mut doc = json!({
        "format": "mcp-multiplayer-transcript", "version": 1,
        "exported_at": TS, "exported_as": "alice",
        "channel": {"channel_id": CH, "name": "g", "created_at": TS, "closed": true,
                    "allow_network": false, "slots": []},
        "entries": entries,
        "bots": [{"channel_id": CH, "bot_id": "bot:referee", "name": "GuessBot", "preset": "GuessBot",
                  "source": GUESS_SRC, "code_hash": code_hash, "manifest": manifest(),
                  "manifest_hash": manifest_hash, "network": false, "params": params()}],
        "signed_heads": [],
        "keys": signer.keys().keys,
        "replay": {},
    });
    resign(&mut doc, signer, 1);
    doc
}

fn first_bad(doc: &Value, trust: &Trust) -> Option<At> {
    verify(doc, trust).first_bad().cloned()
}

#[test]
fn a_whole_game_verifies_every_check() {
    let s = Signer::ephemeral();
    let r = verify(&game(&s), &Trust::default());
    assert!(r.passed(), "{}", r.text());
    let checks: Vec<&str> = r.findings.iter().map(|f| f.check.as_str()).collect();
    assert_eq!(
        checks,
        [
            "chain",
            "signatures",
            "bot bot:referee",
            "seed bot:referee",
            "GuessBot bot:referee"
        ]
    );
    assert!(r.text().contains("VERIFIED"));
    // Pinning the real key changes nothing.
    let pinned = Trust {
        keys: None,
        pinned: vec![s.key_id().into()],
    };
    assert!(verify(&game(&s), &pinned).passed());
}

/// The game with its referee's `bot:attach` origin set to `origin` (or
/// removed), resealed and signed again: what the daemon that wrote it
/// signed.
fn game_with_origin(s: &Signer, origin: Option<&str>) -> Value {
    let mut doc = game(s);
    let e = doc["entries"].as_array_mut().unwrap();
    let body = e[1]["body"].as_object_mut().unwrap();
    match origin {
        Some(o) => body.insert("origin".into(), json!(o)),
        None => body.remove("origin"),
    };
    reseal(e);
    resign(&mut doc, s, 1);
    doc
}

#[test]
fn custom_code_under_a_builtins_name_fails_and_is_not_checked_as_the_builtin() {
    // A forged or mis-built record: the daemon refuses such an attach
    // (`presets::impersonated`); the verifier does not lend the code the
    // builtin's checks, however well its posts follow the builtin's rules.
    let s = Signer::ephemeral();
    let r = verify(&game_with_origin(&s, Some("custom")), &Trust::default());
    assert_eq!(r.first_bad(), Some(&At::Seq(2)), "{}", r.text());
    assert!(
        r.text()
            .contains("custom code announced under the builtin GuessBot's name"),
        "{}",
        r.text()
    );
    // The builtin itself: its checks run, and its origin is named.
    let r = verify(&game_with_origin(&s, Some("builtin")), &Trust::default());
    assert!(r.passed(), "{}", r.text());
    assert!(r.text().contains("builtin GuessBot (3"), "{}", r.text());
    // An attach from before the origin was recorded: checked by name, and
    // the report says the origin is not recorded.
    let r = verify(&game_with_origin(&s, None), &Trust::default());
    assert!(r.passed(), "{}", r.text());
    assert!(
        r.text()
            .contains("predates the record of builtin or custom code"),
        "{}",
        r.text()
    );
}

#[test]
fn a_changed_byte_in_a_public_body_is_caught_at_its_seq() {
    let s = Signer::ephemeral();
    let mut doc = game(&s);
    doc["entries"][5]["body"] = json!("guess 51");
    assert_eq!(first_bad(&doc, &Trust::default()), Some(At::Seq(6)));
}

#[test]
fn a_deleted_message_is_caught_at_its_seq() {
    let s = Signer::ephemeral();
    let mut doc = game(&s);
    doc["entries"].as_array_mut().unwrap().remove(5);
    assert_eq!(first_bad(&doc, &Trust::default()), Some(At::Seq(6)));
    // Deleted and renumbered, the chain resealed: the signatures catch it.
    let mut doc = game(&s);
    let e = doc["entries"].as_array_mut().unwrap();
    e.remove(7);
    for (i, m) in e.iter_mut().enumerate() {
        m["seq"] = json!(i + 1);
    }
    reseal(e);
    let r = verify(&doc, &Trust::default());
    assert_eq!(r.first_bad(), Some(&At::Seq(8)), "{}", r.text());
}

#[test]
fn a_swapped_order_is_caught_at_the_first_moved_seq() {
    let s = Signer::ephemeral();
    let mut doc = game(&s);
    doc["entries"].as_array_mut().unwrap().swap(5, 6);
    assert_eq!(first_bad(&doc, &Trust::default()), Some(At::Seq(6)));
    // Swapped with seqs and the chain rewritten: caught by the signature
    // and, here, by the causal order (the hint before its guess).
    let mut doc = game(&s);
    let e = doc["entries"].as_array_mut().unwrap();
    e.swap(5, 6);
    e[5]["seq"] = json!(6);
    e[6]["seq"] = json!(7);
    reseal(e);
    assert_eq!(first_bad(&doc, &Trust::default()), Some(At::Seq(6)));
}

#[test]
fn a_bot_post_altered_and_resigned_with_another_key_is_caught() {
    let s = Signer::ephemeral();
    let forger = Signer::ephemeral();
    let mut doc = game(&s);
    doc["entries"][6]["body"]["data"]["text"] = json!("lower, trust me");
    reseal(doc["entries"].as_array_mut().unwrap());
    resign(&mut doc, &forger, 7);
    let r = verify(&doc, &Trust::default());
    assert_eq!(r.first_bad(), Some(&At::Seq(7)), "{}", r.text());
    assert!(r.text().contains("not in the key list"), "{}", r.text());
    // The forger also swaps in their own key list: the document is then
    // consistent with itself, and only a key the reader trusts catches it.
    let mut all = game(&s);
    all["entries"][6]["body"]["data"]["text"] = json!("lower, trust me");
    reseal(all["entries"].as_array_mut().unwrap());
    resign(&mut all, &forger, 1);
    all["keys"] = json!(forger.keys().keys);
    assert!(verify(&all, &Trust::default()).passed());
    let pinned = Trust {
        keys: None,
        pinned: vec![s.key_id().into()],
    };
    assert_eq!(first_bad(&all, &pinned), Some(At::Seq(1)));
    let real_keys = Trust {
        keys: Some(s.keys().keys.clone()),
        pinned: vec![],
    };
    assert_eq!(first_bad(&all, &real_keys), Some(At::Seq(1)));
}

#[test]
fn a_forged_signature_is_caught_at_the_first_seq_it_alone_covered() {
    let s = Signer::ephemeral();
    let mut doc = game(&s);
    let sig = doc["signed_heads"][6]["signature"].as_str().unwrap();
    let flipped = if sig.starts_with('A') { "B" } else { "A" };
    doc["signed_heads"][6]["signature"] = json!(format!("{flipped}{}", &sig[1..]));
    let r = verify(&doc, &Trust::default());
    assert_eq!(r.first_bad(), Some(&At::Seq(7)), "{}", r.text());
    // Without any head at the end, the tail is not vouched for.
    let mut doc = game(&s);
    doc["signed_heads"].as_array_mut().unwrap().truncate(4);
    assert_eq!(first_bad(&doc, &Trust::default()), Some(At::Seq(5)));
}

#[test]
fn a_source_that_is_not_the_announced_code_is_caught_at_the_attach() {
    let s = Signer::ephemeral();
    let mut doc = game(&s);
    doc["bots"][0]["source"] = json!(GUESS_SRC.replace("secrets.randbelow", "(lambda n: 41)"));
    let r = verify(&doc, &Trust::default());
    assert_eq!(r.first_bad(), Some(&At::Seq(2)), "{}", r.text());
    let mut doc = game(&s);
    doc["bots"][0]["manifest"]["summary"] = json!("other");
    assert_eq!(first_bad(&doc, &Trust::default()), Some(At::Seq(2)));
    let mut doc = game(&s);
    doc["bots"] = json!([]);
    assert_eq!(first_bad(&doc, &Trust::default()), Some(At::Seq(2)));
}

/// A dishonest referee whose posts the daemon signed: the claims catch it.
#[test]
fn guessbot_claims_that_do_not_follow_from_the_reveal_are_caught() {
    let s = Signer::ephemeral();
    let cases: Vec<(usize, &str, Value, i64)> = vec![
        (9, "target", json!(43), 10),
        (9, "nonce", json!("ff"), 10),
        (6, "hint", json!("higher"), 7),
        (9, "winner", json!(null), 10),
    ];
    for (i, field, value, seq) in cases {
        let mut doc = game(&s);
        doc["entries"][i]["body"]["data"][field] = value;
        reseal(doc["entries"].as_array_mut().unwrap());
        resign(&mut doc, &s, 1);
        let r = verify(&doc, &Trust::default());
        assert_eq!(r.first_bad(), Some(&At::Seq(seq)), "{field}: {}", r.text());
    }
}

/// The server's right key re-signs a rewritten chain: a reveal that is not
/// the committed seed (or not its salt), a reveal while the channel is open,
/// a second one, or none at the close is caught at its seq.
#[test]
fn a_wrong_seed_reveal_is_caught_at_the_reveal() {
    let s = Signer::ephemeral();
    let other = format!("5eee{}", &SEED[4..]);
    let cases: Vec<(&str, Value, &str)> = vec![
        ("seed", json!(other), "does not open the seed commitment"),
        ("state_salt", json!("00".repeat(16)), "state salt"),
        ("seed", json!(SEED.to_uppercase()), "malformed"),
    ];
    for (field, value, why) in cases {
        let mut doc = game(&s);
        doc["entries"][11]["body"][field] = value;
        reseal(doc["entries"].as_array_mut().unwrap());
        resign(&mut doc, &s, 1);
        let r = verify(&doc, &Trust::default());
        assert_eq!(r.first_bad(), Some(&At::Seq(12)), "{field}: {}", r.text());
        assert!(r.text().contains(why), "{}", r.text());
    }
    // The other salt with a seed that derives it: the commitment catches it.
    let mut doc = game(&s);
    let o: hook_protocol::Entropy = other.parse().unwrap();
    doc["entries"][11]["body"]["seed"] = json!(other);
    doc["entries"][11]["body"]["state_salt"] = json!(seed::state_salt(&o));
    reseal(doc["entries"].as_array_mut().unwrap());
    resign(&mut doc, &s, 1);
    assert_eq!(first_bad(&doc, &Trust::default()), Some(At::Seq(12)));
    // The reveal before the close: the players could have predicted the draws.
    let mut doc = game(&s);
    doc["entries"].as_array_mut().unwrap().swap(10, 11);
    doc["entries"][10]["seq"] = json!(11);
    doc["entries"][11]["seq"] = json!(12);
    reseal(doc["entries"].as_array_mut().unwrap());
    resign(&mut doc, &s, 1);
    let r = verify(&doc, &Trust::default());
    assert_eq!(r.first_bad(), Some(&At::Seq(11)), "{}", r.text());
    assert!(
        r.text().contains("while the channel is open"),
        "{}",
        r.text()
    );
    // Closed without the reveal: named at the close.
    let mut doc = game(&s);
    doc["entries"].as_array_mut().unwrap().pop();
    doc["signed_heads"].as_array_mut().unwrap().pop();
    let r = verify(&doc, &Trust::default());
    assert_eq!(r.first_bad(), Some(&At::Seq(11)), "{}", r.text());
    assert!(r.text().contains("without revealing"), "{}", r.text());
    // A second reveal.
    let mut doc = game(&s);
    let again = doc["entries"][11].clone();
    doc["entries"].as_array_mut().unwrap().push(again);
    doc["entries"][12]["seq"] = json!(13);
    reseal(doc["entries"].as_array_mut().unwrap());
    resign(&mut doc, &s, 1);
    assert_eq!(first_bad(&doc, &Trust::default()), Some(At::Seq(13)));
    // Open, not revealed yet: nothing wrong.
    let mut doc = game(&s);
    doc["entries"].as_array_mut().unwrap().truncate(10);
    doc["signed_heads"].as_array_mut().unwrap().truncate(10);
    let r = verify(&doc, &Trust::default());
    assert!(r.passed(), "{}", r.text());
    assert!(
        r.text().contains("revealed when the channel closes"),
        "{}",
        r.text()
    );
}

#[test]
fn params_that_are_not_the_announced_ones_are_caught_at_the_attach() {
    let s = Signer::ephemeral();
    for params in [
        json!({"min": 1, "max": 101}),
        json!({}),
        json!(null),
        json!([1]),
    ] {
        let mut doc = game(&s);
        doc["bots"][0]["params"] = params.clone();
        let r = verify(&doc, &Trust::default());
        assert_eq!(r.first_bad(), Some(&At::Seq(2)), "{params}: {}", r.text());
    }
    // The same params in another order and spelling hash the same.
    let mut doc = game(&s);
    doc["bots"][0]["params"] = json!({"max": 100.0, "min": 1});
    assert!(verify(&doc, &Trust::default()).passed());
}

#[test]
fn documents_that_are_not_whole_exports_are_refused() {
    let s = Signer::ephemeral();
    for (field, value) in [
        ("format", json!("other")),
        ("version", json!(2)),
        ("page", json!({"after": 0, "cursor": 5, "more": true})),
    ] {
        let mut doc = game(&s);
        doc[field] = value;
        assert_eq!(
            first_bad(&doc, &Trust::default()),
            Some(At::Document),
            "{field}"
        );
    }
}
