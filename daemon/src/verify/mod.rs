//! `mcp-multiplayer verify FILE`: checks an exported transcript offline (no
//! daemon, no network) and says which checks passed, and the first seq that
//! failed one.
//!
//! The checks, each a function of the document alone (`docs/transcripts.md`
//! says what each proves and what it does not):
//! - the document's format and version;
//! - the chain: seqs from 1 without a gap, every link, both entry
//!   generations, and the causal order of bot entries
//!   ([`transcript::verify_chain`]);
//! - the signed heads: each signature valid for a listed key (or a key the
//!   user pinned) within that key's period, each head naming the hash its
//!   entry has, and the last entry covered;
//! - each bot: its exported source hashes to the `code_hash` its
//!   `bot:attach` announced, its manifest to the `manifest_hash`, its params
//!   to the `params_hash`, and the `bot:manifest` entry shows that manifest;
//! - each bot's seed: a `bot:reveal` only after the channel closed, one per
//!   seeded bot, opening the `seed_commitment` of its `bot:attach` with the
//!   state salt the seed derives ([`seed::check_reveal`]);
//! - the builtin bots' own claims ([`claims`]).
//!
//! A problem is tied to the first seq it makes untrustworthy; the report
//! names the smallest.

mod claims;

use crate::bots::seed;
use crate::signing::{PublicKey, SignedHead, verify_head};
use crate::transcript::{self, canonical, sha256_tagged};
use serde_json::Value;
use std::fmt::Write as _;

/// Which keys may have signed the heads.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// Keys to use instead of the document's list (say, the daemon's
    /// `keys.json`, fetched while it was trusted).
    pub keys: Option<Vec<PublicKey>>,
    /// Key ids (fingerprints) the signatures must come from; empty: any
    /// listed key.
    pub pinned: Vec<String>,
}

/// Where a problem lies.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum At {
    /// The document as a whole (its format, its shape).
    Document,
    /// An entry: the first seq the problem makes untrustworthy.
    Seq(i64),
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// `chain`, `signatures`, `bot bot:referee`, `GuessBot`, ...
    pub check: String,
    /// Where it failed, when it did.
    pub failed_at: Option<At>,
    /// What was checked, or what is wrong.
    pub text: String,
}

/// What `verify` found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub summary: String,
    pub findings: Vec<Finding>,
}

impl Report {
    fn ok(&mut self, check: impl Into<String>, text: impl Into<String>) {
        self.findings.push(Finding {
            check: check.into(),
            failed_at: None,
            text: text.into(),
        });
    }

    fn bad(&mut self, check: impl Into<String>, at: At, text: impl Into<String>) {
        self.findings.push(Finding {
            check: check.into(),
            failed_at: Some(at),
            text: text.into(),
        });
    }

    /// The first place a check failed: the document, else the smallest seq.
    pub fn first_bad(&self) -> Option<&At> {
        self.findings
            .iter()
            .filter_map(|f| f.failed_at.as_ref())
            .min()
    }

    pub fn passed(&self) -> bool {
        self.first_bad().is_none()
    }

    /// The readable report.
    pub fn text(&self) -> String {
        let mut t = format!("{}\n", self.summary);
        for f in &self.findings {
            let mark = match &f.failed_at {
                None => "ok    ".to_string(),
                Some(At::Document) => "FAILED".to_string(),
                Some(At::Seq(s)) => format!("FAILED at seq {s}:"),
            };
            let _ = writeln!(t, "{mark} {}: {}", f.check, f.text);
        }
        match self.first_bad() {
            None => t += "VERIFIED: every check passed.\n",
            Some(At::Document) => t += "NOT VERIFIED: the document itself is not a valid export.\n",
            Some(At::Seq(s)) => {
                let _ = writeln!(t, "NOT VERIFIED: first bad seq {s}.");
            }
        }
        t
    }

