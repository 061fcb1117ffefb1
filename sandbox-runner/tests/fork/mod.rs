//! Fork templates (`sandbox-runner --template`): one confined interpreter
//! forks one child per hook; each child confines itself the rest of the
//! way (CPU limit, a seccomp filter that narrows the template's allowlist
//! to a hook's) before it reads its job.
//!
//! The whole attack suite also runs through templates
//! (`SANDBOX_TEST_FORK=1`, both modes, in tests/steps/30-sandbox.sh); these
//! tests cover what only a template does: several hooks in a row, each its
//! own process with nothing left behind, children that cannot reach the
//! template or each other nor make a call only the template may, crashes and timeouts that stay in their child,
//! a template that exits when idle, jobs that do not match its spec, and a
//! bot that cannot tell a forked hook from a fresh one but by timing (and
//! its pid: see README.md, "Fork templates").

use crate::util::*;
use hook_protocol::{Entropy, HookError, HookJob, HookOutcome, WarmSpec};
use nix::errno::Errno;
use nix::unistd::Pid;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout};
use std::time::{Duration, Instant};

/// A running template and its pipes.
pub struct Template {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Template {
    pub fn start(spec_job: &HookJob, idle_ms: u64, layer: Layer) -> Template {
        Template::start_spec(&WarmSpec::of(spec_job, idle_ms), layer)
    }

    pub fn start_spec(spec: &WarmSpec, layer: Layer) -> Template {
        let (mut child, stdin) = start_with_warm_spec("--template", spec, layer);
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Template {
            child,
            stdin: Some(stdin),
            stdout,
        }
    }

    /// Runs one job: writes its line, reads one outcome line.
    pub fn run(&mut self, job: &HookJob) -> HookOutcome {
        self.send(job);
        self.outcome()
    }

    /// Writes one job line.
    pub fn send(&mut self, job: &HookJob) {
        let mut line = serde_json::to_vec(job).expect("serialize job");
        line.push(b'\n');
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(&line).expect("write job");
        stdin.flush().expect("flush");
    }

    pub fn outcome(&mut self) -> HookOutcome {
        let mut out = String::new();
        self.stdout.read_line(&mut out).expect("read outcome");
        serde_json::from_str(out.trim()).unwrap_or_else(|e| {
            let mut err = String::new();
            if out.is_empty() {
                use std::io::Read;
                let _ = self
                    .child
                    .stderr
                    .take()
                    .map(|mut s| s.read_to_string(&mut err));
            }
            panic!("bad template outcome ({e}): {out:?} {err}")
        })
    }

    /// Closes stdin and waits for the runner; every process of it is gone.
    pub fn finish(mut self) -> (i32, String) {
        drop(self.stdin.take());
        self.wait()
    }

    /// Waits for the runner to end on its own.
    pub fn wait(mut self) -> (i32, String) {
        let pid = self.child.id() as i32;
        let mut err = String::new();
        use std::io::Read;
        let _ = self
            .child
            .stderr
            .take()
            .expect("stderr")
            .read_to_string(&mut err);
        let status = self.child.wait().expect("wait");
        assert_group_gone(pid);
        (status.code().unwrap_or(-1), err)
    }
}

/// Every process of the runner's session is gone (bounded wait).
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

/// A job a template can take: a hash seed (a seeded bot's).
pub fn seeded(mut j: HookJob) -> HookJob {
    if j.hash_seed.is_none() {
        j.hash_seed = Some(j.python_hash_seed().unwrap_or(4242));
    }
    j
}

fn value(o: &HookOutcome) -> Value {
    match o {
        HookOutcome::Ok { posts, .. } => {
            assert_eq!(posts.len(), 1, "{posts:?}");
            let p = &posts[0].body;
            assert_eq!(p["ok"], json!(true), "{p}");
            p["value"].clone()
        }
        o => panic!("expected ok, got {o:?}"),
    }
}

fn error(o: &HookOutcome) -> &HookError {
    match o {
        HookOutcome::Error { error } => error,
        o => panic!("expected an error, got {o:?}"),
    }
}

fn attack_job(body: &str) -> HookJob {
    seeded(job(&attack_bot(body)))
}

#[test]
fn each_hook_is_its_own_process_and_leaves_nothing_behind() {
    let j = attack_job(
        "import time\n\
         names = sorted(os.listdir('.'))\n\
         open('left-' + str(os.getpid()), 'w').write('x')\n\
         os.mkdir('d'); open('d/f', 'w').write('y'); os.chmod('d', 0)\n\
         return [os.getpid(), os.getppid(), names, threading_count()]",
    );
    let j = {
        let mut j = j;
        j.bot.source = j.bot.source.replace(
            "def attack():",
            "def threading_count():\n    import threading\n    return threading.active_count()\ndef attack():",
        );
        j
    };
    let mut t = Template::start(&j, 60_000, Layer::OsOnly);
    let mut pids = Vec::new();
    for _ in 0..4 {
        let v = value(&t.run(&j));
        // The workspace the child finds is empty: nothing of the one before.
        assert_eq!(v[2], json!([]), "{v}");
        assert_eq!(v[3], json!(1));
        pids.push(v[0].as_i64().unwrap());
        // Its parent is the template, the same for all.
        assert_eq!(v[1], json!(2));
    }
    let mut distinct = pids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 4, "{pids:?}");
    let (code, err) = t.finish();
    assert_eq!(code, 0, "{err}");
}

