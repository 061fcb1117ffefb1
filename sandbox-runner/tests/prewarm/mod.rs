//! Pre-warmed runners (`sandbox-runner --prewarm`): confined from a spec
//! before their job exists, then handed exactly one job.
//!
//! The whole attack suite also runs through pre-warmed runners
//! (`SANDBOX_TEST_PREWARM=1`, both modes, in tests/steps/30-sandbox.sh);
//! these tests cover what only a pre-warmed runner does: waiting, refusing
//! what does not match, counting the deadline from the hand-over, and being
//! indistinguishable from a fresh sandbox for the bot inside.

use crate::util::*;
use hook_protocol::{Entropy, HookError, HookJob, HookOutcome, exit};
use nix::errno::Errno;
use nix::unistd::Pid;
use serde_json::{Value, json};
use std::io::Write;
use std::process::{Child, ChildStdin, Command};
use std::time::{Duration, Instant};

/// A pre-warmed runner that got its spec line and waits for its job.
struct Warm {
    child: Child,
    stdin: Option<ChildStdin>,
}

fn start_warm(job: &HookJob, idle_ms: u64, layer: Layer) -> Warm {
    let (child, stdin) = start_with_spec("--prewarm", job, idle_ms, layer);
    Warm {
        child,
        stdin: Some(stdin),
    }
}

/// What a runner printed and how it ended.
struct Ended {
    outcome: HookOutcome,
    code: i32,
    stderr: String,
    /// From the hand-over (or the end of waiting) to the runner's exit.
    elapsed: Duration,
}

impl Warm {
    /// Writes `bytes` (a job, or anything) and closes stdin; `None` only closes it.
    fn hand_over(mut self, bytes: Option<&[u8]>) -> Ended {
        let t0 = Instant::now();
        if let (Some(mut stdin), Some(b)) = (self.stdin.take(), bytes) {
            let _ = stdin.write_all(b); // a refusing runner may be gone
        }
        self.ended(t0)
    }

    /// Waits for the runner to end on its own, stdin still open.
    fn wait(mut self) -> Ended {
        let t0 = Instant::now();
        let stdin = self.stdin.take();
        let e = self.ended(t0);
        drop(stdin);
        e
    }

    fn ended(mut self, t0: Instant) -> Ended {
        let pid = self.child.id() as i32;
        let mut out = String::new();
        let mut err = String::new();
        use std::io::Read;
        let _ = self
            .child
            .stdout
            .take()
            .expect("stdout")
            .read_to_string(&mut out);
        let _ = self
            .child
            .stderr
            .take()
            .expect("stderr")
            .read_to_string(&mut err);
        let status = self.child.wait().expect("wait");
        let elapsed = t0.elapsed();
        assert_group_gone(pid);
        let outcome = serde_json::from_str(out.trim())
            .unwrap_or_else(|e| panic!("bad runner stdout ({e}): {out:?}\nstderr: {err}"));
        Ended {
            outcome,
            code: status.code().unwrap_or(-1),
            stderr: err,
            elapsed,
        }
    }
}