    /// The report as JSON: `{"verified", "first_bad_seq", "findings"}`
    /// (`first_bad_seq` 0 for a problem with the document itself).
    pub fn json(&self) -> Value {
        let first = match self.first_bad() {
            None => Value::Null,
            Some(At::Document) => Value::from(0),
            Some(At::Seq(s)) => Value::from(*s),
        };
        let findings: Vec<Value> = self
            .findings
            .iter()
            .map(|f| {
                serde_json::json!({
                    "check": f.check,
                    "ok": f.failed_at.is_none(),
                    "seq": match &f.failed_at { Some(At::Seq(s)) => Value::from(*s), Some(At::Document) => Value::from(0), None => Value::Null },
                    "text": f.text,
                })
            })
            .collect();
        serde_json::json!({"verified": self.passed(), "first_bad_seq": first, "findings": findings})
    }
}

/// A hash shortened for the report: 16 hex digits, after its `sha256:` tag.
fn short(h: &str) -> String {
    let (tag, hex) = h.split_at(if h.starts_with("sha256:") { 7 } else { 0 });
    match hex.get(..16) {
        Some(s) if s.len() < hex.len() => format!("{tag}{s}…"),
        _ => h.to_string(),
    }
}

/// Checks an export document. Never fails: every problem is in the report.
pub fn verify(doc: &Value, trust: &Trust) -> Report {
    let mut r = Report::default();
    if doc["format"] != crate::model::EXPORT_FORMAT {
        r.summary = "Not a transcript export.".into();
        r.bad(
            "format",
            At::Document,
            format!(
                "\"format\" is {}, not \"{}\"",
                doc["format"],
                crate::model::EXPORT_FORMAT
            ),
        );
        return r;
    }
    if doc["version"] != crate::model::EXPORT_VERSION {
        r.summary = "An export of a version this verifier does not know.".into();
        r.bad(
            "format",
            At::Document,
            format!(
                "version {} (this verifier reads version {})",
                doc["version"],
                crate::model::EXPORT_VERSION
            ),
        );
        return r;
    }
    if doc.get("page").is_some() {
        r.summary = "One page of an export, not the whole document.".into();
        r.bad(
            "format",
            At::Document,
            "a page of a bigger export: join every page's entries and signed_heads (export_transcript with after = page.cursor) or download GET /channels/{id}/export",
        );
        return r;
    }
    let channel_id = doc["channel"]["channel_id"].as_str().unwrap_or("");
    let entries: &[Value] = doc["entries"].as_array().map_or(&[], Vec::as_slice);
    r.summary = format!(
        "Transcript of channel {channel_id} exported as {} at {}: {} entries, {} bot(s), {} signed head(s).",
        doc["exported_as"].as_str().unwrap_or("?"),
        doc["exported_at"].as_str().unwrap_or("?"),
        entries.len(),
        doc["bots"].as_array().map_or(0, Vec::len),
        doc["signed_heads"].as_array().map_or(0, Vec::len),
    );
    if channel_id.is_empty() || entries.is_empty() {
        r.bad(
            "format",
            At::Document,
            "no channel.channel_id, or no entries",
        );
        return r;
    }
    check_chain(&mut r, channel_id, entries);
    check_reader(&mut r, doc, entries);
    check_heads(&mut r, doc, channel_id, entries, trust);
    check_bots(&mut r, doc, entries);
    check_seeds(&mut r, entries);
    claims::check(&mut r, entries);
    r
}

/// The reader the export names could have read every private body it
/// shows: a private entry's body goes only to its sender and recipients
/// (and a kick seals a seat's earlier ones), so an export relabelled with
/// another reader's name shows bodies that reader never received. Reported
/// only for an export with private entries.
fn check_reader(r: &mut Report, doc: &Value, entries: &[Value]) {
    let reader = doc["exported_as"].as_str().unwrap_or("");
    let (mut private, mut shown) = (0usize, 0usize);
    for e in entries {
        let Some(to) = e.get("to").and_then(Value::as_array) else {
            continue;
        };
        private += 1;
        if e.get("body").is_none() {
            continue;
        }
        shown += 1;
        if e["sender"] != reader && !to.iter().any(|t| t == reader) {
            r.bad(
                "reader",
                At::Seq(e["seq"].as_i64().unwrap_or(0)),
                format!(
                    "the export shows the body of a private message from {} to {}, which {reader:?}, \
                     the reader it names, never receives: it is not {reader:?}'s export",
                    e["sender"],
                    Value::Array(to.clone())
                ),
            );
            return;
        }
    }
    if private > 0 {
        r.ok(
            "reader",
            format!(
                "the {shown} private bod(ies) shown, of {private} private entries, were each sent by or to {reader:?}, the reader the export names"
            ),
        );
    }
}

