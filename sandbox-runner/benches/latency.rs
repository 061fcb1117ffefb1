//! Per-hook latency of the built `sandbox-runner`, end to end through the
//! real harness: spawn, confine, run the hook, read the outcome.
//!
//! `cargo bench -p sandbox-runner --bench latency` (as root for root mode, as
//! another user for user-namespace mode). `SANDBOX_BENCH_RUNS` sets the
//! number of runs per case (default 200). Prints p50/p99 of the wall time
//! seen by the caller, of `timings.confine_us` (runner start to the
//! interpreter's exec: the confinement steps' own cost) and of each step
//! (`--trace-steps`), next to bare interpreter start-up and the harness run
//! without the runner. The cases run interleaved, one round after another.
//! The cases without a runner also report their CPU time and minor page
//! faults (`getrusage(RUSAGE_CHILDREN)`), and a last section gives the CPU
//! and faults per hook of a fork template (`--template`: runner, template
//! and children, read from /proc between jobs) running one seeded hook
//! back to back. `SANDBOX_BENCH_PYTHON` names another interpreter (default
//! `/usr/bin/python3`, a real binary the sandbox uid can read) for every case.

use hook_protocol::{
    BotSpec, CompiledBot, Hook, HookContext, HookJob, HookOutcome, Limits, NetworkPolicy, Runtime,
    WarmSpec,
};
use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::time::TimeVal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TRIVIAL: &str = "class Trivial:\n    def __init__(self, ctx, params):\n        self.ctx = ctx\n    def on_init(self):\n        self.ctx.post('ok', {})\n";
const IMPORTS: &str = "import json, hashlib, random\nclass Imports:\n    def __init__(self, ctx, params):\n        self.ctx = ctx\n    def on_init(self):\n        h = hashlib.sha256(json.dumps({'r': random.random()}).encode()).hexdigest()\n        self.ctx.post('ok', {'h': h})\n";

/// The interpreter of every case: `SANDBOX_BENCH_PYTHON`, else Debian's.
fn python() -> String {
    std::env::var("SANDBOX_BENCH_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into())
}

fn job(source: &str, network: bool) -> HookJob {
    HookJob {
        version: hook_protocol::PROTOCOL_VERSION,
        bot: BotSpec {
            name: "bench".into(),
            source: source.into(),
            params: serde_json::json!({}),
            compiled: None,
        },
        hook: Hook::OnInit,
        context: HookContext {
            channel_id: "ch_bench".into(),
            bot_id: "bot:bench".into(),
            players: vec![],
        },
        state: serde_json::json!({}),
        limits: Limits::default(),
        network: NetworkPolicy {
            allowed: network,
            ..Default::default()
        },
        runtime: Runtime {
            python: python().into(),
            python_args: vec!["-I".into(), "-S".into(), "-B".into()],
            harness_dir: std::env::var_os("SANDBOX_TEST_HARNESS_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bots/harness")
                }),
            python_path: vec![],
            sandbox_uid: 65534,
            sandbox_gid: 65534,
            system_dirs: Vec::new(),
        },
        entropy: None,
        now: None,
        hash_seed: None,
    }
}

/// One hook: (wall time, confine_us, per-step micros from `--trace-steps`).
fn once(input: &[u8]) -> (Duration, u64, Vec<(String, u64)>) {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sandbox-runner"))
        .arg("--trace-steps")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sandbox-runner");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write job");
    let runner = child.id();
    let out = child.wait_with_output().expect("wait");
    let elapsed = start.elapsed();
    settle(runner);
    let steps = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("sandbox-runner: step ")?;
            let (name, us) = rest.rsplit_once(" +")?;
            Some((name.to_string(), us.strip_suffix(" us")?.parse().ok()?))
        })
        .collect();
    match serde_json::from_slice::<HookOutcome>(&out.stdout) {
        Ok(HookOutcome::Ok { timings, .. }) => (elapsed, timings.confine_us, steps),
        other => panic!(
            "hook failed: {other:?}\n{}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn report(name: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    println!(
        "{name:<62} p50 {:>7.2} ms   p99 {:>7.2} ms   (n={})",
        pct(&ms, 0.50),
        pct(&ms, 0.99),
        ms.len()
    );
}