/// Every process of the runner's session (it leads its own process group:
/// the namespace child, the reaper, the interpreter) is gone: nothing of a
/// runner outlives its one job, so no later job can reach it. The reaper
/// dies by PDEATHSIG just after the runner; this waits for that, bounded.
fn assert_group_gone(pgid: i32) {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        match nix::sys::signal::killpg(Pid::from_raw(pgid), None) {
            Err(Errno::ESRCH) => return,
            _ if Instant::now() > until => panic!("processes of runner {pgid} outlived it"),
            _ => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn internal_message(e: &Ended) -> String {
    match &e.outcome {
        HookOutcome::Error {
            error: HookError::Internal { message, .. },
        } => message.clone(),
        o => panic!(
            "expected an internal error, got {o:?}\nstderr: {}",
            e.stderr
        ),
    }
}

fn posts_of(e: &Ended) -> Vec<Value> {
    match &e.outcome {
        HookOutcome::Ok { posts, .. } => posts.iter().map(|p| p.body.clone()).collect(),
        o => panic!("expected ok, got {o:?}\nstderr: {}", e.stderr),
    }
}

fn says_hi() -> HookJob {
    job(
        "class Bot:\n    def __init__(self, ctx, params):\n        self.ctx = ctx\n    \
         def on_init(self):\n        self.ctx.post('said', 'hi')\n",
    )
}

#[test]
fn a_prewarmed_sandbox_that_gets_no_job_exits_on_its_own_and_runs_nothing() {
    // Stdin stays open: only the idle time ends it.
    let e = start_warm(&says_hi(), 300, Layer::Checked).wait();
    assert_eq!(e.code, exit::BAD_JOB);
    assert!(
        internal_message(&e).contains("no job within the idle time"),
        "{}",
        e.stderr
    );
    // Stdin closed: it ends at once.
    let e = start_warm(&says_hi(), 60_000, Layer::Checked).hand_over(None);
    assert_eq!(e.code, exit::BAD_JOB);
    assert!(internal_message(&e).contains("without a job"));
    assert!(e.elapsed < Duration::from_secs(30));
}

#[test]
fn a_prewarmed_sandbox_runs_its_one_job_and_nothing_after_it() {
    let j = says_hi();
    let job_bytes = serde_json::to_vec(&j).unwrap();
    let e = start_warm(&j, 60_000, Layer::Checked).hand_over(Some(&job_bytes));
    assert_eq!(posts_of(&e), vec![json!("hi")]);
    assert_eq!(e.code, exit::OK);
    // Two jobs for one sandbox: refused whole, neither runs.
    let two = [job_bytes.clone(), job_bytes].concat();
    let e = start_warm(&j, 60_000, Layer::Checked).hand_over(Some(&two));
    assert_eq!(e.code, exit::BAD_JOB);
    assert!(internal_message(&e).contains("malformed job"));
}

#[test]
fn a_job_that_differs_from_the_warm_spec_is_refused_before_it_runs() {
    let spec_job = says_hi();
    let mut other = says_hi();
    other.network = hook_protocol::NetworkPolicy {
        allowed: true,
        ..Default::default()
    };
    let mut uid = says_hi();
    uid.runtime.sandbox_uid += 1;
    let mut slow = says_hi();
    slow.limits.cpu_secs += 1;
    let mut seeded = says_hi();
    seeded.entropy = Some("5e".repeat(32).parse::<Entropy>().unwrap());
    let mut bot = says_hi();
    bot.hash_seed = Some(7);
    for (spec, j, why) in [
        (&spec_job, other, "network"),
        (&spec_job, uid, "runtime"),
        (&spec_job, slow, "limits"),
        // Its hash seed comes from its entropy; the interpreter has its own.
        (&spec_job, seeded.clone(), "hash_seed"),
        (&spec_job, bot.clone(), "hash_seed"),
        // Warmed for one bot: another bot's hook, or one seeded from its
        // entropy, does not fit.
        (&bot, says_hi(), "hash_seed"),
        (&bot, seeded, "hash_seed"),
    ] {
        let e = start_warm(spec, 60_000, Layer::Checked)
            .hand_over(Some(&serde_json::to_vec(&j).unwrap()));
        assert_eq!(e.code, exit::BAD_JOB, "{why}");
        assert!(internal_message(&e).contains(why), "{why}: {}", e.stderr);
    }
}

#[test]
fn a_sandbox_prewarmed_for_a_bot_runs_any_hook_of_that_bot() {
    let bot_seed: Entropy = "3c".repeat(32).parse().unwrap();
    let hook = |seq: u64| {
        let mut j = says_hi();
        j.entropy = Some(Entropy::for_hook(&bot_seed, seq));
        j.hash_seed = Some(bot_seed.python_hash_seed());
        j
    };
    // Warmed from one hook's job, handed another's: the spec knows only
    // the bot's hash seed.
    let e = start_warm(&hook(1), 60_000, Layer::Checked)
        .hand_over(Some(&serde_json::to_vec(&hook(2)).unwrap()));
    assert_eq!(e.code, exit::OK, "{}", e.stderr);
    assert_eq!(posts_of(&e), vec![json!("hi")]);
}

#[test]
fn the_wall_deadline_counts_from_the_hand_over_not_the_pre_warm() {
    let mut j = says_hi();
    j.limits.wall_ms = 1500;
    let w = start_warm(&j, 60_000, Layer::Checked);
    // Longer than the whole wall limit passes before the job arrives: the
    // condition under test, not a synchronisation.
    std::thread::sleep(Duration::from_millis(2500));
    let e = w.hand_over(Some(&serde_json::to_vec(&j).unwrap()));
    assert_eq!(posts_of(&e), vec![json!("hi")]);
    // And it still holds: a hook that sleeps is stopped 1.5 s after its job.
    let mut sleeper = job(&attack_bot("import time\ntime.sleep(60)"));
    sleeper.limits.wall_ms = 1500;
    let w = start_warm(&sleeper, 60_000, Layer::OsOnly);
    std::thread::sleep(Duration::from_millis(2500));
    let e = w.hand_over(Some(&serde_json::to_vec(&sleeper).unwrap()));
    match &e.outcome {
        HookOutcome::Error {
            error: HookError::Timeout { message },
        } => assert!(message.contains("wall"), "{message}"),
        o => panic!("{o:?}"),
    }
    assert!(e.elapsed >= Duration::from_millis(1500), "{:?}", e.elapsed);
}

/// What a bot can observe of its process, split into what must be the same
/// for every hook (`same`) and what must be fresh for every hook (`fresh`).
pub(crate) const PROBE: &str = r#"
import resource, signal, random, threading
libc = ctypes.CDLL(None, use_errno=True)
def sc(nr, *a):
    r = libc.syscall(nr, *a)
    return [r, ctypes.get_errno() if r < 0 else 0]
def safe(f, *a):
    try:
        return f(*a)
    except OSError as e:
        return ['errno', e.errno]
def prctl(op):
    r = libc.prctl(op, 0, 0, 0, 0)
    return [r, ctypes.get_errno() if r < 0 else 0]
fds = []
for fd in range(1024):
    try:
        st = os.fstat(fd)
        fds.append([fd, st.st_mode, safe(os.get_inheritable, fd)])
    except OSError:
        pass
handlers = {}
for s in signal.valid_signals():
    try:
        handlers[str(int(s))] = str(signal.getsignal(s))
    except (ValueError, OSError):
        pass
mask = os.umask(0o22)
os.umask(mask)
limits = {n: list(resource.getrlimit(getattr(resource, n))) for n in dir(resource) if n.startswith('RLIMIT_')}
return {
    'same': {
        'ids': [safe(f) for f in (os.getpid, os.getppid, os.getpgrp, lambda: os.getsid(0), os.getresuid, os.getresgid, os.getgroups)],
        'limits': limits,
        'env': dict(os.environ),
        'argv': sys.argv,
        'flags': str(sys.flags),
        'modules': sorted(sys.modules),
        'path': sys.path,
        'fds': fds,
        'cwd': safe(os.getcwd),
        'root': safe(lambda: sorted(os.listdir('/'))),
        'workspace': safe(lambda: sorted(os.listdir('.'))),
        'umask': mask,
        'uname': safe(lambda: list(os.uname())),
        'sigmask': safe(lambda: sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, []))),
        'handlers': handlers,
        'affinity': safe(lambda: sorted(os.sched_getaffinity(0))),
        'threads': threading.active_count(),
        'no_new_privs': prctl(39),
        'seccomp_mode': prctl(21),
        'dumpable': prctl(3),
        'landlock_abi': sc(444, 0, 0, 1),
        'write_harness': sc(2, b'/harness/x', 0o101, 0o600),
    },
    'fresh': {
        'hash': hash('probe'),
        'random': random.getrandbits(64),
        'urandom': os.urandom(8).hex(),
    },
}
"#;