/// Seqs 1..N in order, each entry in this channel, then the links and the
/// causal order.
fn check_chain(r: &mut Report, channel_id: &str, entries: &[Value]) {
    for (i, e) in entries.iter().enumerate() {
        let want = i as i64 + 1;
        let seq = e["seq"].as_i64();
        if seq != Some(want) {
            r.bad(
                "chain",
                At::Seq(want),
                format!(
                    "entry {} has seq {}: seq {want} is missing or out of order",
                    i + 1,
                    e["seq"]
                ),
            );
            return;
        }
        if let Some(c) = e.get("channel_id")
            && c.as_str() != Some(channel_id)
        {
            r.bad(
                "chain",
                At::Seq(want),
                format!("the entry names channel {c}, not {channel_id}"),
            );
            return;
        }
    }
    match transcript::verify_chain(channel_id, entries) {
        Ok(head) => r.ok(
            "chain",
            format!(
                "{} entries link from the genesis hash to head {}; bot entries keep their causal order",
                entries.len(),
                short(&head)
            ),
        ),
        Err(b) => r.bad("chain", At::Seq(b.seq), b.reason),
    }
}

/// Every signed head: valid for a trusted key, naming its entry's hash, in
/// ascending order; and the last entry covered.
fn check_heads(r: &mut Report, doc: &Value, channel_id: &str, entries: &[Value], trust: &Trust) {
    let keys: Vec<PublicKey> = match &trust.keys {
        Some(k) => k.clone(),
        None => match serde_json::from_value(doc["keys"].clone()) {
            Ok(k) => k,
            Err(e) => {
                r.bad(
                    "signatures",
                    At::Document,
                    format!("the key list is malformed: {e}"),
                );
                return;
            }
        },
    };
    let heads: Vec<SignedHead> = match serde_json::from_value(doc["signed_heads"].clone()) {
        Ok(h) => h,
        Err(e) => {
            r.bad(
                "signatures",
                At::Document,
                format!("signed_heads is malformed: {e}"),
            );
            return;
        }
    };
    // Heads are matched to entries by their seq field, not their position:
    // whether the entries link up is the chain check's question; this one
    // asks whether the daemon vouched for the hash each seq carries.
    let hash_at: std::collections::HashMap<i64, &str> = entries
        .iter()
        .rev()
        .filter_map(|e| Some((e["seq"].as_i64()?, e["hash"].as_str().unwrap_or(""))))
        .collect();
    let last = hash_at.keys().copied().max().unwrap_or(0);
    // The last seq covered by a valid head so far.
    let mut vouched = 0i64;
    let mut used: Vec<String> = Vec::new();
    for h in &heads {
        // (where the problem lies, why): a head that is not a valid
        // signature, or whose hash differs from the entry's, leaves the
        // entries after the last valid head unvouched; a valid head naming a
        // seq the document lacks points at that seq.
        let from = vouched + 1;
        let why = if h.seq <= vouched || h.seq < 1 {
            Some((
                from,
                format!("heads must ascend: seq {} after seq {vouched}", h.seq),
            ))
        } else if h.channel_id != channel_id {
            Some((from, format!("it is for channel {}", h.channel_id)))
        } else if !trust.pinned.is_empty() && !trust.pinned.contains(&h.key_id) {
            Some((
                from,
                format!("signed by key {}, not a key you pinned", h.key_id),
            ))
        } else if let Err(e) = verify_head(h, &keys) {
            Some((from, e.to_string()))
        } else {
            match hash_at.get(&h.seq) {
                None => Some((
                    h.seq,
                    format!(
                        "the daemon signed seq {}, which the document does not have",
                        h.seq
                    ),
                )),
                Some(have) if *have != h.head_hash => Some((
                    from,
                    format!(
                        "the daemon signed head {} for seq {}, but the entry has hash {}",
                        short(&h.head_hash),
                        h.seq,
                        short(have)
                    ),
                )),
                Some(_) => None,
            }
        };
        match why {
            None => {
                vouched = h.seq;
                if !used.contains(&h.key_id) {
                    used.push(h.key_id.clone());
                }
            }
            Some((at, why)) => {
                r.bad(
                    "signatures",
                    At::Seq(at),
                    format!(
                        "the signed head at seq {}: {why}; entries {from}..{} are not vouched for by a valid signature",
                        h.seq,
                        h.seq.clamp(from, last.max(from))
                    ),
                );
                return;
            }
        }
    }
    if vouched < last {
        r.bad(
            "signatures",
            At::Seq(vouched + 1),
            format!("no signed head covers entries {}..{last}", vouched + 1),
        );
        return;
    }
    let keys_text: Vec<String> = used
        .iter()
        .map(|id| {
            let k = keys.iter().find(|k| &k.key_id == id);
            match k {
                Some(k) => format!(
                    "{id} (signing from {}{})",
                    k.valid_from,
                    k.valid_until
                        .as_ref()
                        .map(|u| format!(" to {u}"))
                        .unwrap_or_default()
                ),
                None => id.clone(),
            }
        })
        .collect();
    r.ok(
        "signatures",
        format!(
            "{} signed head(s) valid, the last at seq {last}; signed by {}{}",
            heads.len(),
            keys_text.join(", "),
            if trust.pinned.is_empty() && trust.keys.is_none() {
                ". These keys come from the document itself: compare the fingerprint with the server's /.well-known/mcp-multiplayer/keys.json (or pass --key)"
            } else {
                ", a key you trusted"
            }
        ),
    );
}