#[test]
fn a_hook_cannot_kill_the_template_or_the_reaper() {
    // EPERM from the hook's seccomp allowlist (kill is not on it; tgkill only
    // to its own pid), whatever the template's filter allows.
    let j = attack_job(
        "out = []\n\
         for pid in (1, 2, os.getppid()):\n\
         \x20   try:\n\
         \x20       os.kill(pid, 9)\n\
         \x20       out.append('killed')\n\
         \x20   except OSError as e:\n\
         \x20       out.append(e.errno)\n\
         r = libc.syscall(234, 2, 2, 9)\n\
         out.append([r, ctypes.get_errno()])\n\
         return out",
    );
    let j = with_libc(j);
    let mut t = Template::start(&j, 60_000, Layer::OsOnly);
    let v = value(&t.run(&j));
    assert_eq!(v, json!([1, 1, 1, [-1, 1]]));
    // The template still serves.
    let v = value(&t.run(&j));
    assert_eq!(v[0], json!(1));
    let (code, err) = t.finish();
    assert_eq!(code, 0, "{err}");
}

fn with_libc(mut j: HookJob) -> HookJob {
    j.bot.source = j.bot.source.replace(
        "def attack():",
        "libc = ctypes.CDLL(None, use_errno=True)\ndef attack():",
    );
    j
}

#[test]
fn ptrace_or_reading_the_templates_memory_is_killed_by_seccomp() {
    for call in [
        // ptrace(PTRACE_ATTACH, template)
        "libc.syscall(101, 16, os.getppid(), 0, 0)",
        // process_vm_readv(template, ...)
        "libc.syscall(310, os.getppid(), 0, 0, 0, 0, 0)",
    ] {
        let j = with_libc(attack_job(&format!("return {call}")));
        let mut t = Template::start(&j, 60_000, Layer::OsOnly);
        let o = t.run(&j);
        match error(&o) {
            HookError::Policy { message, .. } => assert!(message.contains("seccomp"), "{message}"),
            e => panic!("{call}: expected a seccomp kill, got {e:?}"),
        }
        // Only the child died: the next hook runs.
        let ok = attack_job("return 1");
        let ok = HookJob {
            runtime: j.runtime.clone(),
            ..ok
        };
        assert_eq!(value(&t.run(&ok)), json!(1));
        let (code, err) = t.finish();
        assert_eq!(code, 0, "{err}");
    }
}

#[test]
fn a_pidfd_of_the_template_is_refused_to_a_hook() {
    // pidfd_open is on the template's allowlist only: EPERM in a hook.
    let j = with_libc(attack_job(
        "r = libc.syscall(434, os.getppid(), 0)\nreturn [r, ctypes.get_errno()]",
    ));
    let mut t = Template::start(&j, 60_000, Layer::OsOnly);
    assert_eq!(value(&t.run(&j)), json!([-1, 1]));
    t.finish();
}

