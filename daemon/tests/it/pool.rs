//! Pre-warmed sandboxes as the daemon uses them: a seeded bot's hooks served
//! by sandboxes warmed for it, every hook in a process of its own, and no
//! pre-warmed process outliving the daemon.

use crate::util::*;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Posts what a bot can read of its interpreter: the hash seed (through
/// `hash`), the `random` module's generator and the address of a new
/// object (which address-space randomisation makes differ from process to
/// process).
const PROBE: &str = "import random\n\
class Probe:\n\
\x20   def __init__(self, ctx, params):\n\
\x20       self.ctx = ctx\n\
\x20   def on_message(self, msg):\n\
\x20       self.ctx.post('probe', {'hash': str(hash('probe')), 'random': str(random.getrandbits(64)), 'addr': str(id(object()))})\n";

/// The daemon's counter `series` from `/metrics`.
pub(crate) async fn counter(d: &Daemon, series: &str) -> u64 {
    let text = reqwest::get(format!("{}/metrics", d.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in {text}"))
}

async fn prewarmed_total(d: &Daemon) -> u64 {
    counter(d, "mcp_multiplayer_hooks_prewarmed_total").await
}

#[tokio::test]
async fn a_seeded_bots_hooks_run_pre_warmed_each_in_a_fresh_process() {
    let dir = TempDir::new("pool-fresh");
    // The pool itself: with fork templates on, a seeded bot's hooks would
    // run forked (tests/it/fork.rs). The bot gets a secret seed: every hook
    // carries entropy and the bot's hash seed.
    let (d, mut c, cid) = probe_daemon(&dir, false, PROBE).await;
    let before = prewarmed_total(&d).await;
    let mut cursor = 0;
    let mut seen: Vec<Value> = Vec::new();
    for i in 0..12 {
        let earlier: HashSet<u32> = children_of(d.child.id()).into_iter().collect();
        seen.extend(post_and_read_probes(&mut c, &cid, &format!("m{i}"), &mut cursor).await);
        // The hook's demand makes the pool warm a sandbox for this bot's
        // kind: wait (bounded) for it to appear, so that the next hook
        // finds it ready.
        let until = Instant::now() + Duration::from_secs(30);
        while !children_of(d.child.id())
            .into_iter()
            .any(|p| !earlier.contains(&p) && alive(p))
        {
            assert!(
                Instant::now() < until,
                "no sandbox was pre-warmed for the bot after hook {i}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    assert_eq!(seen.len(), 12);
    // Every hook after the first found its sandbox warm.
    let served = prewarmed_total(&d).await - before;
    assert!(served >= 11, "only {served} of 12 hooks ran pre-warmed");
    // One hash seed for the bot; what it draws is the hook's own, and no
    // process served two hooks.
    let hashes: HashSet<&Value> = seen.iter().map(|p| &p["hash"]).collect();
    assert_eq!(hashes.len(), 1, "{seen:?}");
    for key in ["random", "addr"] {
        let distinct: HashSet<&Value> = seen.iter().map(|p| &p[key]).collect();
        assert_eq!(distinct.len(), 12, "{key} repeats: {seen:?}");
    }
}

/// The parent of `pid`, from /proc (`pid (comm) state ppid ...`: comm may
/// hold spaces, so after the last ')').
pub(crate) fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Every pid in /proc.
pub(crate) fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// Children of `pid`, from /proc.
fn children_of(pid: u32) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|p| parent_of(*p) == Some(pid))
        .collect()
}

/// A process that exists and is not a zombie.
pub(crate) fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

#[test]
fn pre_warmed_sandboxes_die_with_the_daemon() {
    let dir = TempDir::new("pool-death");
    let mut d = Daemon::start(dir.path(), &[]);
    // The daemon warms its most common kind at start; wait (bounded) for the
    // runner to show up as its child.
    let until = Instant::now() + Duration::from_secs(30);
    let warm = loop {
        let kids = children_of(d.child.id());
        if !kids.is_empty() {
            break kids;
        }
        assert!(Instant::now() < until, "no pre-warmed sandbox appeared");
        std::thread::sleep(Duration::from_millis(20));
    };
    d.kill9();
    // PDEATHSIG ends each runner with the daemon, and the runner's own
    // takes its sandbox down with it.
    let until = Instant::now() + Duration::from_secs(10);
    while warm.iter().any(|p| alive(*p)) {
        assert!(
            Instant::now() < until,
            "pre-warmed sandboxes {warm:?} outlived the daemon"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Replies to each message it sees.
const ECHO: &str = "class Echo:\n\
\x20   def __init__(self, ctx, params):\n\
\x20       self.ctx = ctx\n\
\x20   def on_message(self, msg):\n\
\x20       self.ctx.post('echo', {'seq': msg.get('seq')})\n";

/// The tasks (threads) of each sandbox uid now, from /proc.
fn tasks_per_uid(uids: std::ops::Range<u32>) -> Vec<u64> {
    let mut count = vec![0; uids.len()];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if e.file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
            .is_none()
        {
            continue;
        }
        let Ok(status) = std::fs::read_to_string(e.path().join("status")) else {
            continue;
        };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        };
        if let (Some(uid), Some(threads)) = (field("Uid:"), field("Threads:"))
            && let Some(i) = u32::try_from(uid).ok().filter(|u| uids.contains(u))
        {
            count[(i - uids.start) as usize] += threads;
        }
    }
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn more_busy_seeded_bots_than_the_pool_holds_every_hook_runs() {
    const BOTS: usize = 20;
    const PER: usize = 6;
    let dir = TempDir::new("pool-busy");
    let token = create_token(dir.path(), "alice");
    let cfg = dir.path().join("busy.toml");
    std::fs::write(
        &cfg,
        "[quotas]\nposts_per_second = 1e9\npost_burst = 1000000000\nchannels_per_hour = 1000000000\nopen_channels = 1000000000\n",
    )
    .unwrap();
    let d = Daemon::start(dir.path(), &["--config", cfg.to_str().unwrap()]);
    // Each bot is a kind of its own on every sandbox uid it runs with; far
    // more of them than sandboxes may wait with one uid.
    let mut setup = Mcp::connect(&d.mcp_url(), Some(&token)).await;
    let mut cids = Vec::new();
    for i in 0..BOTS {
        let ch = setup
            .ok(
                "create_channel",
                json!({"name": format!("busy {i}"), "slots": ["me"], "bot_code": ECHO, "join_as": "me"}),
            )
            .await;
        cids.push(ch["channel_id"].as_str().unwrap().to_string());
    }
    // Watch the sandbox uids' task counts (what RLIMIT_NPROC counts) while
    // the bots are busy.
    let uids = 64200..64205;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watch = {
        let (stop, uids) = (stop.clone(), uids.clone());
        std::thread::spawn(move || {
            let mut most = vec![0; uids.len()];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for (m, n) in most.iter_mut().zip(tasks_per_uid(uids.clone())) {
                    *m = (*m).max(n);
                }
            }
            most
        })
    };
    let mut tasks = Vec::new();
    for round in 0..2 {
        for cid in &cids {
            let (url, token, cid) = (d.mcp_url(), token.clone(), cid.clone());
            tasks.push(tokio::spawn(async move {
                let mut c = Mcp::connect(&url, Some(&token)).await;
                let mut posted = Vec::new();
                for i in 0..PER {
                    let r = c
                        .ok(
                            "post_message",
                            json!({"channel_id": cid, "body": format!("r{round} m{i}")}),
                        )
                        .await;
                    posted.push(r["seq"].as_i64().unwrap());
                }
                // Every message gets its echo: wait for the last one, then
                // check them all (a failed hook posts none).
                let mut cursor = 0;
                let mut echoed = Vec::new();
                let until = Instant::now() + Duration::from_secs(120);
                while echoed.last() != posted.last() {
                    assert!(Instant::now() < until, "echoes {echoed:?} of {posted:?}");
                    let v = c
                        .ok(
                            "sync_messages",
                            json!({"channel_id": cid, "cursor": cursor, "wait_ms": 10000}),
                        )
                        .await;
                    cursor = v["cursor"].as_i64().unwrap();
                    echoed.extend(
                        v["messages"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .filter(|m| m["kind"] == "bot" && m["body"]["type"] == "echo")
                            .filter_map(|m| m["body"]["data"]["seq"].as_i64())
                            .filter(|s| posted.contains(s)),
                    );
                }
                assert_eq!(echoed, posted, "one echo per message, in order");
            }));
        }
        // The second round comes while the first one's sandboxes wait.
        for t in tasks.drain(..) {
            t.await.unwrap();
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let most = watch.join().unwrap();
    let metrics = reqwest::get(format!("{}/metrics", d.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let hooks: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("mcp_multiplayer_hooks_total{"))
        .collect();
    for l in &hooks {
        if !l.contains("outcome=\"ok\"") {
            assert!(l.ends_with(" 0"), "a hook failed: {hooks:?}");
        }
    }
    // No uid came near the hook's thread limit (16): beside its running
    // hook (or inspections), at most 4 sandboxes waited with it, and a few
    // more were being killed to make room.
    assert!(
        most.iter().all(|&n| n <= 12),
        "tasks per sandbox uid: {most:?}"
    );
    assert!(prewarmed_total(&d).await > 0, "no hook ran pre-warmed");
}

/// Posts the order in which a set display of 48 strings iterates.
fn set_display_bot() -> String {
    let words: Vec<String> = (0..48).map(|i| format!("'word{i:02}'")).collect();
    format!(
        "class Order:\n\
\x20   def __init__(self, ctx, params):\n\
\x20       self.ctx = ctx\n\
\x20   def on_message(self, msg):\n\
\x20       self.ctx.post('order', [w for w in {{{}}}])\n",
        words.join(", ")
    )
}

#[tokio::test]
async fn a_seeded_bots_hooks_iterate_set_constants_alike_compiled_or_not() {
    // The first hook of each bot compiles it; the daemon meanwhile inspects
    // it under the bot's hash seed, and later hooks run that bytecode. The
    // order of a set display is the bot's hash seed's, hook after hook.
    let dir = TempDir::new("pool-order");
    let token = create_token(dir.path(), "alice");
    let d = Daemon::start(dir.path(), &[]);
    let mut c = Mcp::connect(&d.mcp_url(), Some(&token)).await;
    let source = set_display_bot();
    let mut distinct_bots = HashSet::new();
    for b in 0..4 {
        let ch = c
            .ok(
                "create_channel",
                json!({"name": format!("order {b}"), "slots": ["me"], "bot_code": source, "join_as": "me"}),
            )
            .await;
        let cid = ch["channel_id"].as_str().unwrap().to_string();
        let mut cursor = 0;
        let mut orders: Vec<Value> = Vec::new();
        for i in 0..5 {
            c.ok(
                "post_message",
                json!({"channel_id": cid, "body": format!("m{i}")}),
            )
            .await;
            let until = Instant::now() + Duration::from_secs(60);
            let before = orders.len();
            while orders.len() == before {
                assert!(Instant::now() < until, "no order after m{i}");
                let v = c
                    .ok(
                        "sync_messages",
                        json!({"channel_id": cid, "cursor": cursor, "wait_ms": 10000}),
                    )
                    .await;
                cursor = v["cursor"].as_i64().unwrap();
                orders.extend(
                    v["messages"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter(|m| m["kind"] == "bot" && m["body"]["type"] == "order")
                        .map(|m| m["body"]["data"].clone()),
                );
            }
        }
        assert_eq!(orders.len(), 5);
        assert!(
            orders.iter().all(|o| *o == orders[0]),
            "bot {b}'s set display iterated differently: {orders:?}"
        );
        distinct_bots.insert(orders[0].to_string());
    }
    // Each bot has a hash seed of its own.
    assert!(distinct_bots.len() > 1, "{distinct_bots:?}");
}

/// Posts `body` in channel `cid` and reads on from `cursor` until the bot's
/// `probe` posts caused by it arrive; returns their data.
/// A daemon with `[bots] fork_templates` as given, and alice alone in a
/// channel whose bot is `bot_code`: the daemon, alice's client, the
/// channel's id.
pub(crate) async fn probe_daemon(
    dir: &TempDir,
    fork_templates: bool,
    bot_code: &str,
) -> (Daemon, Mcp, String) {
    let token = create_token(dir.path(), "alice");
    let cfg = dir.path().join("bots.toml");
    std::fs::write(&cfg, format!("[bots]\nfork_templates = {fork_templates}\n")).unwrap();
    let d = Daemon::start(dir.path(), &["--config", cfg.to_str().unwrap()]);
    let mut c = Mcp::connect(&d.mcp_url(), Some(&token)).await;
    let ch = c
        .ok(
            "create_channel",
            json!({"name": "probe", "slots": ["me"], "bot_code": bot_code, "join_as": "me"}),
        )
        .await;
    let cid = ch["channel_id"].as_str().unwrap().to_string();
    (d, c, cid)
}

pub(crate) async fn post_and_read_probes(
    c: &mut Mcp,
    cid: &str,
    body: &str,
    cursor: &mut i64,
) -> Vec<Value> {
    c.ok("post_message", json!({"channel_id": cid, "body": body}))
        .await;
    loop {
        let v = c
            .ok(
                "sync_messages",
                json!({"channel_id": cid, "cursor": *cursor, "wait_ms": 10000}),
            )
            .await;
        *cursor = v["cursor"].as_i64().unwrap();
        let probes: Vec<Value> = v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["kind"] == "bot" && m["body"]["type"] == "probe")
            .map(|m| m["body"]["data"].clone())
            .collect();
        if !probes.is_empty() {
            return probes;
        }
    }
}
