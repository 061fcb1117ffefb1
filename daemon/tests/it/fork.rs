//! Fork templates as the daemon uses them (`[bots] fork_templates = true`):
//! a seeded bot's hooks run in children of its template, each a process of
//! its own with its own randomness and the bot's hash seed, no template
//! outlives the daemon, and a template killed between hooks loses no hook:
//! its runner ends with it and another template takes over.

use crate::pool::{alive, all_pids, counter, parent_of, post_and_read_probes, probe_daemon};
use crate::util::*;
use serde_json::Value;
use std::collections::HashSet;
use std::time::{Duration, Instant};

const PROBE: &str = "import random\n\
class Probe:\n\
\x20   def __init__(self, ctx, params):\n\
\x20       self.ctx = ctx\n\
\x20   def on_message(self, msg):\n\
\x20       self.ctx.post('probe', {'hash': str(hash('probe')), 'random': str(random.getrandbits(64))})\n";

async fn forked_total(d: &Daemon) -> u64 {
    counter(d, "mcp_multiplayer_hooks_forked_total").await
}

/// Every process whose ancestry leads to `pid`, from /proc.
fn descendants_of(pid: u32) -> Vec<u32> {
    let parent: std::collections::HashMap<u32, u32> = all_pids()
        .into_iter()
        .filter_map(|p| Some((p, parent_of(p)?)))
        .collect();
    parent
        .keys()
        .copied()
        .filter(|p| {
            let mut at = *p;
            while let Some(pp) = parent.get(&at) {
                if *pp == pid {
                    return true;
                }
                at = *pp;
            }
            false
        })
        .collect()
}

#[tokio::test]
async fn a_seeded_bots_hooks_run_forked_each_with_its_own_randomness_and_none_outlives_the_daemon()
{
    let dir = TempDir::new("fork-daemon");
    let (mut d, mut c, cid) = probe_daemon(&dir, true, PROBE).await;
    let before = forked_total(&d).await;
    let mut cursor = 0;
    let mut seen: Vec<Value> = Vec::new();
    for i in 0..10 {
        seen.extend(post_and_read_probes(&mut c, &cid, &format!("m{i}"), &mut cursor).await);
    }
    assert_eq!(seen.len(), 10, "{seen:?}");
    // The first hook runs fresh while its template starts; the template
    // takes the later ones (each waits for it at most a moment).
    let forked = forked_total(&d).await - before;
    assert!(forked >= 7, "only {forked} of 10 hooks ran forked");
    // The bot's hash seed in every hook; `random` its own in each.
    let hashes: HashSet<&Value> = seen.iter().map(|p| &p["hash"]).collect();
    assert_eq!(hashes.len(), 1, "{seen:?}");
    let draws: HashSet<&Value> = seen.iter().map(|p| &p["random"]).collect();
    assert_eq!(draws.len(), 10, "{seen:?}");
    // The template is the daemon's (through its runner); killed with it.
    let pid = d.child.id();
    let procs = descendants_of(pid);
    assert!(!procs.is_empty(), "no template running");
    d.child.kill().unwrap();
    d.child.wait().unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<u32> = procs.iter().copied().filter(|p| alive(*p)).collect();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < until, "{left:?} outlived the daemon");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The command line of `pid`, its arguments joined by spaces.
fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

