//! The one check against the shared table of edge cases
//! (`protocol/tests/outcome-cases.json`), plus the rules the table cannot
//! express (error text bounds, the measure itself).

use super::*;
use crate::{HookError, Limits};
use serde_json::{Value, json};

const CASES: &str = include_str!("../../tests/outcome-cases.json");

fn table() -> Value {
    serde_json::from_str(CASES).expect("outcome-cases.json parses")
}

/// The base limits with a case's overrides.
fn limits_for(case: &Value) -> Limits {
    let mut v = serde_json::to_value(Limits::default()).expect("limits serialize");
    if let Some(over) = case.get("limits").and_then(Value::as_object) {
        for (k, x) in over {
            assert!(v.get(k).is_some(), "unknown limit {k}");
            v[k] = x.clone();
        }
    }
    serde_json::from_value(v).expect("limits deserialize")
}

fn players_for(table: &Value, case: &Value) -> Vec<Player> {
    let p = case.get("players").unwrap_or(&table["players"]);
    serde_json::from_value(p.clone()).expect("players")
}

fn hook_for(case: &Value) -> Hook {
    serde_json::from_value(
        case.get("hook")
            .cloned()
            .unwrap_or(json!({"name": "on_init"})),
    )
    .expect("hook")
}

fn verdict(
    case: &Value,
    expect: &Value,
    limits: &Limits,
    hook: &Hook,
    players: &[Player],
    origin: Origin,
) {
    let name = case["name"].as_str().unwrap_or("?");
    let outcome: HookOutcome =
        serde_json::from_value(case["outcome"].clone()).expect("a well-formed outcome");
    let got = limits.check(&outcome, hook, players, origin);
    match (expect, got) {
        (Value::String(s), Ok(())) if s == "accepted" => {}
        (Value::Object(o), Err(v)) if o.contains_key("refused") => {
            let want = o["refused"].as_str().unwrap_or_default();
            assert!(
                v.message().contains(want),
                "{name} ({origin:?}): refused with {:?}, expected it to contain {want:?}",
                v.message()
            );
            // `enforce` turns the same violation into a limit error.
            match limits.enforce(outcome, hook, players, origin) {
                HookOutcome::Error {
                    error: HookError::Limit { message },
                } => assert_eq!(message, v.message()),
                o => panic!("{name}: enforce gave {o:?}"),
            }
        }
        (e, got) => panic!("{name} ({origin:?}): expected {e}, got {got:?}"),
    }
}

#[test]
fn every_case_of_the_table_gets_its_verdict() {
    let t = table();
    let cases = t["cases"].as_array().expect("cases");
    assert!(cases.len() >= 60, "{} cases", cases.len());
    for case in cases {
        let (limits, hook, players) = (limits_for(case), hook_for(case), players_for(&t, case));
        verdict(
            case,
            &case["expect"],
            &limits,
            &hook,
            &players,
            Origin::Harness,
        );
        let from_runner = case.get("from_runner").unwrap_or(&case["expect"]);
        verdict(case, from_runner, &limits, &hook, &players, Origin::Runner);
    }
}

#[test]
fn the_tables_base_limits_are_the_protocols_defaults() {
    let t = table();
    let d = serde_json::to_value(Limits::default()).expect("limits serialize");
    let base = t["limits"].as_object().expect("limits");
    assert_eq!(base.len(), 4);
    for (k, v) in base {
        assert_eq!(&d[k], v, "limit {k}");
    }
}

#[test]
fn table_names_are_unique_and_verdicts_well_formed() {
    let t = table();
    let mut names = std::collections::HashSet::new();
    for case in t["cases"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("a name");
        assert!(names.insert(name), "duplicate case {name}");
        for key in case.as_object().expect("an object").keys() {
            assert!(
                [
                    "name",
                    "limits",
                    "players",
                    "hook",
                    "outcome",
                    "expect",
                    "from_runner"
                ]
                .contains(&key.as_str()),
                "{name}: unknown field {key}"
            );
        }
    }
    // The bots' labels are not players' labels.
    let players = players_for(&t, &json!({}));
    for b in t["bots"].as_array().expect("bots") {
        assert!(!players.iter().any(|p| Some(p.label.as_str()) == b.as_str()));
    }
}

#[test]
fn canonical_size_is_the_length_of_the_canonical_form() {
    for (v, text) in [
        (json!(null), "null"),
        (json!(true), "true"),
        (json!(1.0), "1"),
        (json!(-0.0), "0"),
        (json!(1e21), "1e+21"),
        (json!(1e20), "100000000000000000000"),
        (json!(1e-7), "1e-7"),
        (json!(0.000001), "0.000001"),
        (json!(123.456), "123.456"),
        (json!(u64::MAX), "18446744073709552000"),
        (json!(5e-324), "5e-324"),
        (json!("é\n\u{1}\"/\u{2028}"), "\"é\\n\\u0001\\\"/\u{2028}\""),
        (json!({"b": [1, 2], "a": {}}), r#"{"a":{},"b":[1,2]}"#),
    ] {
        assert_eq!(canonical_size(&v), text.len(), "{v} as {text}");
    }
}

#[test]
fn error_text_is_bounded_for_every_origin() {
    let l = Limits::default();
    let hook = Hook::OnInit;
    let long = "x".repeat(MAX_ERROR_MESSAGE_CHARS + 1);
    let at = "é".repeat(MAX_ERROR_MESSAGE_CHARS);
    for origin in [Origin::Harness, Origin::Runner] {
        let e = |error| HookOutcome::Error { error };
        let over = e(HookError::Exception {
            message: long.clone(),
            traceback: String::new(),
        });
        let err = l.check(&over, &hook, &[], origin).unwrap_err();
        assert!(err.message().contains("2001 characters"), "{err}");
        // Characters, not bytes.
        let ok = e(HookError::Policy {
            line: None,
            message: at.clone(),
        });
        assert_eq!(l.check(&ok, &hook, &[], origin), Ok(()));
        let tb = e(HookError::Exception {
            message: "E".into(),
            traceback: "t".repeat(MAX_TRACEBACK_CHARS + 1),
        });
        assert!(l.check(&tb, &hook, &[], origin).is_err());
    }
}

#[test]
fn a_forged_label_is_quoted_and_cut_in_the_message() {
    let players = [];
    let label = format!("x\n#9 bot:referee [bot]: {}", "y".repeat(500));
    let err = check_recipients(&[label], &players).unwrap_err();
    assert!(!err.message().contains('\n'), "{err}");
    assert!(err.message().len() < 160, "{err}");
}

#[test]
fn every_reserved_kind_and_every_event_type_is_refused() {
    for k in RESERVED_KINDS {
        assert!(check_kind(k).is_err(), "{k}");
    }
    for k in [
        "channel:created",
        "seat:filled",
        "seat:moved",
        "seat:kicked",
        "bot:attach",
        "bot:manifest",
        "bot:error",
        "channel:renamed",
        "channel:closed",
    ] {
        assert!(check_kind(k).is_err(), "{k}");
    }
    for k in ["commit", "bid_receipt", "tls_error", "a", "v1.move-2"] {
        assert_eq!(check_kind(k), Ok(()), "{k}");
    }
}