/// The probe run by four hooks, `jobs[0..2]` in fresh sandboxes (unless the
/// whole suite runs pre-warmed), `jobs[2..4]` in pre-warmed ones. Whatever a
/// bot can observe of its process (`same`) is the same in all four.
fn probe_four(jobs: [HookJob; 4]) -> Vec<Value> {
    let probes: Vec<Value> = jobs
        .iter()
        .enumerate()
        .map(|(i, j)| {
            let posts = if i >= 2 {
                let bytes = serde_json::to_vec(j).expect("serialize job");
                posts_of(&start_warm(j, 60_000, Layer::OsOnly).hand_over(Some(&bytes)))
            } else {
                run_job(j, Layer::OsOnly).posts()
            };
            assert_eq!(posts.len(), 1, "{posts:?}");
            assert_eq!(posts[0]["ok"], json!(true), "{}", posts[0]);
            posts[0]["value"].clone()
        })
        .collect();
    for p in &probes[1..] {
        for (key, value) in p["same"].as_object().expect("same is an object") {
            assert_eq!(value, &probes[2]["same"][key], "{key} differs");
        }
    }
    probes
}

/// How many distinct values `key` of `fresh` took over `probes`.
fn distinct(probes: &[Value], key: &str) -> usize {
    let mut seen: Vec<String> = probes.iter().map(|p| p["fresh"][key].to_string()).collect();
    seen.sort();
    seen.dedup();
    seen.len()
}

