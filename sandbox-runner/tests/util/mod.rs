//! Shared helpers of the sandbox test suite: build jobs, spawn the built
//! runner with them, and wrap attack code in a bot.

#![allow(dead_code)]

use hook_protocol::{
    BotSpec, Hook, HookContext, HookError, HookJob, HookOutcome, Limits, NetworkPolicy, Player,
    Runtime, WarmSpec,
};
use serde_json::{Value, json};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// In root mode RLIMIT_NPROC counts all processes of the sandbox uid, so a
/// hook that fills it (the thread bomb) runs alone: every run takes this
/// lock, shared, and `run_job_alone` takes it exclusively.
static NPROC: RwLock<()> = RwLock::new(());

/// The runner binary: `SANDBOX_TEST_RUNNER` (the CI step runs a copy that
/// the unprivileged user can read), or the one cargo built.
pub fn runner() -> PathBuf {
    std::env::var_os("SANDBOX_TEST_RUNNER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_sandbox-runner")))
}

/// The real harness (`bots/harness`), or `SANDBOX_TEST_HARNESS_DIR`.
pub fn harness_dir() -> PathBuf {
    std::env::var_os("SANDBOX_TEST_HARNESS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bots/harness"))
}

/// Whether every job of the suite goes through a pre-warmed runner
/// (`SANDBOX_TEST_PREWARM=1`; tests/steps/30-sandbox.sh runs the suite both
/// ways in both modes): `--prewarm`, the job's [`WarmSpec`] line, then the job.
pub fn prewarmed() -> bool {
    std::env::var_os("SANDBOX_TEST_PREWARM").is_some_and(|v| v == "1")
}

/// Whether every job of the suite without network goes through a fork
/// template (`SANDBOX_TEST_FORK=1`): `--template`, the spec line, the job
/// (given a hash seed if it has none: templates serve seeded bots), and
/// the first outcome line.
pub fn forked() -> bool {
    std::env::var_os("SANDBOX_TEST_FORK").is_some_and(|v| v == "1")
}

/// The exit code a fresh runner gives `o` (`cli::exit_code`), for the
/// suite's checks of runs through a template, which prints outcomes only.
pub fn exit_code_of(o: &HookOutcome) -> i32 {
    use hook_protocol::exit;
    match o {
        HookOutcome::Ok { .. } => exit::OK,
        HookOutcome::Error { error } => match error {
            HookError::Timeout { .. } => exit::TIMEOUT,
            HookError::Memory { .. } => exit::MEMORY,
            HookError::OutputOverrun { .. } => exit::OUTPUT_OVERRUN,
            HookError::Confinement { .. } => exit::CONFINEMENT_FAILED,
            HookError::Internal { .. } => exit::INTERNAL,
            _ => exit::HOOK_FAILED,
        },
    }
}

/// The bytes a pre-warmed runner reads before the job: its spec line.
pub fn warm_spec_line(job: &HookJob, idle_ms: u64) -> Vec<u8> {
    let mut line = serde_json::to_vec(&WarmSpec::of(job, idle_ms)).expect("serialize spec");
    line.push(b'\n');
    line
}

/// `sandbox-runner MODE` (`--prewarm`, `--template`) started with its spec
/// line for `job` written, its stdio piped: the process and its stdin.
pub fn start_with_spec(
    mode: &str,
    job: &HookJob,
    idle_ms: u64,
    layer: Layer,
) -> (std::process::Child, std::process::ChildStdin) {
    start_with_warm_spec(mode, &WarmSpec::of(job, idle_ms), layer)
}

