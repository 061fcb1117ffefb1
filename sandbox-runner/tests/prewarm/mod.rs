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
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// A pre-warmed runner that got its spec line and waits for its job.
struct Warm {
    child: Child,
    stdin: Option<ChildStdin>,
}

fn start_warm(job: &HookJob, idle_ms: u64, layer: Layer) -> Warm {
    let mut cmd = Command::new(runner());
    cmd.arg("--prewarm");
    if layer == Layer::OsOnly {
        cmd.arg("--unchecked-language-layer");
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sandbox-runner --prewarm");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(&warm_spec_line(job, idle_ms))
        .expect("write spec");
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
            error: HookError::Internal { message },
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
    for (j, why) in [
        (other, "network"),
        (uid, "runtime"),
        (slow, "limits"),
        (seeded, "entropy"),
    ] {
        let e = start_warm(&spec_job, 60_000, Layer::Checked)
            .hand_over(Some(&serde_json::to_vec(&j).unwrap()));
        assert_eq!(e.code, exit::BAD_JOB, "{why}");
        assert!(internal_message(&e).contains(why), "{why}: {}", e.stderr);
    }
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
const PROBE: &str = r#"
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

#[test]
fn a_bot_cannot_tell_a_prewarmed_sandbox_from_a_fresh_one() {
    let j = job(&attack_bot(PROBE));
    let bytes = serde_json::to_vec(&j).unwrap();
    let probe = |warm: bool| -> Value {
        let posts = if warm {
            posts_of(&start_warm(&j, 60_000, Layer::OsOnly).hand_over(Some(&bytes)))
        } else {
            let r = run_job(&j, Layer::OsOnly);
            r.posts()
        };
        assert_eq!(posts.len(), 1, "{posts:?}");
        assert_eq!(posts[0]["ok"], json!(true), "{}", posts[0]);
        posts[0]["value"].clone()
    };
    // Fresh sandboxes unless the whole suite runs pre-warmed; the other kind
    // is started here either way.
    let cold = [probe(prewarmed()), probe(prewarmed())];
    let warm = [probe(true), probe(true)];
    for p in cold.iter().chain(&warm[1..]) {
        for (key, value) in p["same"].as_object().unwrap() {
            assert_eq!(value, &warm[0]["same"][key], "{key} differs");
        }
    }
    // Everything random is drawn afresh in each process: no two hooks share
    // a hash seed, a generator state or an address of a new object.
    for key in ["hash", "random", "urandom"] {
        let mut seen: Vec<&Value> = cold.iter().chain(&warm).map(|p| &p["fresh"][key]).collect();
        seen.sort_by_key(|v| v.to_string());
        seen.dedup();
        assert_eq!(seen.len(), 4, "{key} repeats: {seen:?}");
    }
}
