//! Reading a [`HookOutcome`]: what `#[derive(Deserialize)]` with
//! `#[serde(tag = "status")]` accepts, without its detour.
//!
//! The derived reader of an internally tagged enum first copies the whole
//! object into serde's private buffer (the tag may come last), then reads
//! the variant from that copy: every post and the whole state are built
//! twice. The daemon reads one outcome per hook and the runner one per
//! harness result, so this reader takes the common case straight: when
//! `status` is the object's first key (as every writer of this crate puts
//! it), the rest of the object is read directly into the variant's fields.
//! Anything else (the tag later, or a sequence) goes the derived way. Both
//! ways accept and refuse the same inputs, a duplicate `status` included
//! (`tests::the_direct_reader_agrees_with_the_derived_one`).

use super::{HookError, HookOutcome, Post, Timings};
use serde::Deserialize;
use serde::de::value::{MapAccessDeserializer, MapDeserializer, SeqAccessDeserializer};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::fmt;

/// The derived reader, for the uncommon shapes (and the tests).
#[derive(Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub(crate) enum Tagged {
    Ok {
        posts: Vec<Post>,
        state: Value,
        #[serde(default)]
        logs: String,
        #[serde(default)]
        timings: Timings,
        #[serde(default)]
        manifest: Option<Value>,
    },
    Error {
        error: HookError,
    },
}

impl From<Tagged> for HookOutcome {
    fn from(t: Tagged) -> HookOutcome {
        match t {
            Tagged::Ok {
                posts,
                state,
                logs,
                timings,
                manifest,
            } => HookOutcome::Ok {
                posts,
                state,
                logs,
                timings,
                manifest,
            },
            Tagged::Error { error } => HookOutcome::Error { error },
        }
    }
}

/// The fields of [`Tagged::Ok`] after the tag; a second `status` is kept
/// to be refused, as the derived reader refuses it.
#[derive(Deserialize)]
struct OkFields {
    posts: Vec<Post>,
    state: Value,
    #[serde(default)]
    logs: String,
    #[serde(default)]
    timings: Timings,
    #[serde(default)]
    manifest: Option<Value>,
    #[serde(default)]
    status: Option<IgnoredAny>,
}

/// The fields of [`Tagged::Error`] after the tag.
#[derive(Deserialize)]
struct ErrorFields {
    error: HookError,
    #[serde(default)]
    status: Option<IgnoredAny>,
}

/// The tag's value: a variant name, or its index, as the derived reader
/// takes it.
enum Status {
    Ok,
    Error,
}