#[test]
fn what_only_a_template_may_do_is_refused_to_a_forked_hook_as_to_a_fresh_one() {
    // The template's allowlist adds what forking and reaping need; each
    // child's own filter on top (`seccomp::narrowing_program`) gives every
    // one of those calls back to the hook's rule, so a forked hook gets
    // EPERM for each, exactly as a fresh hook does. Without that filter the
    // answers would be the template's: 0, ECHILD, EFAULT, a pidfd...
    let j = with_libc(attack_job(
        "me, parent = os.getpid(), os.getppid()\n\
         rl = (ctypes.c_uint64 * 2)()\n\
         def call(*a):\n\
         \x20   r = libc.syscall(*a)\n\
         \x20   return [r, ctypes.get_errno() if r == -1 else 0]\n\
         out = {}\n\
         out['read_cpu_limit'] = call(302, 0, 0, None, rl)\n\
         out['set_cpu_limit'] = call(302, 0, 0, rl, None)\n\
         out['wait4'] = call(61, -1, None, 1, None)\n\
         out['pidfd_open'] = call(434, parent, 0)\n\
         out['kill_parent'] = call(62, parent, 9)\n\
         out['tgkill_parent'] = call(234, parent, parent, 0)\n\
         out['tgkill_self'] = call(234, me, me, 0)\n\
         out['set_seccomp'] = call(157, 22, 2, None, 0, 0)\n\
         out['set_dumpable'] = call(157, 4, 0, 0, 0, 0)\n\
         out['get_dumpable'] = call(157, 3, 0, 0, 0, 0)\n\
         out['set_name'] = call(157, 15, b'x', 0, 0, 0)\n\
         try:\n\
         \x20   pid = os.fork()\n\
         \x20   if pid == 0:\n\
         \x20       os._exit(0)\n\
         \x20   out['fork'] = 'forked'\n\
         except OSError as e:\n\
         \x20   out['fork'] = e.errno\n\
         return out",
    ));
    let want = json!({
        "read_cpu_limit": [0, 0],
        "set_cpu_limit": [-1, 1],
        "wait4": [-1, 1],
        "pidfd_open": [-1, 1],
        "kill_parent": [-1, 1],
        "tgkill_parent": [-1, 1],
        "tgkill_self": [0, 0],
        "set_seccomp": [-1, 1],
        "set_dumpable": [-1, 1],
        "get_dumpable": [-1, 1],
        "set_name": [0, 0],
        "fork": 1,
    });
    let fresh = run_job(&j, Layer::OsOnly).posts()[0]["value"].clone();
    assert_eq!(fresh, want);
    let mut t = Template::start(&j, 60_000, Layer::OsOnly);
    for _ in 0..2 {
        assert_eq!(value(&t.run(&j)), want);
    }
    let (code, err) = t.finish();
    assert_eq!(code, 0, "{err}");
}

#[test]
fn a_crash_or_timeout_in_one_child_stays_in_it() {
    let crash = with_libc(attack_job("libc.abort()"));
    let mut spin = attack_job("while True: pass");
    spin.limits.cpu_secs = 1;
    let mut sleeper = attack_job("import time\ntime.sleep(60)");
    sleeper.limits.wall_ms = 1500;
    let ok = attack_job("return 1");
    for bad in [crash, spin, sleeper] {
        let mut ok = ok.clone();
        ok.limits = bad.limits.clone();
        let mut t = Template::start(&bad, 60_000, Layer::OsOnly);
        let started = Instant::now();
        let o = t.run(&bad);
        let e = error(&o);
        if bad.limits.cpu_secs == 1 || bad.limits.wall_ms == 1500 {
            assert!(matches!(e, HookError::Timeout { .. }), "{e:?}");
        } else {
            assert!(matches!(e, HookError::Exception { .. }), "{e:?}");
        }
        assert!(started.elapsed() < Duration::from_secs(20));
        assert_eq!(value(&t.run(&ok)), json!(1));
        let (code, err) = t.finish();
        assert_eq!(code, 0, "{err}");
    }
}