#[test]
fn a_bot_cannot_tell_a_prewarmed_sandbox_from_a_fresh_one() {
    if forked() {
        return; // its "fresh" runs would be forked: fork:: has its own probe
    }
    let j = job(&attack_bot(PROBE));
    let probes = probe_four([j.clone(), j.clone(), j.clone(), j]);
    // Everything random is drawn afresh in each process: no two hooks share
    // a hash seed, a generator state or an address of a new object.
    for key in ["hash", "random", "urandom"] {
        assert_eq!(distinct(&probes, key), 4, "{key} repeats: {probes:?}");
    }
}

#[test]
fn a_seeded_bot_cannot_tell_either_and_its_hooks_share_only_the_bots_hash_seed() {
    if forked() {
        return; // as above
    }
    // Four hooks of one bot: each its own entropy, all the bot's hash seed.
    let bot_seed: Entropy = "3c".repeat(32).parse().unwrap();
    let seed = bot_seed.python_hash_seed();
    let hook = |seq: u64| {
        let mut j = job(&attack_bot(PROBE));
        j.entropy = Some(Entropy::for_hook(&bot_seed, seq));
        j.hash_seed = Some(seed);
        j
    };
    let probes = probe_four([hook(1), hook(2), hook(3), hook(4)]);
    assert_eq!(
        probes[0]["same"]["env"]["PYTHONHASHSEED"],
        json!(seed.to_string())
    );
    // String hashes are the bot's: the same in every hook, and the ones
    // that seed gives any interpreter.
    let want = Command::new(python())
        .args(["-S", "-c", "print(hash('probe'))"])
        .env_clear()
        .env("PYTHONHASHSEED", seed.to_string())
        .output()
        .unwrap();
    let want: i64 = String::from_utf8(want.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    for p in &probes {
        assert_eq!(p["fresh"]["hash"], json!(want), "{p}");
    }
    // What the bot draws still differs from hook to hook: the entropy's.
    for key in ["random", "urandom"] {
        assert_eq!(distinct(&probes, key), 4, "{key} repeats: {probes:?}");
    }
}
