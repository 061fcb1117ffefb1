//! Pre-warmed sandboxes as the daemon uses them: every hook in a process of
//! its own, and no pre-warmed process outliving the daemon.

use crate::util::*;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Posts what a bot can read of its interpreter's randomness: the hash seed
/// (through `hash`) and the `random` module's generator.
const PROBE: &str = "import random\n\
class Probe:\n\
\x20   def __init__(self, ctx, params):\n\
\x20       self.ctx = ctx\n\
\x20   def on_message(self, msg):\n\
\x20       self.ctx.post('probe', {'hash': str(hash('probe')), 'random': str(random.getrandbits(64))})\n";

#[tokio::test]
async fn every_hook_runs_in_a_fresh_process_pooled_or_not() {
    let dir = TempDir::new("pool-fresh");
    let token = create_token(dir.path(), "alice");
    let d = Daemon::start(dir.path(), &[]);
    let mut c = Mcp::connect(&d.mcp_url(), Some(&token)).await;
    let ch = c
        .ok(
            "create_channel",
            json!({"name": "probe", "slots": ["me"], "bot_code": PROBE, "join_as": "me"}),
        )
        .await;
    let cid = ch["channel_id"].as_str().unwrap().to_string();
    let mut cursor = 0;
    let mut seen: Vec<Value> = Vec::new();
    // One message at a time, each answered before the next: the pool has
    // refilled in between, so most hooks run pre-warmed.
    for i in 0..12 {
        c.ok(
            "post_message",
            json!({"channel_id": cid, "body": format!("m{i}")}),
        )
        .await;
        loop {
            let v = c
                .ok(
                    "sync_messages",
                    json!({"channel_id": cid, "cursor": cursor, "wait_ms": 10000}),
                )
                .await;
            cursor = v["cursor"].as_i64().unwrap();
            let probes: Vec<Value> = v["messages"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| m["kind"] == "bot" && m["body"]["type"] == "probe")
                .map(|m| m["body"]["data"].clone())
                .collect();
            if !probes.is_empty() {
                seen.extend(probes);
                break;
            }
        }
    }
    assert_eq!(seen.len(), 12);
    // A process that served two hooks would show the same hash seed twice.
    for key in ["hash", "random"] {
        let distinct: HashSet<&Value> = seen.iter().map(|p| &p[key]).collect();
        assert_eq!(distinct.len(), 12, "{key} repeats: {seen:?}");
    }
}

/// Children of `pid`, from /proc.
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}

fn alive(pid: u32) -> bool {
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