#[test]
fn an_idle_template_exits_on_its_own_and_leaves_nothing() {
    let j = attack_job("return 1");
    let mut t = Template::start(&j, 400, Layer::OsOnly);
    assert_eq!(value(&t.run(&j)), json!(1));
    // Stdin stays open: only the idle time ends it.
    let started = Instant::now();
    let stdin = t.stdin.take();
    let (code, err) = t.wait();
    drop(stdin);
    assert_eq!(code, 0);
    assert!(err.contains("no job for 400 ms"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_child_collects_only_what_it_made_its_templates_heap_is_frozen() {
    // The template moves what it holds to the collector's permanent
    // generation before its first child: a child's collections (still on,
    // as in a fresh hook) then do not walk, and so do not copy, the heap
    // it shares with the template. (Unchecked code only: bots cannot
    // import `gc`.)
    let j = attack_job("import gc\nreturn [gc.get_freeze_count(), gc.isenabled()]");
    let mut t = Template::start(&j, 60_000, Layer::OsOnly);
    for _ in 0..2 {
        let v = value(&t.run(&j));
        assert!(v[0].as_i64().unwrap() > 1000, "{v}");
        assert_eq!(v[1], json!(true), "{v}");
    }
    let (code, err) = t.finish();
    assert_eq!(code, 0, "{err}");
}

#[test]
fn a_template_retires_after_its_hooks_and_its_runner_ends_at_once() {
    // A template retires after 20,000 hooks (or 600 s of CPU); a spec may
    // ask for fewer, here three.
    let j = attack_job("return [os.getpid(), os.getppid()]");
    let mut spec = WarmSpec::of(&j, 60_000);
    spec.retire_after_hooks = Some(3);
    let mut t = Template::start_spec(&spec, Layer::OsOnly);
    let mut pids = Vec::new();
    for _ in 0..3 {
        let v = value(&t.run(&j));
        assert_eq!(v[1], json!(2), "forked by the template: {v}");
        pids.push(v[0].as_i64().unwrap());
    }
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), 3, "{pids:?}");
    // Its stdin still open and its idle time far off, the runner ends as
    // soon as its template retires (it would otherwise wait for the next
    // job only to answer that nothing ran), and all of it is gone.
    let started = Instant::now();
    let stdin = t.stdin.take();
    let (code, err) = t.wait();
    drop(stdin);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("fork template ended"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30), "{err}");
}

#[test]
fn a_template_that_dies_between_jobs_ends_its_runner_at_once() {
    let j = attack_job("return 1");
    let mut t = Template::start(&j, 60_000, Layer::OsOnly);
    // The template killed from outside between jobs, while the child for
    // the next job waits for it.
    let until = Instant::now() + Duration::from_secs(10);
    let (template, _) = run_until_the_next_child_waits(&mut t, &j, until);
    nix::sys::signal::kill(Pid::from_raw(template), nix::sys::signal::Signal::SIGKILL).unwrap();
    let stdin = t.stdin.take();
    let (code, err) = t.wait();
    drop(stdin);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("fork template ended"), "{err}");
}

#[test]
fn a_job_that_differs_from_the_spec_is_refused_and_nothing_runs() {
    let j = attack_job("return 1");
    let mut t = Template::start(&j, 60_000, Layer::OsOnly);
    let mut uid = j.clone();
    uid.runtime.sandbox_uid += 1;
    let mut slow = j.clone();
    slow.limits.cpu_secs += 1;
    let mut other_seed = j.clone();
    other_seed.hash_seed = Some(j.hash_seed.unwrap() + 1);
    let mut net = j.clone();
    net.network.allowed = true;
    for (bad, why) in [
        (uid, "runtime"),
        (slow, "limits"),
        (other_seed, "hash_seed"),
        (net, "network"),
    ] {
        match error(&t.run(&bad)) {
            HookError::Internal {
                message,
                nothing_ran,
            } => {
                assert!(*nothing_ran && message.contains(why), "{message}")
            }
            e => panic!("{why}: {e:?}"),
        }
    }
    assert_eq!(value(&t.run(&j)), json!(1));
    t.finish();
}

#[test]
fn a_spec_without_a_hash_seed_or_with_network_gets_no_template() {
    let mut plain = job(&attack_bot("return 1"));
    plain.hash_seed = None;
    let mut net = attack_job("return 1");
    net.network.allowed = true;
    for j in [plain, net] {
        let mut t = Template::start(&j, 60_000, Layer::OsOnly);
        assert!(matches!(error(&t.outcome()), HookError::Internal { .. }));
        let (code, _) = t.finish();
        assert_eq!(code, hook_protocol::exit::BAD_JOB);
    }
}

