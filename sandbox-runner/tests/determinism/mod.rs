//! Deterministic hooks through the real runner: with the job's `entropy` and
//! `now`, the same job gives the same outcome inside the sandbox, another
//! entropy another one; what the bot drew is the crate's generator; the
//! interpreter gets the hash seed and stays as isolated as with `-I`.

use crate::util::*;
use hook_protocol::determinism::{PYTHON_HASH_SEED, URANDOM};
use hook_protocol::{Entropy, HookError, HookJob, HookOutcome, exit};
use serde_json::{Value, json};

const NOW: &str = "2026-11-21T11:31:29.123Z";

/// A bot that draws from every kind of randomness and clock, through the
/// language layer, as a referee would (a deck shuffled like blackjack.py's,
/// a token like guess.py's).
const REFEREE: &str = r#"
import random, secrets, time, datetime, email.utils
from email.mime.multipart import MIMEMultipart

NAMES = "alice bob carol dave erin frank grace heidi ivan judy mallory niaj olivia peggy".split()

class Referee:
    def __init__(self, ctx, params):
        self.ctx = ctx

    def on_init(self):
        deck = [r + s for s in "SHDC" for r in "A23456789TJQK"]
        random.shuffle(deck)
        token = secrets.token_hex(16)
        self.ctx.post("drawn", {
            "token": token, "deck": deck, "names": list(set(NAMES)), "hash": hash("x"),
            "system": random.SystemRandom().random(), "instance": random.Random().random(),
            "now": str(datetime.datetime.now()), "today": str(datetime.date.today()),
            "time": time.time(), "ctime": time.ctime(), "msgid": email.utils.make_msgid(),
            "boundary": MIMEMultipart().as_string().splitlines()[0],
        })
        self.ctx.set_state({"deck": deck[:3], "token": token})
"#;

fn deterministic(source: &str, entropy: &str) -> HookJob {
    let mut j = job(source);
    j.entropy = Some(entropy.parse().expect("entropy"));
    j.now = Some(NOW.parse().expect("now"));
    j
}

/// (posts, state, logs) of a successful hook: everything but the timings.
fn what_it_did(r: &Run) -> (Value, Value, String) {
    match &r.outcome {
        HookOutcome::Ok {
            posts, state, logs, ..
        } => (json!(posts), state.clone(), logs.clone()),
        o => panic!("expected ok, got {o:?}\nstderr: {}", r.stderr),
    }
}

#[test]
fn the_same_job_twice_gives_the_same_outcome_in_the_sandbox_and_another_entropy_another() {
    let e1 = "5e".repeat(32);
    let a = run_job(&deterministic(REFEREE, &e1), Layer::Checked);
    let b = run_job(&deterministic(REFEREE, &e1), Layer::Checked);
    assert_eq!(what_it_did(&a), what_it_did(&b));
    let c = run_job(&deterministic(REFEREE, &"a7".repeat(32)), Layer::Checked);
    let (pa, pc) = (&a.posts()[0], &c.posts()[0]);
    for key in [
        "token", "deck", "names", "hash", "system", "instance", "msgid", "boundary",
    ] {
        assert_ne!(pa[key], pc[key], "{key} did not change with the entropy");
    }
    for key in ["now", "today", "time", "ctime"] {
        assert_eq!(
            pa[key], pc[key],
            "{key} is the job's now, not the entropy's"
        );
    }
}

#[test]
fn what_the_bot_drew_is_the_crates_generator_and_the_clock_is_now() {
    let e: Entropy = "5e".repeat(32).parse().expect("entropy");
    let r = run_job(&deterministic(REFEREE, &e.to_hex()), Layer::Checked);
    let p = &r.posts()[0];
    let want: String = e
        .stream(URANDOM, 16)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        p["token"],
        json!(want),
        "secrets.token_hex reads the stream 'urandom'"
    );
    // The sandbox has no zone data: local time is UTC.
    assert_eq!(p["now"], json!("2026-11-21 11:31:29.123000"));
    assert_eq!(p["today"], json!("2026-11-21"));
    assert_eq!(p["time"], json!(1_795_260_689.123));
    assert_eq!(p["ctime"], json!("Sat Nov 21 11:31:29 2026"));
    let msgid = p["msgid"].as_str().expect("msgid");
    assert!(msgid.starts_with("<179526068912."), "{msgid}"); // time.time() * 100
}

#[test]
fn the_hash_seed_reaches_the_interpreter_which_stays_as_isolated_as_with_dash_i() {
    let e: Entropy = "3c".repeat(32).parse().expect("entropy");
    let mut j = job(&attack_bot(
        "return {'flags': [sys.flags.ignore_environment, sys.flags.no_user_site,\n\
         \x20                 sys.flags.safe_path, sys.flags.isolated],\n\
         \x20       'env': dict(os.environ), 'hash': hash('x')}",
    ));
    j.entropy = Some(e.clone());
    let v = run_job(&j, Layer::OsOnly).result()["value"].clone();
    let seed = e.python_hash_seed();
    assert_eq!(
        v["env"],
        json!({"LANG": "C.UTF-8", "PYTHONHASHSEED": seed.to_string()})
    );
    // -I became -s -P: the environment is read, the user site and the
    // script's folder stay off sys.path.
    assert_eq!(v["flags"], json!([0, 1, true, 0]));
    let host = std::process::Command::new(python())
        .args(["-S", "-c", "print(hash('x'))"])
        .env_clear()
        .env("PYTHONHASHSEED", seed.to_string())
        .output()
        .expect("run python");
    let want: i64 = String::from_utf8_lossy(&host.stdout)
        .trim()
        .parse()
        .expect("a hash");
    assert_eq!(v["hash"], json!(want));
    // The seed is the first four bytes of the stream, big-endian.
    let b = e.stream(PYTHON_HASH_SEED, 4);
    assert_eq!(seed, u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
}

#[test]
fn a_version_1_job_with_entropy_is_refused_as_a_bad_job() {
    if forked() {
        return; // a template refuses it and goes on (exit codes are per runner)
    }
    let mut j = deterministic(REFEREE, &"00".repeat(32));
    j.version = 1;
    let r = run_job(&j, Layer::Checked);
    assert_eq!(r.code, exit::BAD_JOB);
    match r.error() {
        HookError::Internal { message, .. } => assert!(message.contains("version 2"), "{message}"),
        e => panic!("{e:?}"),
    }
}