#[tokio::test]
async fn a_template_killed_between_hooks_loses_no_hook_and_is_replaced() {
    let dir = TempDir::new("fork-killed");
    let (d, mut c, cid) = probe_daemon(&dir, true, PROBE).await;
    let mut cursor = 0;
    let mut seen = 0;
    for i in 0..4 {
        seen += post_and_read_probes(&mut c, &cid, &format!("m{i}"), &mut cursor)
            .await
            .len();
    }
    // The template: the bot interpreter whose parent is not one (its
    // waiting child has the same command line); its runner, the daemon's
    // child above it (the namespace processes between them have the
    // runner's command line too).
    let procs = descendants_of(d.child.id());
    let template = procs
        .iter()
        .copied()
        .find(|p| {
            cmdline(*p).contains("harness.py --template")
                && !parent_of(*p).is_some_and(|pp| cmdline(pp).contains("harness.py"))
        })
        .expect("a running template");
    let mut runner = template;
    while parent_of(runner) != Some(d.child.id()) {
        runner = parent_of(runner).expect("the template's runner");
    }
    assert!(cmdline(runner).contains("sandbox-runner --template"));
    sigkill(template);
    // Its runner ends with it, without waiting for a job or its idle time.
    wait_gone(runner, "the template's runner outlived it");
    // Every later message gets its hook, and a new template takes them.
    let before = forked_total(&d).await;
    for i in 4..12 {
        seen += post_and_read_probes(&mut c, &cid, &format!("m{i}"), &mut cursor)
            .await
            .len();
    }
    assert_eq!(seen, 12, "one probe per message");
    let forked = forked_total(&d).await - before;
    assert!(forked >= 4, "only {forked} of the 8 later hooks ran forked");
}

fn sigkill(pid: u32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
}

/// Waits (10 s at most, else fails with `what`) until `pid` has ended.
fn wait_gone(pid: u32, what: &str) {
    let until = Instant::now() + Duration::from_secs(10);
    while alive(pid) {
        assert!(Instant::now() < until, "{what} ({pid})");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The state letter of `pid` (`R`, `S`, `Z`...), `?` once it is gone.
fn state(pid: u32) -> char {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s[s.rfind(')')? + 2..].chars().next())
        .unwrap_or('?')
}

/// The child a template under the daemon `daemon` forked for its next
/// job, once it waits for that job (an interpreter whose parent is one,
/// blocked: state S) and is not `not` (the child of the last job, which
/// may still be on its way out).
fn waiting_child(daemon: u32, not: u32) -> u32 {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let found = descendants_of(daemon).into_iter().find(|p| {
            *p != not
                && cmdline(*p).contains("harness.py --template")
                && parent_of(*p).is_some_and(|pp| cmdline(pp).contains("harness.py"))
                && state(*p) == 'S'
        });
        if let Some(child) = found {
            return child;
        }
        assert!(Instant::now() < until, "no child waiting for its job");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[tokio::test]
async fn a_hook_whose_forked_child_was_killed_before_its_job_runs_fresh() {
    // A template's child killed while it waits for its job (the OOM
    // killer, an operator): the runner answers that job with `nothing_ran`,
    // and the daemon runs the hook in a fresh sandbox instead. No hook is
    // lost, none is reported as the bot's failure.
    let dir = TempDir::new("fork-child-killed");
    let (d, mut c, cid) = probe_daemon(&dir, true, PROBE).await;
    let mut cursor = 0;
    let mut seen = Vec::new();
    for i in 0..3 {
        seen.extend(post_and_read_probes(&mut c, &cid, &format!("m{i}"), &mut cursor).await);
    }
    // The child waiting now runs the next hook; the one after it is killed
    // before its job.
    let ran_next = waiting_child(d.child.id(), 0);
    seen.extend(post_and_read_probes(&mut c, &cid, "m3", &mut cursor).await);
    let victim = waiting_child(d.child.id(), ran_next);
    sigkill(victim);
    wait_gone(victim, "the child outlived SIGKILL");
    let before = forked_total(&d).await;
    let probe = tokio::time::timeout(
        Duration::from_secs(30),
        post_and_read_probes(&mut c, &cid, "m4", &mut cursor),
    )
    .await
    .expect("the hook of m4 was lost");
    assert_eq!(
        forked_total(&d).await,
        before,
        "the hook of m4 ran forked, not fresh"
    );
    seen.extend(probe);
    // The later hooks run as before.
    for i in 5..8 {
        seen.extend(post_and_read_probes(&mut c, &cid, &format!("m{i}"), &mut cursor).await);
    }
    assert_eq!(seen.len(), 8, "one probe per message: {seen:?}");
    let hashes: HashSet<&Value> = seen.iter().map(|p| &p["hash"]).collect();
    assert_eq!(
        hashes.len(),
        1,
        "the bot's hash seed in every hook: {seen:?}"
    );
}
