//! The generator and the two field types against the shared test vectors
//! (`protocol/tests/determinism-vectors.json`, computed with Python's `hmac`
//! module; the harness suite checks the same file), and HMAC itself against
//! RFC 4231.

use super::*;
use serde_json::{Value, json};

const VECTORS: &str = include_str!("../../tests/determinism-vectors.json");

fn vectors() -> Value {
    serde_json::from_str(VECTORS).expect("determinism-vectors.json parses")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn entropy(text: &str) -> Entropy {
    text.parse().expect("a vector's entropy parses")
}

#[test]
fn hmac_matches_rfc_4231() {
    // Test case 2 (a short key) and 6 (a key longer than the block, hashed first).
    assert_eq!(
        hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    assert_eq!(
        hex(&hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First"
        )),
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
    );
}

#[test]
fn streams_and_hash_seed_match_the_vectors() {
    let v = vectors();
    let cases = v["generator"].as_array().expect("generator");
    assert!(cases.len() >= 3);
    for case in cases {
        let e = entropy(case["entropy"].as_str().expect("entropy"));
        for (label, want) in case["streams"].as_object().expect("streams") {
            let want = want.as_str().expect("hex");
            let got = e.stream(label.as_bytes(), want.len() / 2);
            assert_eq!(hex(&got), want, "stream {label} of {}", e.to_hex());
        }
        assert_eq!(
            u64::from(e.python_hash_seed()),
            case["python_hash_seed"].as_u64().expect("seed")
        );
        // Blocks are the stream's 32-byte pieces.
        let s = e.stream(URANDOM, 64);
        assert_eq!(e.block(URANDOM, 1), s[32..64]);
    }
}

#[test]
fn hook_entropy_is_the_bot_seeds_hook_block_and_differs_per_seq() {
    let v = vectors();
    let mut seen = std::collections::HashSet::new();
    for case in v["hook_entropy"].as_array().expect("hook_entropy") {
        let seed = entropy(case["bot_seed"].as_str().expect("seed"));
        let seq = case["seq"].as_u64().expect("seq");
        let got = Entropy::for_hook(&seed, seq);
        assert_eq!(got.to_hex(), case["entropy"].as_str().expect("entropy"));
        assert!(seen.insert(got.to_hex()), "two seqs gave one entropy");
    }
}

#[test]
fn entropy_wire_form_is_64_lowercase_hex_digits_and_nothing_else() {
    let e = entropy(&"0f".repeat(32));
    assert_eq!(
        serde_json::to_value(&e).expect("serialize"),
        json!("0f".repeat(32))
    );
    let back: Entropy = serde_json::from_value(json!("0f".repeat(32))).expect("deserialize");
    assert_eq!(back, e);
    for bad in vectors()["entropy_invalid"]
        .as_array()
        .expect("entropy_invalid")
    {
        assert!(
            serde_json::from_value::<Entropy>(bad.clone()).is_err(),
            "{bad} was taken for an entropy"
        );
    }
}

#[test]
fn entropy_debug_shows_nothing_of_the_secret() {
    let e = entropy(&"ab".repeat(32));
    let shown = format!("{e:?} {:?}", Some(&e));
    assert!(!shown.to_lowercase().contains("abab"), "{shown}");
    assert!(!shown.contains("171"), "{shown}"); // 0xab as a decimal byte
}

#[test]
fn timestamps_parse_exactly_the_transcripts_form() {
    let v = vectors();
    for case in v["now"]["valid"].as_array().expect("valid") {
        let text = case["text"].as_str().expect("text");
        let t: Timestamp = serde_json::from_value(json!(text)).expect(text);
        assert_eq!(t.unix_ms(), case["unix_ms"].as_i64().expect("ms"), "{text}");
        assert_eq!(t.to_string(), text, "round trip");
        assert_eq!(Timestamp::from_unix_ms(t.unix_ms()), Some(t));
    }
    for bad in v["now"]["invalid"].as_array().expect("invalid") {
        let got = serde_json::from_value::<Timestamp>(bad.clone());
        assert!(got.is_err(), "{bad} was taken for a timestamp: {got:?}");
    }
    assert_eq!(Timestamp::from_unix_ms(-1), None);
    assert_eq!(Timestamp::from_unix_ms(MAX_UNIX_MS + 1), None);
}

#[test]
fn every_day_of_four_centuries_round_trips() {
    // 1970-01-01 to 2370: leap years, century years, the 400-year rule.
    let mut day_ms = 0i64;
    while day_ms < 400 * 366 * 86_400_000 {
        let t = Timestamp::from_unix_ms(day_ms + 45_296_789).expect("in range");
        let text = t.to_string();
        assert_eq!(text.parse::<Timestamp>(), Ok(t), "{text}");
        day_ms += 86_400_000;
    }
}
