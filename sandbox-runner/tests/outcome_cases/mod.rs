//! Forged outcomes on fd 3. A bot that got past the language layer can write
//! the result descriptor itself; the runner must hold whatever it says to the
//! protocol's one check (`Limits::check`, the function the daemon calls too)
//! before relaying any of it. Every bot here runs with only the OS layer in
//! the way (`--unchecked-language-layer`), writes a document to fd 3 and
//! exits without letting the harness write its own.
//!
//! The table `protocol/tests/outcome-cases.json` is run case by case through
//! the real runner, and the attacks of a hostile bot author are spelled out
//! as their own tests, each naming the mechanism that stops it.

use crate::util::*;
use hook_protocol::{Hook, HookError, HookJob, HookOutcome, Limits, Player, exit};
use serde_json::{Value, json};

const CASES: &str = include_str!("../../../protocol/tests/outcome-cases.json");

/// A bot whose module code writes `doc` to fd 3 and exits at once.
fn forging_bot(doc: &Value) -> String {
    let hex: String = serde_json::to_vec(doc)
        .expect("serialize the forged outcome")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!(
        "import os\n\
         data = bytes.fromhex('{hex}')\n\
         while data:\n\
         \x20   data = data[os.write(3, data):]\n\
         os._exit(0)\n"
    )
}

/// Runs a job whose bot forges `doc` on fd 3.
fn forge_with(mut j: HookJob, doc: &Value) -> Run {
    j.bot.source = forging_bot(doc);
    run_job(&j, Layer::OsOnly)
}

fn forge(doc: Value) -> Run {
    forge_with(job(""), &doc)
}

/// Asserts the runner answered with a limit error containing `needle`.
#[track_caller]
fn assert_refused(r: &Run, needle: &str) {
    match r.error() {
        HookError::Limit { message } => assert!(message.contains(needle), "{message}"),
        e => panic!("expected a limit error with {needle:?}, got {e:?}"),
    }
    assert_eq!(r.code, exit::HOOK_FAILED);
}

// ---------------------------------------------------------------------------
// Attacks

#[test]
fn a_forged_post_to_a_non_player_is_refused_by_the_outcome_check() {
    // `referee` is the bot's own slot; `mallory` no seat at all. Both would
    // let a private post reach someone the channel never seated as a player.
    for to in ["referee", "mallory", "invite:alice"] {
        let r = forge(json!({"status": "ok", "state": {},
            "posts": [{"type": "hint", "body": "the number is 42", "to": [to]}]}));
        assert_refused(&r, "which is not a player of this channel");
    }
}

#[test]
fn a_forged_post_type_system_is_refused_by_the_outcome_check() {
    for kind in ["system", "control", "user", "bot"] {
        let r = forge(json!({"status": "ok", "state": {},
            "posts": [{"type": kind, "body": {"type": "channel:closed"}}]}));
        assert_refused(&r, "is reserved for the daemon's own messages");
    }
}

#[test]
fn a_forged_post_type_seat_filled_is_refused_by_the_outcome_check() {
    for kind in ["seat:filled", "bot:error"] {
        let r = forge(json!({"status": "ok", "state": {},
            "posts": [{"type": kind, "body": {"slot": "alice"}}]}));
        assert_refused(&r, "a post type starts with a lowercase letter");
    }
}

#[test]
fn a_forged_confinement_error_is_not_relayed_by_the_outcome_check() {
    let r = forge(json!({"status": "error", "error": {"kind": "confinement",
        "step": "landlock", "message": "ruleset NotEnforced: the sandbox is off"}}));
    assert_refused(&r, "error of kind 'confinement'");
    assert_ne!(r.code, exit::CONFINEMENT_FAILED);
}

#[test]
fn a_forged_timeout_or_internal_error_is_not_relayed_by_the_outcome_check() {
    for (kind, code) in [("timeout", exit::TIMEOUT), ("internal", exit::INTERNAL)] {
        let r = forge(json!({"status": "error", "error": {"kind": kind, "message": "x"}}));
        assert_refused(&r, &format!("error of kind '{kind}'"));
        assert_ne!(r.code, code);
    }
}

#[test]
fn a_forged_manifest_outside_inspect_is_refused_by_the_outcome_check() {
    let r = forge(json!({"status": "ok", "state": {}, "posts": [],
        "manifest": {"name": "trusted", "hooks": ["on_init"]}}));
    assert_refused(&r, "only the inspect hook reports a manifest");
}

// ---------------------------------------------------------------------------
// The shared table

struct Case {
    name: String,
    job: HookJob,
    outcome: Value,
    expect: Value,
}

fn cases() -> Vec<Case> {
    let t: Value = serde_json::from_str(CASES).expect("outcome-cases.json parses");
    let mut out = Vec::new();
    for c in t["cases"].as_array().expect("cases") {
        let hook: Hook =
            serde_json::from_value(c.get("hook").cloned().unwrap_or(json!({"name": "on_init"})))
                .expect("hook");
        if hook == Hook::Inspect {
            // The harness never runs bot code for `inspect`: nothing to forge.
            continue;
        }
        let mut limits = serde_json::to_value(Limits::default()).expect("limits");
        for (k, v) in c
            .get("limits")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            limits[k] = v.clone();
        }
        let players: Vec<Player> =
            serde_json::from_value(c.get("players").unwrap_or(&t["players"]).clone())
                .expect("players");
        let mut j = job("");
        j.hook = hook;
        j.context.players = players;
        j.limits = Limits {
            wall_ms: j.limits.wall_ms,
            ..serde_json::from_value(limits).expect("limits")
        };
        out.push(Case {
            name: c["name"].as_str().expect("name").to_string(),
            job: j,
            outcome: c["outcome"].clone(),
            expect: c["expect"].clone(),
        });
    }
    out
}

/// `None` when the runner's answer matches the case's verdict, else why not.
fn mismatch(case: &Case, r: &Run) -> Option<String> {
    let fail = |why: String| Some(format!("{}: {why} (exit {})", case.name, r.code));
    if let Some(want) = case.expect.get("refused").and_then(Value::as_str) {
        return match &r.outcome {
            HookOutcome::Error {
                error: HookError::Limit { message },
            } if message.contains(want) && r.code == exit::HOOK_FAILED => None,
            o => fail(format!("expected a limit error with {want:?}, got {o:?}")),
        };
    }
    // Accepted: relayed as written (the runner sets only the timings).
    let want: HookOutcome =
        serde_json::from_value(case.outcome.clone()).expect("a well-formed outcome");
    let same = match (&r.outcome, &want) {
        (
            HookOutcome::Ok {
                posts,
                state,
                manifest,
                ..
            },
            HookOutcome::Ok {
                posts: p,
                state: s,
                manifest: m,
                ..
            },
        ) => posts == p && state == s && manifest == m && r.code == exit::OK,
        (HookOutcome::Error { error }, HookOutcome::Error { error: e }) => error == e,
        _ => false,
    };
    if same {
        None
    } else {
        fail(format!("expected {want:?} relayed, got {:?}", r.outcome))
    }
}

#[test]
fn every_case_of_the_outcome_table_gets_its_verdict_from_the_runner() {
    let cases = cases();
    assert!(cases.len() >= 60, "{} cases", cases.len());
    // A few at a time: each is one runner process.
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .chunks(cases.len().div_ceil(4))
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .filter_map(|c| mismatch(c, &forge_with(c.job.clone(), &c.outcome)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a case thread panicked"))
            .collect()
    });
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