/// Each announced bot: source and manifest present and hashing to what the
/// chain announced.
fn check_bots(r: &mut Report, doc: &Value, entries: &[Value]) {
    let bots: &[Value] = doc["bots"].as_array().map_or(&[], Vec::as_slice);
    for e in entries {
        let body = &e["body"];
        if e["kind"] != "system" || body["type"] != "bot:attach" {
            continue;
        }
        let seq = e["seq"].as_i64().unwrap_or(0);
        let bot_id = body["bot_id"].as_str().unwrap_or("");
        let check = format!("bot {bot_id}");
        let Some(b) = bots.iter().find(|b| b["bot_id"] == bot_id) else {
            r.bad(
                check,
                At::Seq(seq),
                "announced here, but the export has no source for it",
            );
            continue;
        };
        let source = b["source"].as_str().unwrap_or("");
        let code_hash = sha256_tagged(source.as_bytes());
        let manifest_hash = sha256_tagged(canonical(&b["manifest"]).as_bytes());
        let shown = entries.iter().find(|m| {
            m["kind"] == "system"
                && m["body"]["type"] == "bot:manifest"
                && m["body"]["bot_id"] == bot_id
        });
        let shown_manifest = shown.map(|m| {
            let mut v = m["body"].clone();
            if let Some(o) = v.as_object_mut() {
                o.remove("type");
                o.remove("bot_id");
            }
            v
        });
        let why = if body["code_hash"].as_str() != Some(code_hash.as_str()) {
            Some(format!(
                "the exported source hashes to {code_hash}, but the chain announced {}",
                body["code_hash"]
            ))
        } else if body["manifest_hash"].as_str() != Some(manifest_hash.as_str()) {
            Some(format!(
                "the exported manifest hashes to {manifest_hash}, but the chain announced {}",
                body["manifest_hash"]
            ))
        } else if b["code_hash"] != body["code_hash"] || b["manifest_hash"] != body["manifest_hash"]
        {
            Some("the export's own code_hash or manifest_hash differs from the chain's".into())
        } else if shown_manifest.as_ref() != Some(&b["manifest"]) {
            Some("the bot:manifest entry does not show the exported manifest".into())
        } else if let Some(announced) = body["params_hash"].as_str() {
            match exported_params(&b["params"]) {
                None => Some("the export's params are not an object".into()),
                Some(p) if seed::params_hash(&p) != announced => Some(format!(
                    "the exported params hash to {}, but the chain announced {announced}",
                    seed::params_hash(&p)
                )),
                Some(_) => None,
            }
        } else {
            None
        };
        match why {
            Some(w) => r.bad(check, At::Seq(seq), w),
            None => r.ok(
                check,
                format!(
                    "{}{} ({} lines): the exported source is the code announced at seq {seq} ({}), and its manifest hashes to the announced {}{}",
                    match body["origin"].as_str() {
                        Some("builtin") => "builtin ",
                        Some("custom") => "custom code ",
                        _ => "",
                    },
                    body["name"].as_str().unwrap_or("?"),
                    source.lines().count(),
                    short(&code_hash),
                    short(&manifest_hash),
                    if body["params_hash"].is_string() {
                        ", its params to the announced params_hash"
                    } else {
                        ""
                    }
                ),
            ),
        }
    }
}