/// Waits until no process of the runner `runner` is left (all of them are
/// in its session: the runner starts one), reaping those handed to the
/// bench, so that nothing of one sample runs into the next.
fn settle(runner: u32) {
    loop {
        while let Ok(st) = waitpid(
            None::<Pid>,
            Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL),
        ) {
            if st == WaitStatus::StillAlive {
                break;
            }
        }
        if session(runner).is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn report_cpu(name: &str, samples: Vec<(f64, f64)>) {
    let mut cpu: Vec<f64> = samples.iter().map(|s| s.0).collect();
    let mut faults: Vec<f64> = samples.iter().map(|s| s.1).collect();
    cpu.sort_by(f64::total_cmp);
    faults.sort_by(f64::total_cmp);
    println!(
        "{name:<62} p50 {:>7.2} ms   minor faults p50 {:>6.0}",
        pct(&cpu, 0.50),
        pct(&faults, 0.50)
    );
}

/// One measurement: wall time, and for runner cases `confine_us` and the
/// per-step split.
struct Sample {
    wall_ms: f64,
    confine_ms: Option<f64>,
    steps: Vec<(String, f64)>,
    /// CPU (user + system) and minor page faults of every process of the
    /// sample, from [`children_usage`]; reported for the cases without a
    /// runner only, whose processes the bench waits for itself (a runner's
    /// namespace is torn down by the kernel, which reaps the processes
    /// still in it without adding their times to anyone's).
    cpu_ms: f64,
    faults: f64,
}

/// The CPU time (user + system, ms) and minor page faults of this
/// process's children that have been waited for, theirs included.
fn children_usage() -> (f64, f64) {
    let ru = getrusage(UsageWho::RUSAGE_CHILDREN).expect("getrusage");
    let ms = |t: TimeVal| t.tv_sec() as f64 * 1e3 + t.tv_usec() as f64 / 1e3;
    (
        ms(ru.user_time()) + ms(ru.system_time()),
        ru.minor_page_faults() as f64,
    )
}

/// A case of the benchmark; all cases run interleaved, round by round, so
/// that a burst of load on the machine hits every case alike.
enum Case {
    Bare(&'static [&'static str]),
    UnconfinedHarness(Vec<u8>),
    Runner(Vec<u8>),
}

impl Case {
    fn harness_input(source: &str) -> Vec<u8> {
        let j = job(source, false);
        serde_json::to_vec(&serde_json::json!({
            "bot": j.bot, "hook": j.hook, "context": j.context, "state": j.state,
            "limits": {"max_posts": 20, "max_post_bytes": 65536, "max_state_bytes": 262144,
                       "max_output_bytes": 1048576},
            "network": false, "workspace": "/tmp", "sys_path": [],
        }))
        .expect("input")
    }

    fn runner(source: &str, network: bool) -> Case {
        Case::Runner(serde_json::to_vec(&job(source, network)).expect("job"))
    }

    fn sample(&self) -> Sample {
        let (cpu0, faults0) = children_usage();
        let mut sample = self.sample_wall();
        let (cpu1, faults1) = children_usage();
        sample.cpu_ms = cpu1 - cpu0;
        sample.faults = faults1 - faults0;
        sample
    }