#[test]
fn a_deterministic_bot_gives_the_same_result_forked_and_fresh() {
    let seed: Entropy = "3c".repeat(32).parse().unwrap();
    let mut j = job(
        "class Bot:\n    def __init__(self, ctx, params):\n        self.ctx = ctx\n    \
         def on_init(self):\n        import random\n        \
         self.ctx.post('said', [random.random(), hash('x'), sorted({'a', 'b', 'c'})])\n",
    );
    j.entropy = Some(Entropy::for_hook(&seed, 1));
    j.hash_seed = Some(seed.python_hash_seed());
    let fresh = run_job(&j, Layer::Checked).posts();
    let mut t = Template::start(&j, 60_000, Layer::Checked);
    for _ in 0..2 {
        match t.run(&j) {
            HookOutcome::Ok { posts, .. } => {
                assert_eq!(
                    posts.iter().map(|p| p.body.clone()).collect::<Vec<_>>(),
                    fresh
                )
            }
            o => panic!("{o:?}"),
        }
    }
    t.finish();
}

#[test]
fn a_bot_cannot_tell_a_forked_hook_from_a_fresh_one_but_by_its_pid() {
    // Four hooks of one seeded bot: two fresh, two forked from one template.
    let bot_seed: Entropy = "5a".repeat(32).parse().unwrap();
    let hook = |seq: u64| {
        let mut j = job(&attack_bot(crate::prewarm::PROBE));
        j.entropy = Some(Entropy::for_hook(&bot_seed, seq));
        j.hash_seed = Some(bot_seed.python_hash_seed());
        j
    };
    let mut probes: Vec<Value> = (1..=2)
        .map(|seq| {
            let posts = run_job(&hook(seq), Layer::OsOnly).posts();
            posts[0]["value"].clone()
        })
        .collect();
    let mut t = Template::start(&hook(0), 60_000, Layer::OsOnly);
    for seq in 3..=4 {
        probes.push(value(&t.run(&hook(seq))));
    }
    t.finish();
    for p in &mut probes {
        // The one difference a bot sees: its pid and its parent's. A fresh
        // hook is pid 2 under the reaper; a forked one is a later pid under
        // the template (pid 2).
        let ids = p["same"]["ids"].as_array_mut().unwrap();
        ids[0] = json!("pid");
        ids[1] = json!("ppid");
    }
    for p in &probes[1..] {
        for (key, value) in p["same"].as_object().expect("same is an object") {
            assert_eq!(value, &probes[0]["same"][key], "{key} differs");
        }
    }
    // What each hook draws is its own: `random` and `os.urandom` differ in
    // all four, string hashes are the bot's in all four.
    for key in ["random", "urandom"] {
        let mut seen: Vec<String> = probes.iter().map(|p| p["fresh"][key].to_string()).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 4, "{key} repeats: {probes:?}");
    }
    for p in &probes[1..] {
        assert_eq!(p["fresh"]["hash"], probes[0]["fresh"]["hash"]);
    }
}

#[test]
fn an_unseeded_hooks_random_differs_between_forked_children() {
    // No entropy in the job: `random` is seeded from os.urandom in each
    // child (never the template's state).
    let j = attack_job("import random\nreturn [random.getrandbits(64), os.urandom(8).hex()]");
    let mut t = Template::start(&j, 60_000, Layer::OsOnly);
    let a = value(&t.run(&j));
    let b = value(&t.run(&j));
    assert_ne!(a[0], b[0]);
    assert_ne!(a[1], b[1]);
    t.finish();
}

/// A process's state letter (`R`, `S`, `Z`...), `?` once it is gone.
fn state(pid: i32) -> char {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s[s.rfind(')')? + 2..].chars().next())
        .unwrap_or('?')
}

/// Whether `pid` is among `procs` and runs an interpreter: sorts a
/// template's interpreter (parent: a runner process) before its child.
fn found_parent(procs: &[(i32, i32, String)], pid: i32) -> bool {
    procs
        .iter()
        .any(|(p, _, cmd)| *p == pid && cmd.contains("harness.py"))
}

