//! The channel transcript as a hash chain (DESIGN §8).
//!
//! `hash_n = sha256(hash_{n-1} || canonical_json(entry_n))`, with `hash_0` the
//! 32 zero bytes, hashes written as lowercase hex, and `||` concatenating the
//! previous hash's raw 32 bytes with the entry's RFC 8785 canonical JSON.
//!
//! An entry is the message as every member may see it:
//! `{seq, channel_id, sender, kind, ts, body}` for a public message, and
//! `{seq, channel_id, sender, kind, ts, to, body_hash}` for a private one,
//! where `body_hash = "sha256:" + hex(sha256(body_salt + ":" + canonical_json(body)))`
//! and `body_salt` is 128 random bits in hex, given only to the message's
//! readers. A member who cannot read a private message still receives its
//! entry, so anyone can check the whole chain offline and see that a private
//! message was sent, to whom and when, without learning what it said; the
//! salt stops them from finding a short body ("bid 450") by hashing guesses.
//! (DESIGN §8 says "the hash of the body"; the salt is this project's
//! addition.) [`verify_chain`] is the checker.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// `hash_0`: 64 hex zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// RFC 8785 canonical JSON of a value.
pub fn canonical(v: &Value) -> String {
    // Serializing a serde_json::Value cannot fail (no non-string map keys).
    serde_json_canonicalizer::to_string(v).unwrap_or_default()
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_tagged(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// `body_hash` of a private message.
pub fn private_body_hash(salt: &str, body: &Value) -> String {
    sha256_tagged(format!("{salt}:{}", canonical(body)).as_bytes())
}

/// The entry the chain covers for one message.
#[allow(clippy::too_many_arguments)]
pub fn entry(
    seq: i64,
    channel_id: &str,
    sender: &str,
    kind: &str,
    ts: &str,
    body: &Value,
    body_hash: &str,
    to: Option<&[String]>,
) -> Value {
    match to {
        None => json!({
            "seq": seq, "channel_id": channel_id, "sender": sender,
            "kind": kind, "ts": ts, "body": body,
        }),
        Some(to) => json!({
            "seq": seq, "channel_id": channel_id, "sender": sender,
            "kind": kind, "ts": ts, "to": to, "body_hash": body_hash,
        }),
    }
}

/// `hash_n` from `hash_{n-1}` (hex) and entry `n`.
pub fn link(prev_hex: &str, entry: &Value) -> String {
    let mut h = Sha256::new();
    let mut prev = [0u8; 32];
    // A malformed previous hash can only come from a corrupted database; it
    // then hashes as zeros and the chain check reports the break.
    let _ = hex::decode_to_slice(prev_hex, &mut prev);
    h.update(prev);
    h.update(canonical(entry).as_bytes());
    hex::encode(h.finalize())
}

/// Where a transcript check failed.
#[derive(Debug, PartialEq, Eq)]
pub struct ChainBreak {
    pub seq: i64,
    pub reason: String,
}

/// Checks a transcript as clients see it (messages with `seq`, `hash`, and
/// either `body` or `body_hash`), from `seq` 1.
pub fn verify_chain(channel_id: &str, messages: &[Value]) -> Result<String, ChainBreak> {
    let mut prev = GENESIS.to_string();
    for (i, m) in messages.iter().enumerate() {
        let seq = m["seq"].as_i64().unwrap_or(-1);
        if seq != i as i64 + 1 {
            return Err(ChainBreak {
                seq,
                reason: format!("expected seq {}", i + 1),
            });
        }
        let to: Option<Vec<String>> = m
            .get("to")
            .and_then(|t| serde_json::from_value(t.clone()).ok());
        let body_hash = match (m.get("body_hash"), m.get("body"), m.get("body_salt")) {
            (Some(Value::String(h)), _, _) => h.clone(),
            (_, Some(b), Some(Value::String(salt))) => private_body_hash(salt, b),
            (_, Some(b), _) => sha256_tagged(canonical(b).as_bytes()),
            _ => {
                return Err(ChainBreak {
                    seq,
                    reason: "no body or body_hash".into(),
                });
            }
        };
        let body = m.get("body").cloned().unwrap_or(Value::Null);
        let e = entry(
            seq,
            channel_id,
            m["sender"].as_str().unwrap_or(""),
            m["kind"].as_str().unwrap_or(""),
            m["ts"].as_str().unwrap_or(""),
            &body,
            &body_hash,
            to.as_deref(),
        );
        let h = link(&prev, &e);
        if m["hash"].as_str() != Some(h.as_str()) {
            return Err(ChainBreak {
                seq,
                reason: "hash does not match".into(),
            });
        }
        prev = h;
    }
    Ok(prev)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SALT: &str = "00112233445566778899aabbccddeeff";

    fn msg(seq: i64, prev: &str, body: Value, to: Option<Vec<String>>) -> (Value, String) {
        let bh = match to {
            Some(_) => private_body_hash(SALT, &body),
            None => sha256_tagged(canonical(&body).as_bytes()),
        };
        let e = entry(
            seq,
            "c1",
            "alice",
            "user",
            "2026-01-01T00:00:00.000Z",
            &body,
            &bh,
            to.as_deref(),
        );
        let h = link(prev, &e);
        let mut m = json!({"seq": seq, "sender": "alice", "kind": "user",
                           "ts": "2026-01-01T00:00:00.000Z", "hash": h});
        match to {
            Some(to) => {
                m["to"] = json!(to);
                m["body_hash"] = json!(bh);
            }
            None => m["body"] = body,
        }
        (m, h)
    }

    #[test]
    fn canonical_json_sorts_keys_and_normalises_numbers() {
        assert_eq!(
            canonical(&json!({"b": 1.0, "a": "x"})),
            r#"{"a":"x","b":1}"#
        );
    }

    #[test]
    fn chain_verifies_with_a_redacted_private_message_and_detects_tampering() {
        let (m1, h1) = msg(1, GENESIS, json!("hi"), None);
        let (m2, h2) = msg(2, &h1, json!({"secret": 42}), Some(vec!["bob".into()]));
        let (m3, h3) = msg(3, &h2, json!("bye"), None);
        let good = vec![m1.clone(), m2.clone(), m3.clone()];
        assert_eq!(verify_chain("c1", &good), Ok(h3));

        let mut tampered = good.clone();
        tampered[0]["body"] = json!("hello");
        assert_eq!(verify_chain("c1", &tampered).unwrap_err().seq, 1);

        let mut reordered = good.clone();
        reordered.swap(0, 2);
        assert!(verify_chain("c1", &reordered).is_err());

        // The recipient sees the body and its salt; the chain verifies from them.
        let mut with_body = good;
        with_body[1].as_object_mut().unwrap().remove("body_hash");
        with_body[1]["body"] = json!({"secret": 42});
        with_body[1]["body_salt"] = json!(SALT);
        assert!(verify_chain("c1", &with_body).is_ok());
        // Without the salt, the bare body does not reproduce the hash: a
        // guess at a private body cannot be confirmed.
        let mut guessed = with_body.clone();
        guessed[1].as_object_mut().unwrap().remove("body_salt");
        assert_eq!(verify_chain("c1", &guessed).unwrap_err().seq, 2);
    }
}