    fn sample_wall(&self) -> Sample {
        match self {
            Case::Bare(args) => {
                let start = Instant::now();
                let st = Command::new(python())
                    .args(*args)
                    .status()
                    .expect("python3");
                assert!(st.success());
                Sample {
                    wall_ms: start.elapsed().as_secs_f64() * 1e3,
                    confine_ms: None,
                    steps: vec![],
                    cpu_ms: 0.0,
                    faults: 0.0,
                }
            }
            Case::UnconfinedHarness(input) => {
                // `sh` only redirects fd 3 for the result.
                let script = format!(
                    "exec {} -I -S -B {}/harness.py 3>/dev/null",
                    python(),
                    job("", false).runtime.harness_dir.display()
                );
                let start = Instant::now();
                let mut child = Command::new("/bin/sh")
                    .args(["-c", &script])
                    .stdin(Stdio::piped())
                    .spawn()
                    .expect("sh");
                child
                    .stdin
                    .take()
                    .expect("stdin")
                    .write_all(input)
                    .expect("write");
                assert!(child.wait().expect("wait").success());
                Sample {
                    wall_ms: start.elapsed().as_secs_f64() * 1e3,
                    confine_ms: None,
                    steps: vec![],
                    cpu_ms: 0.0,
                    faults: 0.0,
                }
            }
            Case::Runner(input) => {
                let (d, c, steps) = once(input);
                Sample {
                    wall_ms: d.as_secs_f64() * 1e3,
                    confine_ms: Some(c as f64 / 1e3),
                    steps: steps
                        .into_iter()
                        .map(|(n, us)| (n, us as f64 / 1e3))
                        .collect(),
                    cpu_ms: 0.0,
                    faults: 0.0,
                }
            }
        }
    }
}

/// The outcome of one hook in a fresh sandbox.
fn run_fresh(job: &HookJob) -> HookOutcome {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sandbox-runner"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sandbox-runner");
    let input = serde_json::to_vec(job).expect("job");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&input)
        .expect("write job");
    let runner = child.id();
    let out = child.wait_with_output().expect("wait");
    settle(runner);
    serde_json::from_slice(&out.stdout).expect("an outcome")
}

/// `source` as the daemon runs a seeded bot's hook: with the entropy and
/// clock of its message, the bot's hash seed, and the code the bot's
/// inspection checked and compiled once.
/// `bot` picks the entropy, hence the hash seed, and in root mode the
/// sandbox uid: one of each per bot, as the daemon gives each template a
/// uid of its own (RLIMIT_NPROC counts per uid).
fn seeded_job(source: &str, bot: u8, root: bool) -> HookJob {
    let mut j = job(source, false);
    if root {
        j.runtime.sandbox_uid = 64_000 + u32::from(bot);
        j.runtime.sandbox_gid = 64_000 + u32::from(bot);
    }
    let entropy = format!("{bot:02x}").repeat(32);
    j.entropy = Some(serde_json::from_value(serde_json::json!(entropy)).expect("entropy"));
    j.now =
        Some(serde_json::from_value(serde_json::json!("2026-12-04T00:00:00.000Z")).expect("now"));
    j.hash_seed = j.python_hash_seed();
    let mut inspect = j.clone();
    inspect.hook = Hook::Inspect;
    let compiled = match run_fresh(&inspect) {
        HookOutcome::Ok {
            manifest: Some(m), ..
        } => m["compiled"].clone(),
        other => panic!("inspection failed: {other:?}"),
    };
    j.bot.compiled = Some(serde_json::from_value::<CompiledBot>(compiled).expect("compiled code"));
    j
}

/// One process of a runner's session, from `/proc/PID/stat`.
struct Proc {
    pid: u32,
    ppid: u32,
    state: char,
    /// utime + stime + cutime + cstime, in clock ticks: its own CPU and
    /// that of the children it has reaped.
    ticks: u64,
    /// minflt + cminflt.
    faults: u64,
    template: bool,
}