/// The processes under `root` (pid, parent's pid, cmdline), read from /proc.
fn descendants(root: u32) -> Vec<(i32, i32, String)> {
    let mut parent = std::collections::HashMap::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The field after the command (which may hold spaces) is the state,
        // then the parent's pid.
        let Some(rest) = stat.rfind(')').map(|at| &stat[at + 2..]) else {
            continue;
        };
        let Some(Ok(ppid)) = rest.split(' ').nth(1).map(str::parse::<i32>) else {
            continue;
        };
        parent.insert(pid, ppid);
    }
    let under = |mut pid: i32| {
        while let Some(&p) = parent.get(&pid) {
            if p == root as i32 {
                return true;
            }
            pid = p;
        }
        false
    };
    parent
        .keys()
        .filter(|&&pid| under(pid))
        .map(|&pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            (
                pid,
                parent[&pid],
                String::from_utf8_lossy(&cmd).replace('\0', " "),
            )
        })
        .collect()
}

#[test]
fn the_next_child_is_forked_ahead_but_its_deadline_starts_with_its_job() {
    // The runner has the next hook's child forked and confined as soon as
    // the previous hook ends; the wall time a hook gets still counts from
    // the hand-over of its job, not from that fork.
    let mut j = attack_job("import time\ntime.sleep(1.0)\nreturn 1");
    j.limits.wall_ms = 1600;
    let mut t = Template::start(&j, 60_000, Layer::OsOnly);
    assert_eq!(value(&t.run(&j)), json!(1));
    // Longer than the hook's whole wall time passes before the next job.
    std::thread::sleep(Duration::from_millis(2000));
    assert_eq!(value(&t.run(&j)), json!(1));
    let (code, err) = t.finish();
    assert_eq!(code, 0, "{err}");
}

/// The template's interpreters under runner `root`: (pid, parent pid,
/// state), the template first (the one whose parent is not an interpreter;
/// the child's command line is the same).
fn interpreters(root: u32) -> Vec<(i32, i32, char)> {
    let procs = descendants(root);
    let mut found: Vec<(i32, i32, char)> = procs
        .iter()
        .filter(|(_, _, cmd)| cmd.contains("harness.py --template"))
        .map(|(pid, ppid, _)| (*pid, *ppid, state(*pid)))
        .collect();
    found.sort_by_key(|(pid, ppid, _)| (found_parent(&procs, *ppid), *pid));
    found
}