/// [`start_with_spec`] with the spec given whole.
pub fn start_with_warm_spec(
    mode: &str,
    spec: &WarmSpec,
    layer: Layer,
) -> (std::process::Child, std::process::ChildStdin) {
    let mut cmd = Command::new(runner());
    cmd.arg(mode);
    if layer == Layer::OsOnly {
        cmd.arg("--unchecked-language-layer");
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn sandbox-runner {mode}: {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    let mut line = serde_json::to_vec(spec).expect("serialize spec");
    line.push(b'\n');
    stdin.write_all(&line).expect("write spec");
    (child, stdin)
}

/// The interpreter every job runs on: Debian's real one (never the pyenv
/// shim), or `SANDBOX_TEST_PYTHON` (another real binary, e.g. the Python
/// 3.13 that nixpkgs ships, which tests/steps/30-sandbox.sh runs the suite
/// on too).
pub fn python() -> String {
    std::env::var("SANDBOX_TEST_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into())
}
/// Where Debian's `python3-requests` lives.
pub const DIST_PACKAGES: &str = "/usr/lib/python3/dist-packages";

pub fn is_root() -> bool {
    // Read from /proc to avoid unsafe geteuid in tests.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

pub fn job(source: &str) -> HookJob {
    HookJob {
        version: hook_protocol::PROTOCOL_VERSION,
        bot: BotSpec {
            name: "attack".into(),
            source: source.into(),
            params: json!({}),
            compiled: None,
        },
        hook: Hook::OnInit,
        context: HookContext {
            channel_id: "ch_test".into(),
            bot_id: "bot:referee".into(),
            players: vec![Player {
                label: "alice".into(),
                slot: "invite:alice".into(),
                filled: true,
            }],
        },
        state: json!({}),
        // Production limits, but a generous wall clock: CI machines can be
        // loaded, and the tests of the wall deadline set their own.
        limits: Limits {
            wall_ms: 30_000,
            ..Limits::default()
        },
        network: NetworkPolicy::default(),
        runtime: Runtime {
            python: python().into(),
            python_args: vec!["-I".into(), "-S".into(), "-B".into()],
            harness_dir: harness_dir(),
            python_path: if std::path::Path::new(DIST_PACKAGES).is_dir() {
                vec![DIST_PACKAGES.into()]
            } else {
                vec![]
            },
            sandbox_uid: 65534,
            sandbox_gid: 65534,
            system_dirs: Vec::new(),
        },
        entropy: None,
        now: None,
        hash_seed: None,
    }
}

pub fn with_network(mut j: HookJob, allow_cidrs: &[&str]) -> HookJob {
    j.network = NetworkPolicy {
        allowed: true,
        allow_cidrs: allow_cidrs.iter().map(|s| s.to_string()).collect(),
        deny_cidrs: vec![],
    };
    j
}

/// What one runner invocation produced.
#[derive(Debug)]
pub struct Run {
    pub outcome: HookOutcome,
    pub code: i32,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    /// The error, or a panic naming what the hook did instead.
    pub fn error(&self) -> &HookError {
        match &self.outcome {
            HookOutcome::Error { error } => error,
            o => panic!("expected an error, got {o:?}\nstderr: {}", self.stderr),
        }
    }

    /// Posts' bodies of a successful hook.
    pub fn posts(&self) -> Vec<Value> {
        match &self.outcome {
            HookOutcome::Ok { posts, .. } => posts.iter().map(|p| p.body.clone()).collect(),
            o => panic!("expected ok, got {o:?}\nstderr: {}", self.stderr),
        }
    }

    /// The one post of an `attack` bot.
    pub fn result(&self) -> Value {
        let p = self.posts();
        assert_eq!(p.len(), 1, "{p:?}");
        p[0].clone()
    }

    /// Asserts the hook was killed by seccomp (SIGSYS).
    pub fn assert_seccomp_killed(&self) {
        match self.error() {
            HookError::Policy { message, .. } => {
                assert!(message.contains("seccomp"), "{message}")
            }
            e => panic!(
                "expected a seccomp kill, got {e:?}\nstderr: {}",
                self.stderr
            ),
        }
        assert_eq!(self.code, hook_protocol::exit::HOOK_FAILED);
    }
}

/// Which language layer the harness applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// The normal bot path: `ast` check and facades.
    Checked,
    /// Test-only: the harness skips the language layer, so only the OS layer
    /// stands between the bot and the machine.
    OsOnly,
}

pub fn run_job(job: &HookJob, layer: Layer) -> Run {
    run_job_with(job, layer, |_| {})
}

/// Runs a job that may use up RLIMIT_NPROC, with no other hook running.
pub fn run_job_alone(job: &HookJob, layer: Layer) -> Run {
    let _alone = NPROC
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    spawn_runner(job, layer, |_| {})
}

pub fn run_job_with(job: &HookJob, layer: Layer, tweak: impl FnOnce(&mut Command)) -> Run {
    let _shared = NPROC
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    spawn_runner(job, layer, tweak)
}

fn spawn_runner(job: &HookJob, layer: Layer, tweak: impl FnOnce(&mut Command)) -> Run {
    let mut cmd = Command::new(runner());
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // A tweak may replace the command by a wrapper that execs the runner
    // (`setpriv ... RUNNER`): the runner's own flags come after it.
    tweak(&mut cmd);
    if layer == Layer::OsOnly {
        cmd.arg("--unchecked-language-layer");
    }
    // The spec carries the job's hash seed (its own or its entropy's), so
    // every job can run pre-warmed.
    let fork = forked() && !job.network.allowed;
    let warm = prewarmed() && !fork;
    let seeded;
    let job = if fork {
        cmd.arg("--template");
        let mut j = job.clone();
        if j.hash_seed.is_none() {
            j.hash_seed = Some(j.python_hash_seed().unwrap_or(4242));
        }
        seeded = j;
        &seeded
    } else {
        job
    };
    if warm {
        cmd.arg("--prewarm");
    }
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawn sandbox-runner");
    let input = serde_json::to_vec(job).expect("serialize job");
    {
        let mut stdin = child.stdin.take().expect("stdin");
        if fork {
            stdin
                .write_all(&warm_spec_line(job, 60_000))
                .expect("write spec");
            let mut line = input.clone();
            line.push(b'\n');
            let _ = stdin.write_all(&line);
        } else if warm {
            // The job follows once the runner has confined the sandbox and
            // exec'd the interpreter: it reads stdin past the line only then.
            stdin
                .write_all(&warm_spec_line(job, 60_000))
                .expect("write spec");
        }
        if !fork {
            // A runner that refused the spec closes stdin early.
            let written = stdin.write_all(&input);
            assert!(warm || written.is_ok(), "write job: {written:?}");
        }
    }
    let out = child.wait_with_output().expect("wait for sandbox-runner");
    let elapsed = start.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let first = if fork {
        stdout.lines().next().unwrap_or("")
    } else {
        stdout.trim()
    };
    let outcome: HookOutcome = serde_json::from_str(first.trim())
        .unwrap_or_else(|e| panic!("bad runner stdout ({e}): {stdout:?}\nstderr: {stderr}"));
    let code = if fork {
        exit_code_of(&outcome)
    } else {
        out.status.code().unwrap_or(-1)
    };
    Run {
        outcome,
        code,
        stderr,
        elapsed,
    }
}

/// A bot whose `on_init` runs `body` (Python statements of a function
/// `attack()` that returns a JSON-able value) and posts
/// `{"ok": true, "value": ...}` or `{"ok": false, "errno": N, "error": "..."}`.
pub fn attack_bot(body: &str) -> String {
    let mut src = String::from(
        "import os, sys, errno, socket, ctypes, ctypes.util\n\
         def attack():\n",
    );
    for line in body.trim_matches('\n').lines() {
        src.push_str("    ");
        src.push_str(line);
        src.push('\n');
    }
    src.push_str(
        "class Attack:\n\
         \x20   def __init__(self, ctx, params):\n\
         \x20       self.ctx = ctx\n\
         \x20   def on_init(self):\n\
         \x20       try:\n\
         \x20           v = attack()\n\
         \x20           self.ctx.post('result', {'ok': True, 'value': v})\n\
         \x20       except OSError as e:\n\
         \x20           self.ctx.post('result', {'ok': False, 'errno': e.errno, 'error': str(e)})\n",
    );
    src
}

/// Runs attack code with only the OS layer in the way.
pub fn attack(body: &str) -> Run {
    run_job(&job(&attack_bot(body)), Layer::OsOnly)
}

/// Runs attack code in a network bot.
pub fn attack_net(body: &str, allow_cidrs: &[&str]) -> Run {
    run_job(
        &with_network(job(&attack_bot(body)), allow_cidrs),
        Layer::OsOnly,
    )
}

/// Asserts the attack failed with `errno`.
#[track_caller]
pub fn assert_errno(run: &Run, errno: i32) {
    let r = run.result();
    assert_eq!(
        r["ok"],
        json!(false),
        "attack succeeded: {r}\nstderr: {}",
        run.stderr
    );
    assert_eq!(r["errno"], json!(errno), "{r}");
}

/// Raw syscall via ctypes: the bot body for `syscall(nr, args...)`.
pub fn ctypes_syscall(nr: i64, args: &str) -> String {
    let sep = if args.is_empty() { "" } else { ", " };
    format!(
        "libc = ctypes.CDLL(None, use_errno=True)\n\
         r = libc.syscall({nr}{sep}{args})\n\
         return {{'ret': r, 'errno': ctypes.get_errno()}}"
    )
}

/// A test host in a network namespace: `ip netns` + a veth pair, and a tiny
/// HTTP server on port 80 inside it.
pub struct TestHost {
    /// The test host, inside `cidr` (on the far side of the veth pair).
    pub addr: String,
    /// What a test passes in `allow_cidrs` to reach `addr`.
    pub cidr: String,
    /// This host's own address on the near side of the veth pair: inside
    /// `cidr`, and still never reachable from a bot.
    pub host_side: String,
    /// An address this host delivers locally through a `local` route on
    /// `lo` while no interface carries it (AnyIP), when the test host made
    /// one; only the kernel's route lookup knows it is this host's.
    pub local_route: Option<String>,
    netns: Option<String>,
    server: Option<std::process::Child>,
    www: Option<PathBuf>,
    // One test host at a time per process (names and addresses are per pid);
    // released after Drop removed the namespace.
    _turn: std::sync::MutexGuard<'static, ()>,
}

static TEST_HOST_TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Drop for TestHost {
    fn drop(&mut self) {
        if let Some(mut c) = self.server.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(ns) = &self.netns {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
            if let Some(local) = &self.local_route {
                let _ = Command::new("ip")
                    .args(["route", "del", "local", local, "dev", "lo"])
                    .status();
            }
        }
        if let Some(www) = &self.www {
            let _ = std::fs::remove_dir_all(www);
        }
    }
}

/// The test host: the one the CI step set up (`SANDBOX_TEST_HTTP_ADDR`,
/// `SANDBOX_TEST_HTTP_CIDR`, `SANDBOX_TEST_HOST_SIDE_ADDR`, optionally
/// `SANDBOX_TEST_LOCAL_ROUTE_ADDR`), or, as root, a fresh one made here. `None`
/// when neither is possible (an unprivileged developer run), which is a
/// failure when `SANDBOX_TEST_REQUIRE_HOST=1` (CI sets it).
pub fn test_host() -> Option<TestHost> {
    let host = make_test_host();
    assert!(
        host.is_some() || std::env::var("SANDBOX_TEST_REQUIRE_HOST").as_deref() != Ok("1"),
        "SANDBOX_TEST_REQUIRE_HOST=1 but no test host is available"
    );
    host
}

fn make_test_host() -> Option<TestHost> {
    let turn = TEST_HOST_TURN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let (Ok(addr), Ok(cidr), Ok(host_side)) = (
        std::env::var("SANDBOX_TEST_HTTP_ADDR"),
        std::env::var("SANDBOX_TEST_HTTP_CIDR"),
        std::env::var("SANDBOX_TEST_HOST_SIDE_ADDR"),
    ) {
        return Some(TestHost {
            addr,
            cidr,
            host_side,
            local_route: std::env::var("SANDBOX_TEST_LOCAL_ROUTE_ADDR").ok(),
            netns: None,
            server: None,
            www: None,
            _turn: turn,
        });
    }
    if !is_root() {
        return None;
    }
    // Names and the /30 differ per call: a deleted namespace's veth pair
    // disappears asynchronously, so the next call must not reuse its name.
    static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let sh = |args: &[&str]| {
        let st = Command::new("ip").args(args).status().expect("run ip");
        assert!(st.success(), "ip {args:?} failed");
    };
    let try_ip = |args: &[&str]| {
        Command::new("ip")
            .args(args)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let (n, ns) = (0..16)
        .map(|_| {
            let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let n = (std::process::id().wrapping_mul(7).wrapping_add(call * 13)) % 250 + 1;
            (n, format!("sbxtest{}-{call}", std::process::id()))
        })
        .find(|(n, ns)| {
            if !try_ip(&["netns", "add", ns]) {
                return false;
            }
            let (h, p) = (format!("sbxh{n}"), format!("sbxp{n}"));
            if try_ip(&["link", "add", &h, "type", "veth", "peer", "name", &p]) {
                return true;
            }
            let _ = try_ip(&["netns", "del", ns]);
            false
        })
        .expect("no free name for a test network namespace");
    let (host_if, peer_if) = (format!("sbxh{n}"), format!("sbxp{n}"));
    let (host_ip, peer_ip) = (format!("10.213.{n}.1"), format!("10.213.{n}.2"));
    let mut host = TestHost {
        addr: peer_ip.clone(),
        cidr: format!("10.213.{n}.0/30"),
        host_side: host_ip.clone(),
        local_route: None,
        netns: Some(ns.clone()),
        server: None,
        www: None,
        _turn: turn,
    };
    sh(&["link", "set", &peer_if, "netns", &ns]);
    sh(&["addr", "add", &format!("{host_ip}/30"), "dev", &host_if]);
    sh(&["link", "set", &host_if, "up"]);
    sh(&[
        "-n",
        &ns,
        "addr",
        "add",
        &format!("{peer_ip}/30"),
        "dev",
        &peer_if,
    ]);
    sh(&["-n", &ns, "link", "set", &peer_if, "up"]);
    sh(&["-n", &ns, "link", "set", "lo", "up"]);
    // AnyIP: this host answers for the address without any interface
    // carrying it. 10.213.251.0/24 is assigned by no test host (they use
    // 10.213.1-250.0/30), so the route shadows no real neighbour.
    let local = format!("10.213.251.{n}");
    if try_ip(&["route", "add", "local", &local, "dev", "lo"]) {
        host.local_route = Some(local);
    }
    // The server: Python's http.server inside the namespace, serving a
    // directory with one known file. Readiness is polled with a bounded
    // number of connects from inside the namespace.
    let root = std::env::temp_dir().join(format!("sbxtest-www-{}", std::process::id()));
    std::fs::create_dir_all(&root).expect("www dir");
    host.www = Some(root.clone());
    std::fs::write(root.join("index.html"), "hello from the test host\n").expect("index");
    let server = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns,
            "/usr/bin/python3",
            "-m",
            "http.server",
            "80",
            "--bind",
        ])
        .arg(&peer_ip)
        .arg("--directory")
        .arg(&root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the test server");
    host.server = Some(server);
    let probe = format!(
        "import socket,time\nfor i in range(200):\n    try:\n        socket.create_connection(('{peer_ip}',80),timeout=1).close(); break\n    except OSError: time.sleep(0.02)\nelse: raise SystemExit(1)"
    );
    let ok = Command::new("ip")
        .args(["netns", "exec", &ns, "/usr/bin/python3", "-c", &probe])
        .status()
        .expect("probe");
    assert!(ok.success(), "test server did not come up");
    Some(host)
}