impl<'de> Deserialize<'de> for Status {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Status, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Status;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("variant identifier")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Status, E> {
                match v {
                    0 => Ok(Status::Ok),
                    1 => Ok(Status::Error),
                    _ => Err(E::invalid_value(
                        de::Unexpected::Unsigned(v),
                        &"variant index 0 <= i < 2",
                    )),
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Status, E> {
                match v {
                    "ok" => Ok(Status::Ok),
                    "error" => Ok(Status::Error),
                    _ => Err(E::unknown_variant(v, VARIANTS)),
                }
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Status, E> {
                match v {
                    b"ok" => Ok(Status::Ok),
                    b"error" => Ok(Status::Error),
                    _ => Err(E::unknown_variant(&String::from_utf8_lossy(v), VARIANTS)),
                }
            }
        }
        d.deserialize_identifier(V)
    }
}

const VARIANTS: &[&str] = &["ok", "error"];

impl<'de> Deserialize<'de> for HookOutcome {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<HookOutcome, D::Error> {
        d.deserialize_any(OutcomeVisitor)
    }
}

struct OutcomeVisitor;

impl<'de> Visitor<'de> for OutcomeVisitor {
    type Value = HookOutcome;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("internally tagged enum HookOutcome")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<HookOutcome, A::Error> {
        let Some(first) = map.next_key::<String>()? else {
            return Err(de::Error::missing_field("status"));
        };
        if first != "status" {
            // The tag comes later: the derived way, from a copy of the
            // entries in their order (duplicates kept, so that the
            // derived reader sees and refuses them as it would).
            let mut entries: Vec<(String, Value)> = vec![(first, map.next_value()?)];
            while let Some(k) = map.next_key::<String>()? {
                entries.push((k, map.next_value()?));
            }
            let md = MapDeserializer::<_, serde_json::Error>::new(entries.into_iter());
            return Tagged::deserialize(md)
                .map(HookOutcome::from)
                .map_err(de::Error::custom);
        }
        let status: Status = map.next_value()?;
        let rest = MapAccessDeserializer::new(map);
        match status {
            Status::Ok => {
                let f = OkFields::deserialize(rest)?;
                if f.status.is_some() {
                    return Err(de::Error::duplicate_field("status"));
                }
                Ok(HookOutcome::Ok {
                    posts: f.posts,
                    state: f.state,
                    logs: f.logs,
                    timings: f.timings,
                    manifest: f.manifest,
                })
            }
            Status::Error => {
                let f = ErrorFields::deserialize(rest)?;
                if f.status.is_some() {
                    return Err(de::Error::duplicate_field("status"));
                }
                Ok(HookOutcome::Error { error: f.error })
            }
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<HookOutcome, A::Error> {
        Tagged::deserialize(SeqAccessDeserializer::new(seq)).map(HookOutcome::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn derived(text: &str) -> Result<HookOutcome, String> {
        serde_json::from_str::<Tagged>(text)
            .map(HookOutcome::from)
            .map_err(|e| e.to_string())
    }

    fn direct(text: &str) -> Result<HookOutcome, String> {
        serde_json::from_str::<HookOutcome>(text).map_err(|e| e.to_string())
    }

    #[test]
    fn the_direct_reader_agrees_with_the_derived_one() {
        let cases = [
            // Accepted, tag first (the direct way).
            r#"{"status":"ok","posts":[],"state":{}}"#,
            r#"{"status":"ok","posts":[{"type":"t","body":{"a":[1,2.5,null]},"to":["b"]}],"state":{"n":1},"logs":"x","timings":{"confine_us":1,"hook_us":2},"manifest":{"name":"m"}}"#,
            r#"{"status":"ok","posts":[],"state":{},"unknown":[1,{"status":"ok"}]}"#,
            r#"{"status":"error","error":{"kind":"limit","message":"m"}}"#,
            r#"{"status":"error","error":{"kind":"syntax","line":3,"message":"m"},"extra":1}"#,
            r#"{"status":0,"posts":[],"state":{}}"#,
            r#"{"status":1,"error":{"kind":"internal","message":"m"}}"#,
            // Accepted, the tag later, or a sequence (the derived way).
            r#"{"posts":[],"state":{"k":"v"},"status":"ok"}"#,
            r#"{"error":{"kind":"timeout","message":"m"},"status":"error"}"#,
            r#"["ok",[],{}]"#,
            // Refused either way.
            r#"{"status":"ok","posts":[],"state":{},"status":"ok"}"#,
            r#"{"posts":[],"status":"ok","state":{},"status":"ok"}"#,
            r#"{"status":"ok","posts":[],"posts":[],"state":{}}"#,
            r#"{"posts":[],"posts":[],"state":{},"status":"ok"}"#,
            r#"{"status":"ok","state":{}}"#,
            r#"{"status":"bad","posts":[],"state":{}}"#,
            r#"{"status":2,"posts":[],"state":{}}"#,
            r#"{"status":null,"posts":[],"state":{}}"#,
            r#"{"status":"error"}"#,
            r#"{"status":"error","error":{"kind":"nope","message":"m"}}"#,
            r#"{"posts":[],"state":{}}"#,
            r#"{}"#,
            r#"[]"#,
            r#""ok""#,
            r#"null"#,
            r#"{"status":"ok","posts":[],"state":{}} trailing"#,
        ];
        for text in cases {
            let (a, b) = (direct(text), derived(text));
            assert_eq!(a.is_ok(), b.is_ok(), "{text}: {a:?} vs {b:?}");
            if let (Ok(a), Ok(b)) = (a, b) {
                assert_eq!(a, b, "{text}");
            }
        }
        // What this crate writes reads back the direct way.
        let o = HookOutcome::Ok {
            posts: vec![Post {
                kind: "hint".into(),
                body: serde_json::json!({"h": "higher"}),
                to: None,
            }],
            state: serde_json::json!({"round": 2}),
            logs: String::new(),
            timings: Timings::default(),
            manifest: None,
        };
        let text = serde_json::to_string(&o).unwrap();
        assert!(text.starts_with(r#"{"status":"ok""#), "{text}");
        assert_eq!(direct(&text).unwrap(), o);
    }
}