/// The pids of the template and of a child forked for a job, once that
/// child waits for its job (blocked reading its input: state S) and is not
/// `not` (the child of the last job, which may still be on its way out).
fn waiting_child(root: u32, until: Instant, not: i32) -> (i32, i32) {
    loop {
        let found = interpreters(root);
        if let [template, child] = found[..]
            && child.1 == template.0
            && child.2 == 'S'
            && child.0 != not
        {
            return (template.0, child.0);
        }
        assert!(
            Instant::now() < until,
            "no child waiting for its job: {found:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `job` (which returns 1) and then waits until the child forked for
/// the next job waits for it: the runner, which asks for that child only
/// after the job's child has been reaped, is then back waiting for a job.
/// Returns the template's and that child's pids.
fn run_until_the_next_child_waits(t: &mut Template, job: &HookJob, until: Instant) -> (i32, i32) {
    let root = t.child.id();
    let (_, first) = waiting_child(root, until, 0);
    assert_eq!(value(&t.run(job)), json!(1));
    waiting_child(root, until, first)
}

#[test]
fn a_child_whose_template_ended_before_its_job_ran_nothing_and_says_so() {
    // The daemon reruns such a hook fresh: the outcome must say that
    // nothing of the bot ran (`nothing_ran`, which templates.rs reads).
    let j = attack_job("return 1");
    let mut t = Template::start(&j, 60_000, Layer::OsOnly);
    let until = Instant::now() + Duration::from_secs(10);
    let (template, _) = run_until_the_next_child_waits(&mut t, &j, until);
    // The runner stopped, so that the job is already there when it sees the
    // template's end (else it ends at once: the next test).
    let runner = Pid::from_raw(t.child.id() as i32);
    nix::sys::signal::kill(runner, nix::sys::signal::Signal::SIGSTOP).expect("stop the runner");
    nix::sys::signal::kill(Pid::from_raw(template), nix::sys::signal::Signal::SIGKILL)
        .expect("kill the template");
    // With it the sandbox's namespace ends, the waiting child too; once
    // neither is left, their ends of the control socket are closed.
    while !interpreters(t.child.id()).is_empty() {
        assert!(Instant::now() < until, "the template outlived SIGKILL");
        std::thread::sleep(Duration::from_millis(5));
    }
    t.send(&j);
    nix::sys::signal::kill(runner, nix::sys::signal::Signal::SIGCONT).expect("continue the runner");
    match error(&t.outcome()) {
        e @ HookError::Internal { .. } => assert!(e.is_nothing_ran(), "{e:?}"),
        e => panic!("{e:?}"),
    }
    // The runner ends with its template, and takes every process with it.
    let (code, err) = t.wait();
    assert_eq!(code, 0, "{err}");
}

/// The CPU time (user + system, in clock ticks) `pid` has used; 0 once
/// it is gone.
fn cpu_ticks(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let fields: Vec<&str> = s[s.rfind(')')? + 2..].split(' ').collect();
            // utime and stime: fields 14 and 15 of stat, 12 and 13 here.
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

#[test]
fn a_job_written_before_the_runner_saw_its_template_die_is_answered() {
    // The daemon writes its next job as soon as it has read an outcome,
    // and the runner may learn only after that that its template is gone
    // (here: killed during a hook, while the runner was held). That job
    // must still be answered -- "nothing ran", which the daemon reruns --
    // not met by a runner that ends without a word.
    let mut spin = attack_job("while True: pass");
    spin.limits.wall_ms = 60_000;
    let mut ok = attack_job("return 1");
    ok.limits = spin.limits.clone();
    let mut t = Template::start(&spin, 60_000, Layer::OsOnly);
    assert_eq!(value(&t.run(&ok)), json!(1));
    t.send(&spin);
    // The child spins only once it has its job, so the runner is then
    // inside that hook (it waits for the child's result).
    let until = Instant::now() + Duration::from_secs(10);
    let (template, child) = loop {
        let found = interpreters(t.child.id());
        if let [template, child] = found[..]
            && cpu_ticks(child.0) >= 20
        {
            break (template.0, child.0);
        }
        assert!(Instant::now() < until, "the hook never ran: {found:?}");
        std::thread::sleep(Duration::from_millis(5));
    };
    let runner = Pid::from_raw(t.child.id() as i32);
    nix::sys::signal::kill(runner, nix::sys::signal::Signal::SIGSTOP).expect("stop the runner");
    nix::sys::signal::kill(Pid::from_raw(template), nix::sys::signal::Signal::SIGKILL)
        .expect("kill the template");
    // The hook dies with its template's namespace.
    while !interpreters(t.child.id()).is_empty() || !matches!(state(child), '?' | 'Z') {
        assert!(
            Instant::now() < until,
            "the template or its hook outlived SIGKILL"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // The next job is written while the runner still thinks the template
    // alive (and then the runner goes on).
    t.send(&ok);
    nix::sys::signal::kill(runner, nix::sys::signal::Signal::SIGCONT).expect("continue the runner");
    // The spinning hook's own outcome: its process was killed under it,
    // after it ran, so it must not be rerun.
    assert!(!error(&t.outcome()).is_nothing_ran());
    match error(&t.outcome()) {
        e @ HookError::Internal { .. } => assert!(e.is_nothing_ran(), "{e:?}"),
        e => panic!("{e:?}"),
    }
    let (code, err) = t.wait();
    assert_eq!(code, 0, "{err}");
}

#[test]
fn a_waiting_child_killed_before_its_job_ran_nothing_and_says_so() {
    // A child waiting for its job can be killed from outside (the OOM
    // killer picks the largest process; an operator's `kill`): the template
    // reaps it and says so, and the next job must not be reported as the
    // bot's crash ("killed by SIGKILL") but as a hook in which nothing ran,
    // which the daemon reruns fresh.
    let j = attack_job("return 1");
    let mut t = Template::start(&j, 60_000, Layer::OsOnly);
    let until = Instant::now() + Duration::from_secs(10);
    let (template, child) = run_until_the_next_child_waits(&mut t, &j, until);
    nix::sys::signal::kill(Pid::from_raw(child), nix::sys::signal::Signal::SIGKILL)
        .expect("kill the waiting child");
    // Reaped by the template (which then reports it), the template alive.
    loop {
        let found = interpreters(t.child.id());
        if found.len() == 1 && found[0].0 == template {
            break;
        }
        assert!(
            Instant::now() < until,
            "the killed child was not reaped: {found:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    match error(&t.run(&j)) {
        e @ HookError::Internal { .. } => assert!(e.is_nothing_ran(), "{e:?}"),
        e => panic!("{e:?}"),
    }
    let (code, err) = t.wait();
    assert_eq!(code, 0, "{err}");
}

#[test]
fn a_forked_hooks_language_layer_is_bound_to_its_own_job() {
    // A child builds the language layer (and some facades) before its job
    // exists and binds the job's source, violation record and clock to it
    // when the job is read: a refused import the bot catches still fails
    // the hook, the clock is the job's, a traceback shows the bot's own
    // lines, the entropy is the job's; each the same as in a fresh
    // sandbox, hook after hook.
    let seed: Entropy = "7e".repeat(32).parse().unwrap();
    let bots = [
        "class Bot:\n    def __init__(self, ctx, params):\n        self.ctx = ctx\n    \
         def on_init(self):\n        try:\n            import socket\n        \
         except ImportError:\n            pass\n        self.ctx.post('t', 1)\n",
        "import datetime, time\nclass Bot:\n    def __init__(self, ctx, params):\n        \
         self.ctx = ctx\n    def on_init(self):\n        \
         self.ctx.post('t', [str(datetime.datetime.now()), time.time()])\n",
        "import traceback\nclass Bot:\n    def __init__(self, ctx, params):\n        \
         self.ctx = ctx\n    def on_init(self):\n        try:\n            \
         {}['missing']  # the line a traceback shows\n        except KeyError:\n            \
         self.ctx.post('t', traceback.format_exc())\n",
        // Facades a child makes before its job (`hx_runtime.PREPARABLE`),
        // next to ones it makes after the job's entropy and clock are in.
        "import re, hashlib, secrets, random, time\nclass Bot:\n    \
         def __init__(self, ctx, params):\n        self.ctx = ctx\n    \
         def on_init(self):\n        self.ctx.post('t', [secrets.token_hex(8), random.random(), \
         time.time(), hashlib.sha256(b'x').hexdigest()[:8], re.sub('a', 'b', 'aa')])\n",
    ];
    for (i, source) in bots.iter().enumerate() {
        let mut j = job(source);
        j.entropy = Some(Entropy::for_hook(&seed, 1));
        j.hash_seed = Some(seed.python_hash_seed());
        j.now = Some("2026-01-02T03:04:05.678Z".parse().unwrap());
        // With its compiled artifact, as the daemon sends it: after the
        // first hook the template holds the code, and its children make
        // the facades the code names before their job.
        let mut inspect = j.clone();
        inspect.hook = hook_protocol::Hook::Inspect;
        // (The first bot is refused at inspect: it goes without.)
        j.bot.compiled = match run_job(&inspect, Layer::Checked).outcome {
            HookOutcome::Ok {
                manifest: Some(m), ..
            } => Some(serde_json::from_value(m["compiled"].clone()).expect("compiled")),
            o => {
                assert_eq!(i, 0, "inspect: {o:?}");
                None
            }
        };
        let fresh = run_job(&j, Layer::Checked).outcome;
        let strip = |o: &HookOutcome| {
            let mut v = serde_json::to_value(o).unwrap();
            v.as_object_mut().unwrap().remove("timings");
            v
        };
        match (i, &fresh) {
            (0, HookOutcome::Error { error }) => {
                assert!(matches!(error, HookError::Policy { .. }), "{error:?}")
            }
            (1, HookOutcome::Ok { posts, .. }) => {
                assert_eq!(posts[0].body[0], json!("2026-01-02 03:04:05.678000"))
            }
            (2, HookOutcome::Ok { posts, .. }) => {
                let text = posts[0].body.as_str().unwrap();
                assert!(text.contains("the line a traceback shows"), "{text}")
            }
            (3, HookOutcome::Ok { posts, .. }) => {
                assert_eq!(posts[0].body[2], json!(1767323045.678), "the job's clock")
            }
            _ => panic!("bot {i}, fresh: {fresh:?}"),
        }
        let mut t = Template::start(&j, 60_000, Layer::Checked);
        for _ in 0..3 {
            assert_eq!(strip(&t.run(&j)), strip(&fresh), "bot {i}");
        }
        t.finish();
    }
}
