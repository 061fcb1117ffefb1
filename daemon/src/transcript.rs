//! The channel transcript as a hash chain.
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
//! [`verify_chain`] is the checker; `docs/architecture.md` says who may
//! rely on what.

use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// `hash_0`: 64 hex zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// RFC 8785 canonical JSON of a value.
pub fn canonical<T: Serialize + ?Sized>(v: &T) -> String {
    // The values the daemon canonicalises (JSON values and the model's
    // structs, with string keys only) always serialise.
    serde_json_canonicalizer::to_string(&v).unwrap_or_default()
}

/// A message body in its one stored form: RFC 8785 canonical JSON, made once
/// when the body enters the daemon and then stored, hashed and measured as
/// these bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalJson(String);

impl CanonicalJson {
    /// Canonicalises a value.
    pub fn of<T: Serialize + ?Sized>(v: &T) -> CanonicalJson {
        CanonicalJson(canonical(v))
    }

    /// Wraps text the store holds, which it wrote canonical.
    pub(crate) fn from_stored(s: String) -> CanonicalJson {
        CanonicalJson(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Size in bytes (what body limits measure).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value (parsed from the canonical text).
    pub fn to_value(&self) -> Value {
        serde_json::from_str(&self.0).unwrap_or(Value::Null)
    }
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_tagged(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// `body_hash` of a private message, from its salt and canonical body.
pub fn private_body_hash(salt: &str, body: &str) -> String {
    sha256_tagged(format!("{salt}:{body}").as_bytes())
}

/// The entry the chain covers for one message, as a value (for checkers).
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

/// What the chain records of one message, before it is linked.
pub struct Entry<'a> {
    pub seq: i64,
    pub channel_id: &'a str,
    pub sender: &'a str,
    pub kind: &'a str,
    pub ts: &'a str,
    pub body: &'a CanonicalJson,
    /// Recipients of a private message, with the salt of its body hash.
    pub private: Option<(&'a [String], &'a str)>,
}

/// A message's place in the chain: its body hash and its link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub body_hash: String,
    pub hash: String,
}

impl Entry<'_> {
    /// The entry's canonical JSON, built around the body's canonical text
    /// instead of serialising the body again. Keys in RFC 8785 order (all
    /// ASCII, so byte order): body, body_hash, channel_id, kind, sender, seq,
    /// to, ts. Equal to `canonical(&entry(..))` (tested below).
    fn canonical(&self, body_hash: &str) -> String {
        let s = |v: &str| canonical(v);
        match self.private {
            None => format!(
                "{{\"body\":{},\"channel_id\":{},\"kind\":{},\"sender\":{},\"seq\":{},\"ts\":{}}}",
                self.body.as_str(),
                s(self.channel_id),
                s(self.kind),
                s(self.sender),
                self.seq,
                s(self.ts)
            ),
            Some((to, _)) => format!(
                "{{\"body_hash\":{},\"channel_id\":{},\"kind\":{},\"sender\":{},\"seq\":{},\"to\":{},\"ts\":{}}}",
                s(body_hash),
                s(self.channel_id),
                s(self.kind),
                s(self.sender),
                self.seq,
                canonical(to),
                s(self.ts)
            ),
        }
    }

    /// Computes the body hash and `hash_n` from `hash_{n-1}`.
    pub fn seal(&self, prev_hex: &str) -> Sealed {
        let body_hash = match self.private {
            Some((_, salt)) => private_body_hash(salt, self.body.as_str()),
            None => sha256_tagged(self.body.as_str().as_bytes()),
        };
        let hash = link_canonical(prev_hex, &self.canonical(&body_hash));
        Sealed { body_hash, hash }
    }
}

/// `hash_n` from `hash_{n-1}` (hex) and entry `n`.
pub fn link(prev_hex: &str, entry: &Value) -> String {
    link_canonical(prev_hex, &canonical(entry))
}

fn link_canonical(prev_hex: &str, entry: &str) -> String {
    let mut h = Sha256::new();
    let mut prev = [0u8; 32];
    // A malformed previous hash can only come from a corrupted database; it
    // then hashes as zeros and the chain check reports the break.
    let _ = hex::decode_to_slice(prev_hex, &mut prev);
    h.update(prev);
    h.update(entry.as_bytes());
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
            (_, Some(b), Some(Value::String(salt))) => private_body_hash(salt, &canonical(b)),
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
            Some(_) => private_body_hash(SALT, &canonical(&body)),
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

    #[test]
    fn sealing_splices_the_canonical_body_exactly_as_canonical_json_would() {
        let bodies = [
            json!("hi"),
            json!(""),
            json!({"b": [1, 2.5, -0.0, 1e21], "a": {"z": null, "é": "\u{1F600}"}}),
            json!({"ctl": "\u{0}\u{1f}\"\\/\n\t", "big": 12345678901234567890u64}),
            json!({"type": "bot:manifest", "params": {}}),
        ];
        let to = vec!["bob".to_string(), "bot:referee".to_string()];
        for (i, body) in bodies.iter().enumerate() {
            let canon = CanonicalJson::of(body);
            for private in [None, Some((to.as_slice(), SALT))] {
                let e = Entry {
                    seq: i as i64 + 1,
                    channel_id: "ch_\"x",
                    sender: "bot:referee",
                    kind: "bot",
                    ts: "2026-01-01T00:00:00.000Z",
                    body: &canon,
                    private,
                };
                let sealed = e.seal(GENESIS);
                let value = entry(
                    e.seq,
                    e.channel_id,
                    e.sender,
                    e.kind,
                    e.ts,
                    body,
                    &sealed.body_hash,
                    private.map(|(t, _)| t),
                );
                assert_eq!(e.canonical(&sealed.body_hash), canonical(&value));
                assert_eq!(sealed.hash, link(GENESIS, &value));
            }
        }
    }
}