/// A bot's exported params: an object (absent or `null` is `{}`).
fn exported_params(v: &Value) -> Option<serde_json::Map<String, Value>> {
    match v {
        Value::Null => Some(serde_json::Map::new()),
        Value::Object(m) => Some(m.clone()),
        _ => None,
    }
}

/// What the chain says about one bot's seed.
struct Seeded<'a> {
    bot_id: &'a str,
    attach_seq: i64,
    commitment: Option<&'a str>,
    revealed_at: Option<i64>,
}

/// Every `bot:reveal`: after the channel closed, at most one per bot, for a
/// bot whose `bot:attach` committed to a seed, opening that commitment with
/// the state salt the seed derives; and every seeded bot revealed once the
/// channel closed (the daemon writes the reveals in the write that closes
/// it). A bad reveal is named at its seq; a missing one at the close.
fn check_seeds(r: &mut Report, entries: &[Value]) {
    let mut bots: Vec<Seeded<'_>> = Vec::new();
    let mut closed: Option<i64> = None;
    for e in entries {
        if e["kind"] != "system" || e["sender"] != "system" {
            continue;
        }
        let body = &e["body"];
        let seq = e["seq"].as_i64().unwrap_or(0);
        match body["type"].as_str() {
            Some("bot:attach") => bots.push(Seeded {
                bot_id: body["bot_id"].as_str().unwrap_or(""),
                attach_seq: seq,
                commitment: body["seed_commitment"].as_str(),
                revealed_at: None,
            }),
            Some("channel:closed") => {
                closed.get_or_insert(seq);
            }
            Some("bot:reveal") => {
                let bot_id = body["bot_id"].as_str().unwrap_or("");
                let check = format!("seed {bot_id}");
                let Some(b) = bots.iter_mut().rev().find(|b| b.bot_id == bot_id) else {
                    r.bad(check, At::Seq(seq), "a reveal for a bot never attached");
                    continue;
                };
                let why = if let Some(first) = b.revealed_at {
                    Some(format!("a second reveal (the first is at seq {first})"))
                } else if closed.is_none() {
                    Some("revealed while the channel is open: the players could predict every later draw".into())
                } else if let Some(c) = b.commitment {
                    seed::check_reveal(
                        c,
                        body["seed"].as_str().unwrap_or(""),
                        body["state_salt"].as_str().unwrap_or(""),
                    )
                    .err()
                    .map(|e| format!("{} (committed at seq {})", e.0, b.attach_seq))
                } else {
                    Some(format!(
                        "its bot:attach at seq {} committed to no seed",
                        b.attach_seq
                    ))
                };
                b.revealed_at.get_or_insert(seq);
                match why {
                    Some(w) => r.bad(check, At::Seq(seq), w),
                    None => r.ok(
                        check,
                        format!(
                            "the reveal at seq {seq} opens the seed commitment of seq {}, and its state salt is the one the seed derives",
                            b.attach_seq
                        ),
                    ),
                }
            }
            _ => {}
        }
    }
    for b in bots
        .iter()
        .filter(|b| b.commitment.is_some() && b.revealed_at.is_none())
    {
        let check = format!("seed {}", b.bot_id);
        match closed {
            Some(c) => r.bad(
                check,
                At::Seq(c),
                format!(
                    "the channel closed at seq {c} without revealing the seed committed at seq {}",
                    b.attach_seq
                ),
            ),
            None => r.ok(
                check,
                format!(
                    "committed at seq {}; revealed when the channel closes",
                    b.attach_seq
                ),
            ),
        }
    }
}

#[cfg(test)]
mod tests;
