//! The channel transcript as a hash chain, and the checker every member can
//! run over what `sync_messages` returned.
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
//!
//! A bot's entries (its `bot` posts, and the `control` messages `bot:error`
//! and `bot:state`) also carry `cause`: the `seq` of the message whose hook
//! wrote them. Hooks run in transcript order and a hook sees its trigger and
//! what came before it, never later messages, so `cause` is what the bot had
//! seen when it wrote the entry: a commitment at seq 10 with cause 7 was made
//! before the bot saw the guesses at 8 and 9, wherever it landed in the chain.
//! The last entry a hook wrote carries `state_hash`, the salted hash of the
//! bot's state after that hook (`sha256(state_salt + ":" + canonical_json(state))`,
//! the salt a secret of the bot's), so every state a hook leaves is
//! committed; a hook that changes its state without posting writes a
//! `bot:state` entry for it. Both fields are in the hashed entry; entries
//! without them hash exactly as before, so transcripts written before they
//! existed still verify. Channels created with `transcript_format` 2 (in
//! their `channel:created` body) have a `cause` on every bot entry.
//!
//! [`verify_chain`] checks the links and the causal order;
//! `docs/bots.md` says what each check proves.

use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

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

/// `state_hash` of a bot's state, from the bot's state salt and the state's
/// canonical JSON.
pub fn state_hash(salt: &str, state: &CanonicalJson) -> String {
    sha256_tagged(format!("{salt}:{}", state.as_str()).as_bytes())
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
    /// A bot's entry: the message whose hook wrote it.
    pub cause: Option<i64>,
    /// The last entry of a hook: the bot's state hash after it.
    pub state_hash: Option<&'a str>,
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
    /// ASCII, so byte order): body, body_hash, cause, channel_id, kind,
    /// sender, seq, state_hash, to, ts. Equal to `canonical(&self.value(..))`
    /// (tested below).
    fn canonical(&self, body_hash: &str) -> String {
        let s = |v: &str| canonical(v);
        let mut out = String::with_capacity(self.body.len() + 256);
        out.push('{');
        match self.private {
            None => {
                out.push_str("\"body\":");
                out.push_str(self.body.as_str());
            }
            Some(_) => {
                out.push_str("\"body_hash\":");
                out.push_str(&s(body_hash));
            }
        }
        if let Some(c) = self.cause {
            out.push_str(&format!(",\"cause\":{c}"));
        }
        out.push_str(&format!(
            ",\"channel_id\":{},\"kind\":{},\"sender\":{},\"seq\":{}",
            s(self.channel_id),
            s(self.kind),
            s(self.sender),
            self.seq
        ));
        if let Some(h) = self.state_hash {
            out.push_str(&format!(",\"state_hash\":{}", s(h)));
        }
        if let Some((to, _)) = self.private {
            out.push_str(&format!(",\"to\":{}", canonical(to)));
        }
        out.push_str(&format!(",\"ts\":{}}}", s(self.ts)));
        out
    }

    /// The entry as a JSON value (what checkers rebuild from a message).
    pub fn value(&self, body_hash: &str) -> Value {
        let mut e = Map::new();
        e.insert("seq".into(), json!(self.seq));
        e.insert("channel_id".into(), json!(self.channel_id));
        e.insert("sender".into(), json!(self.sender));
        e.insert("kind".into(), json!(self.kind));
        e.insert("ts".into(), json!(self.ts));
        match self.private {
            None => {
                e.insert("body".into(), self.body.to_value());
            }
            Some((to, _)) => {
                e.insert("to".into(), json!(to));
                e.insert("body_hash".into(), json!(body_hash));
            }
        }
        if let Some(c) = self.cause {
            e.insert("cause".into(), json!(c));
        }
        if let Some(h) = self.state_hash {
            e.insert("state_hash".into(), json!(h));
        }
        Value::Object(e)
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

fn broken(seq: i64, reason: impl Into<String>) -> ChainBreak {
    ChainBreak {
        seq,
        reason: reason.into(),
    }
}

/// Checks a transcript as clients see it (messages with `seq`, `hash`, and
/// either `body` or `body_hash`), from `seq` 1: every link, then the causal
/// order of every bot entry (see [`Causes::check`]). Returns the head hash.
///
/// # Errors
/// The first entry that breaks the chain or the causal order, with why.
pub fn verify_chain(channel_id: &str, messages: &[Value]) -> Result<String, ChainBreak> {
    let mut prev = GENESIS.to_string();
    let mut causes = Causes::default();
    for (i, m) in messages.iter().enumerate() {
        let seq = m["seq"].as_i64().unwrap_or(-1);
        if seq != i as i64 + 1 {
            return Err(broken(seq, format!("expected seq {}", i + 1)));
        }
        let h = link(&prev, &entry_of(channel_id, m)?);
        if m["hash"].as_str() != Some(h.as_str()) {
            return Err(broken(seq, "hash does not match"));
        }
        causes.check(m)?;
        prev = h;
    }
    Ok(prev)
}

/// The hashed entry of a message as a member received it.
fn entry_of(channel_id: &str, m: &Value) -> Result<Value, ChainBreak> {
    let seq = m["seq"].as_i64().unwrap_or(-1);
    let mut e = Map::new();
    e.insert("seq".into(), json!(seq));
    e.insert("channel_id".into(), json!(channel_id));
    for k in ["sender", "kind", "ts"] {
        e.insert(k.into(), json!(m[k].as_str().unwrap_or("")));
    }
    match (
        m.get("to"),
        m.get("body_hash"),
        m.get("body"),
        m.get("body_salt"),
    ) {
        (None, _, Some(b), _) => {
            e.insert("body".into(), b.clone());
        }
        (Some(to), Some(Value::String(h)), _, _) => {
            e.insert("to".into(), to.clone());
            e.insert("body_hash".into(), json!(h));
        }
        (Some(to), _, Some(b), Some(Value::String(salt))) => {
            e.insert("to".into(), to.clone());
            e.insert(
                "body_hash".into(),
                json!(private_body_hash(salt, &canonical(b))),
            );
        }
        (Some(_), _, Some(_), _) => {
            return Err(broken(
                seq,
                "a private message with a body but no body_salt",
            ));
        }
        _ => return Err(broken(seq, "no body or body_hash")),
    }
    match m.get("cause") {
        None => {}
        Some(c) if c.is_i64() => {
            e.insert("cause".into(), c.clone());
        }
        Some(_) => return Err(broken(seq, "cause is not an integer")),
    }
    match m.get("state_hash") {
        None => {}
        Some(h) if h.is_string() => {
            e.insert("state_hash".into(), h.clone());
        }
        Some(_) => return Err(broken(seq, "state_hash is not a string")),
    }
    Ok(Value::Object(e))
}

/// What a message can trigger, for the causal check of later bot entries.
#[derive(Debug, Clone)]
enum Trigger {
    /// `bot:attach` of this bot: its `on_init`.
    Attach(String),
    /// `seat:filled` / `seat:moved`: every bot's `on_join`.
    Seat,
    /// A user message, with its recipients when private: `on_message` of
    /// every bot that may read it.
    User(Option<Vec<String>>),
    /// Anything else triggers no hook.
    Nothing,
}

/// The causal order of bot entries, checked entry by entry in seq order.
#[derive(Default)]
struct Causes {
    /// The channel's format requires a cause on every bot entry (format 2
    /// from its first message on, or once any bot entry had one).
    required: bool,
    /// What each earlier message could trigger (index `seq - 1`).
    triggers: Vec<Trigger>,
    /// Each bot's `bot:attach` seq.
    attached: HashMap<String, i64>,
    /// Each bot's latest cause.
    latest: HashMap<String, i64>,
}

impl Causes {
    /// Checks one message (the messages before it were checked already):
    ///
    /// - only a bot's entries (kind `bot`, or `control` from a bot) carry a
    ///   `cause`, and in a format-2 channel every one does;
    /// - the cause is earlier than the entry, and not before the bot's own
    ///   `bot:attach`;
    /// - the cause is a message that runs one of this bot's hooks: its own
    ///   `bot:attach` (`on_init`), a seat filled or moved (`on_join`), or a
    ///   user message the bot may read, public or private to it
    ///   (`on_message`);
    /// - one bot's causes never go backwards (hooks run in transcript
    ///   order);
    /// - `state_hash` only on an entry with a cause; `bot:state` has both;
    ///   `bot:error` names its cause as its `seq`.
    fn check(&mut self, m: &Value) -> Result<(), ChainBreak> {
        let seq = m["seq"].as_i64().unwrap_or(-1);
        let kind = m["kind"].as_str().unwrap_or("");
        let sender = m["sender"].as_str().unwrap_or("");
        let body = m.get("body");
        let event = body.and_then(|b| b["type"].as_str()).unwrap_or("");
        let cause = m.get("cause").and_then(Value::as_i64);
        let bots_entry = kind == "bot" || (kind == "control" && sender != "system");
        if m.get("state_hash").is_some() && cause.is_none() {
            return Err(broken(seq, "a state_hash without a cause"));
        }
        match cause {
            None if bots_entry && self.required => {
                return Err(broken(
                    seq,
                    format!(
                        "{sender}'s entry has no cause (every bot entry of this channel needs one)"
                    ),
                ));
            }
            None => {}
            Some(_) if !bots_entry => {
                return Err(broken(seq, "only a bot's entries have a cause"));
            }
            Some(c) => self.check_cause(seq, sender, c)?,
        }
        if kind == "control" && event == "bot:state" && m.get("state_hash").is_none() {
            return Err(broken(seq, "a bot:state entry without a state_hash"));
        }
        if let (Some(c), "bot:error") = (cause, event)
            && body.and_then(|b| b["seq"].as_i64()) != Some(c)
        {
            return Err(broken(seq, "a bot:error whose seq is not its cause"));
        }
        if cause.is_some() {
            // From the first entry with a cause on, the daemon that wrote
            // this chain records them: none may be missing later.
            self.required = true;
        }
        let trigger = match (kind, event) {
            ("user", _) => Trigger::User(
                m.get("to")
                    .and_then(|t| serde_json::from_value::<Vec<String>>(t.clone()).ok()),
            ),
            ("system", "channel:created") => {
                if body.and_then(|b| b["transcript_format"].as_u64()) >= Some(2) {
                    self.required = true;
                }
                Trigger::Nothing
            }
            ("system", "bot:attach") => {
                let bot = body.and_then(|b| b["bot_id"].as_str()).unwrap_or("");
                self.attached.entry(bot.to_string()).or_insert(seq);
                Trigger::Attach(bot.to_string())
            }
            ("system", "seat:filled" | "seat:moved") => Trigger::Seat,
            _ => Trigger::Nothing,
        };
        self.triggers.push(trigger);
        Ok(())
    }

    fn check_cause(&mut self, seq: i64, bot: &str, cause: i64) -> Result<(), ChainBreak> {
        if cause < 1 || cause >= seq {
            return Err(broken(
                seq,
                format!("cause {cause} is not an earlier message"),
            ));
        }
        let Some(&attached) = self.attached.get(bot) else {
            return Err(broken(
                seq,
                format!("{bot} writes with cause {cause} but was never attached before it"),
            ));
        };
        if cause < attached {
            return Err(broken(
                seq,
                format!("cause {cause} precedes {bot}'s attachment at seq {attached}"),
            ));
        }
        let runs_a_hook = match &self.triggers[(cause - 1) as usize] {
            Trigger::Attach(b) => b == bot,
            Trigger::Seat | Trigger::User(None) => true,
            Trigger::User(Some(to)) => to.iter().any(|t| t == bot),
            Trigger::Nothing => false,
        };
        if !runs_a_hook {
            return Err(broken(
                seq,
                format!("cause {cause} is not a message that runs a hook of {bot}"),
            ));
        }
        if let Some(&latest) = self.latest.get(bot)
            && cause < latest
        {
            return Err(broken(
                seq,
                format!("{bot}'s cause goes back from {latest} to {cause}"),
            ));
        }
        self.latest.insert(bot.to_string(), cause);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SALT: &str = "00112233445566778899aabbccddeeff";
    const TS: &str = "2026-01-01T00:00:00.000Z";

    /// Builds chains the way the store seals them.
    struct Chain {
        head: String,
        messages: Vec<Value>,
    }

    /// One message to append: sender, kind, body, recipients, cause, state hash.
    struct M<'a> {
        sender: &'a str,
        kind: &'a str,
        body: Value,
        to: Option<Vec<String>>,
        cause: Option<i64>,
        state_hash: Option<&'a str>,
    }

    fn m<'a>(sender: &'a str, kind: &'a str, body: Value) -> M<'a> {
        M {
            sender,
            kind,
            body,
            to: None,
            cause: None,
            state_hash: None,
        }
    }

    impl Chain {
        fn new() -> Chain {
            Chain {
                head: GENESIS.into(),
                messages: Vec::new(),
            }
        }

        /// Appends (sealed as the store does) and returns the message as a
        /// reader of its body sees it.
        fn push(&mut self, msg: M<'_>) -> &mut Chain {
            let seq = self.messages.len() as i64 + 1;
            let canon = CanonicalJson::of(&msg.body);
            let e = Entry {
                seq,
                channel_id: "c1",
                sender: msg.sender,
                kind: msg.kind,
                ts: TS,
                body: &canon,
                private: msg.to.as_deref().map(|t| (t, SALT)),
                cause: msg.cause,
                state_hash: msg.state_hash,
            };
            let sealed = e.seal(&self.head);
            let mut v = json!({"seq": seq, "sender": msg.sender, "kind": msg.kind,
                               "ts": TS, "hash": sealed.hash, "body": msg.body});
            if let Some(to) = &msg.to {
                v["to"] = json!(to);
                v["body_salt"] = json!(SALT);
            }
            if let Some(c) = msg.cause {
                v["cause"] = json!(c);
            }
            if let Some(h) = msg.state_hash {
                v["state_hash"] = json!(h);
            }
            self.head = sealed.hash;
            self.messages.push(v);
            self
        }
    }

    fn msg(seq: i64, prev: &str, body: Value, to: Option<Vec<String>>) -> (Value, String) {
        let canon = CanonicalJson::of(&body);
        let e = Entry {
            seq,
            channel_id: "c1",
            sender: "alice",
            kind: "user",
            ts: TS,
            body: &canon,
            private: to.as_deref().map(|t| (t, SALT)),
            cause: None,
            state_hash: None,
        };
        let sealed = e.seal(prev);
        let mut m = json!({"seq": seq, "sender": "alice", "kind": "user",
                           "ts": TS, "hash": sealed.hash});
        match to {
            Some(to) => {
                m["to"] = json!(to);
                m["body_hash"] = json!(sealed.body_hash);
            }
            None => m["body"] = body,
        }
        (m, sealed.hash)
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
                for (cause, state_hash) in [
                    (None, None),
                    (Some(3), None),
                    (Some(4), Some("sha256:ab\"c")),
                ] {
                    let e = Entry {
                        seq: i as i64 + 1,
                        channel_id: "ch_\"x",
                        sender: "bot:referee",
                        kind: "bot",
                        ts: TS,
                        body: &canon,
                        private,
                        cause,
                        state_hash,
                    };
                    let sealed = e.seal(GENESIS);
                    let value = e.value(&sealed.body_hash);
                    assert_eq!(e.canonical(&sealed.body_hash), canonical(&value));
                    assert_eq!(sealed.hash, link(GENESIS, &value));
                }
            }
        }
    }

    /// A format-2 channel: alice and bob seated, bot:referee attached.
    fn game() -> Chain {
        let mut c = Chain::new();
        c.push(m(
            "system",
            "system",
            json!({"type": "channel:created", "name": "n", "slots": [], "allow_network": false,
                   "transcript_format": 2}),
        ))
        .push(m(
            "system",
            "system",
            json!({"type": "bot:attach", "bot_id": "bot:referee", "name": "G",
                   "code_hash": "sha256:c", "manifest_hash": "sha256:m", "network": false}),
        ))
        .push(m(
            "system",
            "system",
            json!({"type": "seat:filled", "slot": "alice"}),
        ));
        c
    }

    fn bot_post<'a>(kind: &str, cause: i64, state_hash: Option<&'a str>) -> M<'a> {
        M {
            cause: Some(cause),
            state_hash,
            ..m("bot:referee", "bot", json!({"type": kind, "data": {}}))
        }
    }

    #[test]
    fn the_guess_race_verifies_with_the_commitment_caused_before_the_guesses() {
        // The race: both guesses land (5, 6) before the commitment its
        // on_join hook of seq 4 wrote (7); the hints come after, caused by 5
        // and 6; the last hook posts twice, its state hash on the last post.
        let mut c = game();
        c.push(m(
            "system",
            "system",
            json!({"type": "seat:filled", "slot": "bob"}),
        ))
        .push(m("alice", "user", json!("guess 50")))
        .push(m("bob", "user", json!("guess 20")))
        .push(bot_post("commit", 4, Some("sha256:s1")))
        .push(bot_post("hint", 5, Some("sha256:s2")))
        .push(bot_post("hint", 6, None))
        .push(bot_post("reveal", 6, Some("sha256:s3")));
        assert_eq!(verify_chain("c1", &c.messages), Ok(c.head.clone()));
        let commit = &c.messages[6];
        assert!(commit["cause"].as_i64() < c.messages[4]["seq"].as_i64());
    }

    #[test]
    fn a_tampered_cause_breaks_the_link() {
        let mut c = game();
        c.push(m("alice", "user", json!("guess 50")))
            .push(bot_post("commit", 3, Some("sha256:s")));
        assert!(verify_chain("c1", &c.messages).is_ok());
        // A server (or anyone) claiming the commitment came after the guess.
        let mut late = c.messages.clone();
        late[4]["cause"] = json!(4);
        assert_eq!(
            verify_chain("c1", &late),
            Err(broken(5, "hash does not match"))
        );
        // Or that it had none.
        let mut none = c.messages.clone();
        none[4].as_object_mut().unwrap().remove("cause");
        assert_eq!(verify_chain("c1", &none).unwrap_err().seq, 5);
    }

    /// Resealed chains (a forger who recomputes every hash) whose causes
    /// break the causal rules, each caught at the entry, with its reason.
    #[test]
    fn a_resealed_chain_with_impossible_causes_fails_the_causal_check() {
        let cases: Vec<(&str, Vec<M<'static>>, &str)> = vec![
            (
                "cause not earlier",
                vec![bot_post("x", 4, None)],
                "not an earlier message",
            ),
            (
                "cause in the future",
                vec![bot_post("x", 9, None)],
                "not an earlier message",
            ),
            (
                "cause zero",
                vec![bot_post("x", 0, None)],
                "not an earlier message",
            ),
            (
                "cause before the attach",
                vec![bot_post("x", 1, None)],
                "precedes bot:referee's attachment",
            ),
            (
                "a bot post as cause (bots never trigger bots)",
                vec![bot_post("x", 3, None), bot_post("y", 4, None)],
                "not a message that runs a hook",
            ),
            (
                "another bot's attach",
                vec![
                    m(
                        "system",
                        "system",
                        json!({"type": "bot:attach", "bot_id": "bot:other"}),
                    ),
                    bot_post("x", 4, None),
                ],
                "not a message that runs a hook",
            ),
            (
                "a private message the bot may not read",
                vec![
                    M {
                        to: Some(vec!["bob".into()]),
                        ..m("alice", "user", json!("psst"))
                    },
                    bot_post("x", 4, None),
                ],
                "not a message that runs a hook",
            ),
            (
                "causes going backwards",
                vec![
                    m("alice", "user", json!("one")),
                    bot_post("x", 4, None),
                    bot_post("y", 3, None),
                ],
                "goes back from 4 to 3",
            ),
            (
                "an unattached bot",
                vec![M {
                    sender: "bot:ghost",
                    ..bot_post("x", 3, None)
                }],
                "never attached",
            ),
            (
                "a bot entry without a cause in a format-2 channel",
                vec![m("bot:referee", "bot", json!({"type": "x", "data": {}}))],
                "has no cause",
            ),
            (
                "a user message with a cause",
                vec![M {
                    cause: Some(3),
                    ..m("alice", "user", json!("hi"))
                }],
                "only a bot's entries",
            ),
            (
                "a state hash without a cause",
                vec![M {
                    state_hash: Some("sha256:s"),
                    ..m("alice", "user", json!("hi"))
                }],
                "state_hash without a cause",
            ),
            (
                "a bot:state without a state hash",
                vec![M {
                    cause: Some(3),
                    ..m(
                        "bot:referee",
                        "control",
                        json!({"type": "bot:state", "bot_id": "bot:referee"}),
                    )
                }],
                "without a state_hash",
            ),
            (
                "a bot:error naming another seq than its cause",
                vec![M {
                    cause: Some(3),
                    ..m(
                        "bot:referee",
                        "control",
                        json!({"type": "bot:error", "bot_id": "bot:referee", "seq": 2, "reason": "x"}),
                    )
                }],
                "not its cause",
            ),
        ];
        for (name, extra, why) in cases {
            let mut c = game();
            let n = extra.len();
            for e in extra {
                c.push(e);
            }
            let err = verify_chain("c1", &c.messages).expect_err(name);
            assert_eq!(err.seq, 3 + n as i64, "{name}: {err:?}");
            assert!(err.reason.contains(why), "{name}: {err:?}");
        }
    }

    #[test]
    fn a_chain_written_before_causes_existed_still_verifies_but_not_a_mix() {
        // Format 1: no transcript_format, bot posts without cause.
        let mut old = Chain::new();
        old.push(m(
            "system",
            "system",
            json!({"type": "channel:created", "name": "n"}),
        ))
        .push(m(
            "system",
            "system",
            json!({"type": "bot:attach", "bot_id": "bot:referee"}),
        ))
        .push(m(
            "bot:referee",
            "bot",
            json!({"type": "hello", "data": {}}),
        ))
        .push(m(
            "bot:referee",
            "control",
            json!({"type": "bot:error", "bot_id": "bot:referee", "seq": 2, "reason": "x"}),
        ));
        assert!(verify_chain("c1", &old.messages).is_ok());
        // The daemon upgraded mid-channel: causes from then on, checked...
        old.push(m("alice", "user", json!("hi")))
            .push(bot_post("echo", 5, Some("sha256:s")));
        assert!(verify_chain("c1", &old.messages).is_ok());
        // ...and never missing again.
        old.push(m("bot:referee", "bot", json!({"type": "echo", "data": {}})));
        let err = verify_chain("c1", &old.messages).unwrap_err();
        assert_eq!(err.seq, 7);
        assert!(err.reason.contains("has no cause"), "{err:?}");
    }
}