/// Every process in session `sid` (a runner starts one for all of its).
fn session(sid: u32) -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // pid (comm) state ppid pgrp session tty tpgid flags minflt
            // cminflt majflt cmajflt utime stime cutime cstime ...
            let f: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
            let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
            if num(3)? != u64::from(sid) {
                return None;
            }
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            Some(Proc {
                pid,
                ppid: num(1)? as u32,
                state: f[0].chars().next()?,
                ticks: num(11)? + num(12)? + num(13)? + num(14)?,
                faults: num(7)? + num(8)?,
                template: String::from_utf8_lossy(&cmdline).contains("harness.py\0--template"),
            })
        })
        .collect()
}

/// Waits until the template of runner `sid` has reaped the child of its
/// last job and the child for the next one (not `not`) waits for its job:
/// nothing of a hook is under way then. Returns that child's pid.
fn quiescent(sid: u32, not: u32) -> u32 {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let procs = session(sid);
        let interpreters: Vec<&Proc> = procs.iter().filter(|p| p.template).collect();
        if let [a, b] = interpreters[..] {
            let (template, child) = if b.ppid == a.pid { (a, b) } else { (b, a) };
            if child.ppid == template.pid && child.state == 'S' && child.pid != not {
                return child.pid;
            }
        }
        assert!(Instant::now() < until, "the template never settled");
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// The CPU (ticks) and faults of runner `sid`'s processes, and of what
/// they have reaped.
fn session_usage(sid: u32) -> (u64, u64) {
    session(sid)
        .iter()
        .fold((0, 0), |(t, f), p| (t + p.ticks, f + p.faults))
}

/// A `sandbox-runner --template` serving one job, over and over.
struct Template {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    out: BufReader<std::process::ChildStdout>,
    line: Vec<u8>,
    /// The runner's pid, its session's id.
    sid: u32,
}

impl Template {
    fn start(job: &HookJob) -> Template {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sandbox-runner"))
            .arg("--template")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sandbox-runner --template");
        let mut stdin = child.stdin.take().expect("stdin");
        let mut spec = serde_json::to_vec(&WarmSpec::of(job, 60_000)).expect("spec");
        spec.push(b'\n');
        stdin.write_all(&spec).expect("write spec");
        let mut line = serde_json::to_vec(job).expect("job");
        line.push(b'\n');
        Template {
            out: BufReader::new(child.stdout.take().expect("stdout")),
            sid: child.id(),
            child,
            stdin,
            line,
        }
    }

    fn run(&mut self) {
        self.stdin.write_all(&self.line).expect("write job");
        self.stdin.flush().expect("flush");
        let mut answer = String::new();
        self.out.read_line(&mut answer).expect("read outcome");
        match serde_json::from_str::<HookOutcome>(&answer) {
            Ok(HookOutcome::Ok { .. }) => {}
            other => panic!("a forked hook failed: {other:?}"),
        }
    }

    fn finish(self) {
        let Template {
            mut child,
            stdin,
            sid,
            ..
        } = self;
        drop(stdin);
        assert!(child.wait().expect("wait").success(), "the template failed");
        settle(sid);
    }
}

/// The CPU (ms) and minor faults per hook of `hooks` hooks sent round
/// robin to one template per job of `jobs` (each warmed up first): of the
/// runners, their templates and the templates' children, read from /proc
/// between jobs (the kernel reaps a namespace's processes itself when it
/// ends, so `getrusage` does not see them).
fn templates_per_hook(jobs: &[HookJob], hooks: usize) -> (f64, f64) {
    let mut templates: Vec<Template> = jobs.iter().map(Template::start).collect();
    for t in &mut templates {
        for _ in 0..5 {
            t.run();
        }
    }
    let usage = |templates: &[Template], not: &[u32]| -> (u64, u64) {
        templates
            .iter()
            .zip(not)
            .fold((0, 0), |(t, f), (tpl, not)| {
                quiescent(tpl.sid, *not);
                let (t1, f1) = session_usage(tpl.sid);
                (t + t1, f + f1)
            })
    };
    let none = vec![0; templates.len()];
    let before = usage(&templates, &none);
    // The child that runs each template's last job, to know when it is gone.
    let mut last = none.clone();
    for i in 0..hooks {
        let k = i % templates.len();
        if i + templates.len() >= hooks {
            last[k] = quiescent(templates[k].sid, 0);
        }
        templates[k].run();
    }
    let after = usage(&templates, &last);
    for t in templates {
        t.finish();
    }
    let tick_ms = 1e3
        / nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .unwrap_or(100) as f64;
    (
        (after.0 - before.0) as f64 * tick_ms / hooks as f64,
        (after.1 - before.1) as f64 / hooks as f64,
    )
}

/// CPU per hook of fork templates: the same seeded hook (its compiled code
/// given, as the daemon gives it) back to back through one template, and
/// round robin through 16 (16 bots, each with its own hash seed, one hook
/// at a time), three times each.
fn cpu_per_hook(runs: usize, root: bool) {
    let jobs: Vec<HookJob> = (0..16).map(|bot| seeded_job(IMPORTS, bot, root)).collect();
    let hooks = runs.max(16);
    println!(
        "fork templates, seeded json,hashlib,random hook with its compiled code, {hooks} hooks; \
         CPU and minor faults per hook of the runners, templates and children (median of 3 runs):"
    );
    for (name, jobs) in [
        ("one template", &jobs[..1]),
        ("16 templates, round robin", &jobs[..]),
    ] {
        let mut runs: Vec<(f64, f64)> = (0..3).map(|_| templates_per_hook(jobs, hooks)).collect();
        runs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (cpu, faults) = runs[1];
        println!("  {name:<58} CPU {cpu:>6.2} ms   minor faults {faults:>6.0}");
    }
}

/// What a page costs a forked child on this machine, for reading the
/// per-hook figures: the interpreter holds 16 MiB of written memory (about a
/// template's resident size) and forks; the child writes 700 times into one
/// page (the fork and exit alone, near enough), once into each of 700 pages
/// it shares with the interpreter (each copied; about a forked hook's
/// faults), or once into each of 700 pages it maps itself (each allocated,
/// nothing copied), or has the 700 shared pages copied by one
/// `madvise(MADV_POPULATE_WRITE)` instead of 700 faults; then exits. CPU of
/// parent and children, per child.
const COPY_ON_WRITE: &str = "\
import ctypes, mmap, os, resource
PAGE = 4096
buf = mmap.mmap(-1, 16 << 20, mmap.MAP_PRIVATE)
for i in range(0, len(buf), PAGE):
    buf[i] = 1
at = ctypes.addressof(ctypes.c_char.from_buffer(buf))
madvise = ctypes.CDLL(None, use_errno=True).madvise
madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
MADV_POPULATE_WRITE = 23
def cpu():
    a = resource.getrusage(resource.RUSAGE_SELF)
    b = resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime
def per_child(how, n=300):
    t = cpu()
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            if how == 'populate':
                os._exit(madvise(at, 700 * PAGE, MADV_POPULATE_WRITE) != 0)
            to = mmap.mmap(-1, 700 * PAGE, mmap.MAP_PRIVATE) if how == 'fresh' else buf
            stride = 0 if how == 'one' else PAGE
            for i in range(700):
                to[i * stride] = 2
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert status == 0, how
    return (cpu() - t) / n * 1e6
# Linux 5.14 and later; -1 when the kernel has no MADV_POPULATE_WRITE.
hows = ['one', 'spread', 'fresh'] + (['populate'] if madvise(at, PAGE, MADV_POPULATE_WRITE) == 0 else [])
print(*(f'{min(per_child(how) for _ in range(3)):.0f}' for how in hows), *([] if 'populate' in hows else [-1]))
";

fn copy_on_write_cost() {
    let out = Command::new(python())
        .args(["-I", "-S", "-B", "-c", COPY_ON_WRITE])
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let us: Vec<f64> = text
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    let [one, spread, fresh, populate] = us[..] else {
        panic!("unexpected output {text:?}")
    };
    let per_page = |us: f64| (us - one) / 700.0;
    let populated = if populate < 0.0 {
        "not on this kernel".to_string()
    } else {
        format!(
            "{:.2} ms ({:.2} µs per page)",
            populate / 1e3,
            per_page(populate)
        )
    };
    println!(
        "copy-on-write on this machine: an interpreter with 16 MiB written forks a child that writes \
         700 times in one page and exits: CPU {:.2} ms per child; once in each of 700 pages: \
         {:.2} ms ({:.2} µs per copied page); in 700 pages it maps itself, nothing copied: \
         {:.2} ms ({:.2} µs per page); the 700 shared pages copied by one \
         madvise(MADV_POPULATE_WRITE): {populated}",
        one / 1e3,
        spread / 1e3,
        per_page(spread),
        fresh / 1e3,
        per_page(fresh),
    );
}

fn main() {
    // The processes a runner leaves behind come back to the bench, which
    // waits until they are gone before the next sample (`settle`).
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing
    // useful either: run a short smoke pass unless asked for a real one.
    let runs: usize = std::env::var("SANDBOX_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if std::env::args().any(|a| a == "--bench") {
            200
        } else {
            3
        });
    let mode = if std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
    {
        "root mode"
    } else {
        "user-namespace mode"
    };
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!(
        "sandbox-runner latency, {mode}, {cpus} CPUs, {runs} runs per case, interleaved, on {}",
        python()
    );
    let cases: Vec<(&str, Case)> = vec![
        (
            "bare python -I -S -B -c pass",
            Case::Bare(&["-I", "-S", "-B", "-c", "pass"]),
        ),
        (
            "bare python -c 'import json,hashlib,random'",
            Case::Bare(&["-I", "-S", "-B", "-c", "import json,hashlib,random"]),
        ),
        (
            "unconfined harness, trivial hook",
            Case::UnconfinedHarness(Case::harness_input(TRIVIAL)),
        ),
        (
            "unconfined harness, json,hashlib,random",
            Case::UnconfinedHarness(Case::harness_input(IMPORTS)),
        ),
        ("trivial hook", Case::runner(TRIVIAL, false)),
        ("json,hashlib,random hook", Case::runner(IMPORTS, false)),
        (
            "json,hashlib,random hook, network",
            Case::runner(IMPORTS, true),
        ),
    ];
    for (_, case) in &cases {
        for _ in 0..3 {
            let _ = case.sample(); // warm the page cache
        }
    }
    let mut samples: Vec<Vec<Sample>> = cases.iter().map(|_| Vec::new()).collect();
    for _ in 0..runs {
        for (i, (_, case)) in cases.iter().enumerate() {
            samples[i].push(case.sample());
        }
    }
    for ((name, case), samples) in cases.iter().zip(samples) {
        let is_runner = matches!(case, Case::Runner(_));
        let label = if is_runner {
            format!("{name}: whole hook")
        } else {
            name.to_string()
        };
        report(&label, samples.iter().map(|s| s.wall_ms).collect());
        if !is_runner {
            report_cpu(
                &format!("{name}: CPU"),
                samples.iter().map(|s| (s.cpu_ms, s.faults)).collect(),
            );
            continue;
        }
        report(
            &format!("{name}: confinement (start to exec)"),
            samples.iter().filter_map(|s| s.confine_ms).collect(),
        );
        let mut steps: Vec<(String, Vec<f64>)> = Vec::new();
        for s in &samples {
            for (step, ms) in &s.steps {
                match steps.iter_mut().find(|(n, _)| n == step) {
                    Some((_, v)) => v.push(*ms),
                    None => steps.push((step.clone(), vec![*ms])),
                }
            }
        }
        for (step, ms) in steps {
            report(&format!("    step {step}"), ms);
        }
    }
    cpu_per_hook(runs, mode == "root mode");
    copy_on_write_cost();
}
