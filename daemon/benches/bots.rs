//! Bot benchmark: post → bot-reply latency through MCP for EchoBot
//! and GuessBot, and hooks per second across 16 busy channels, checking that
//! no hook is lost or reordered, next to the start of a bare interpreter
//! (`python -I -S -B -c pass`, the same one bots run on) measured in the same
//! run. Prints a table and the ratios to the bare start.
//!
//! `cargo build --release --workspace && cargo bench -p mcp-multiplayer --bench bots`
//! (the runner binary must sit next to the release daemon). The daemon runs
//! with its default `[bots]` settings, so hooks go through the same pool of
//! pre-warmed sandboxes as in production.
//!
//! `BENCH_SAMPLES` sets the latency samples per bot (default 200).
//! `BENCH_GAP_MS` pauses that long before each latency sample (default 0:
//! each post follows the previous reply at once, so the sandbox warmed for
//! the next hook may still be warming), as players who think between moves.
//! `BENCH_DAEMON` benches another daemon binary (with its `sandbox-runner`
//! beside it), `BENCH_BOTS_DIR` its bots and harness, and `BENCH_QUOTAS=0`
//! leaves out the `[quotas]` section for a daemon that predates it.
//! `BENCH_FORK_TEMPLATES=1` (or `0`) sets `[bots] fork_templates` and
//! `BENCH_PARALLEL_HOOKS=N` sets `[bots] max_parallel_hooks` (unset: the
//! daemon's defaults). `BENCH_PYTHON` names another interpreter (a real
//! binary the sandbox uid can read), used for the bots and the bare start.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/it/util.rs"]
mod util;

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use util::{Daemon, Mcp, TempDir, create_token};

/// Quotas lifted: a benchmark measures capacity, not the per-principal limits.
const UNTHROTTLED: &str = "[quotas]\nposts_per_second = 1e9\npost_burst = 1000000000\nchannels_per_hour = 1000000000\nopen_channels = 1000000000\nmessages_per_channel = 1000000000000\nbytes_per_channel = 1000000000000000\nbytes_per_principal_per_day = 1000000000000000\n";

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn bot_posts(msgs: &[Value], type_: &str) -> Vec<Value> {
    msgs.iter()
        .filter(|m| m["kind"] == "bot" && m["body"]["type"] == type_)
        .cloned()
        .collect()
}

/// Syncs until `pred` holds on the new messages; returns them and the cursor.
async fn follow(
    c: &mut Mcp,
    cid: &str,
    mut cursor: i64,
    pred: impl Fn(&[Value]) -> bool,
) -> (Vec<Value>, i64) {
    let mut got = Vec::new();
    loop {
        let v = c
            .ok(
                "sync_messages",
                json!({"channel_id": cid, "cursor": cursor, "wait_ms": 10000}),
            )
            .await;
        got.extend(v["messages"].as_array().unwrap().iter().cloned());
        cursor = v["cursor"].as_i64().unwrap();
        if pred(&got) {
            return (got, cursor);
        }
    }
}

async fn echo_latency(d: &Daemon, token: &str, samples: usize) -> Vec<Duration> {
    let mut c = Mcp::connect(&d.mcp_url(), Some(token)).await;
    let ch = c
        .ok(
            "create_channel",
            json!({"name": "echo", "slots": ["me"], "bot_preset": "echo", "join_as": "me"}),
        )
        .await;
    let cid = ch["channel_id"].as_str().unwrap().to_string();
    let (_, mut cursor) = follow(&mut c, &cid, 0, |m| !m.is_empty()).await;
    let mut out = Vec::new();
    for i in 0..samples + 5 {
        think().await;
        let t0 = Instant::now();
        c.ok(
            "post_message",
            json!({"channel_id": cid, "body": format!("ping {i}")}),
        )
        .await;
        let (_, cur) = follow(&mut c, &cid, cursor, |m| !bot_posts(m, "echo").is_empty()).await;
        cursor = cur;
        if i >= 5 {
            out.push(t0.elapsed());
        }
    }
    out
}

async fn guess_latency(d: &Daemon, ta: &str, tb: &str, samples: usize) -> Vec<Duration> {
    let mut a = Mcp::connect(&d.mcp_url(), Some(ta)).await;
    let mut b = Mcp::connect(&d.mcp_url(), Some(tb)).await;
    let ch = a
        .ok(
            "create_channel",
            json!({"name": "guess", "slots": ["alice", "bob"], "bot_preset": "guess", "join_as": "alice",
                   "bot_params": {"min": 1, "max": 1000000000, "max_rounds": 100000}}),
        )
        .await;
    let cid = ch["channel_id"].as_str().unwrap().to_string();
    let invite = ch["invites"][0]["invite_code"]
        .as_str()
        .unwrap()
        .to_string();
    b.ok("join_channel", json!({"invite_code": invite})).await;
    let (msgs, mut cursor) = follow(&mut a, &cid, 0, |m| !bot_posts(m, "turn").is_empty()).await;
    let mut turn = bot_posts(&msgs, "turn").last().unwrap()["body"]["data"]["player"]
        .as_str()
        .unwrap()
        .to_string();
    let mut out = Vec::new();
    // Guess 1, 2, 3, ...: the target (up to 10^9) is practically never hit,
    // so the game goes on for every sample.
    for i in 0..samples + 5 {
        think().await;
        let t0 = Instant::now();
        let who = if turn == "alice" { &mut a } else { &mut b };
        who.ok(
            "post_message",
            json!({"channel_id": cid, "body": {"guess": i + 1}}),
        )
        .await;
        let (msgs, cur) = follow(&mut a, &cid, cursor, |m| !bot_posts(m, "hint").is_empty()).await;
        let elapsed = t0.elapsed();
        let (more, cur) = if bot_posts(&msgs, "turn").is_empty() {
            follow(&mut a, &cid, cur, |m| !bot_posts(m, "turn").is_empty()).await
        } else {
            (msgs, cur)
        };
        cursor = cur;
        turn = bot_posts(&more, "turn").last().unwrap()["body"]["data"]["player"]
            .as_str()
            .unwrap()
            .to_string();
        if i >= 5 {
            out.push(elapsed);
        }
    }
    out
}

/// 16 channels, each sent `per` messages at once; waits for every echo and
/// checks order. Before the clock starts the channels get warm-up messages,
/// one per channel per round, until a whole round ran in the bots' fork
/// templates (at most 10 rounds): the figure is the steady state of busy
/// channels, not their first second, when 16 templates start at once.
/// Returns (hooks, elapsed).
async fn busy_channels(d: &Daemon, token: &str, channels: usize, per: usize) -> (usize, Duration) {
    let mut setup = Mcp::connect(&d.mcp_url(), Some(token)).await;
    let mut cids = Vec::new();
    for i in 0..channels {
        let ch = setup
            .ok("create_channel", json!({"name": format!("busy {i}"), "slots": ["me"], "bot_preset": "echo", "join_as": "me"}))
            .await;
        cids.push(ch["channel_id"].as_str().unwrap().to_string());
    }
    let mut cursors = vec![0i64; channels];
    for _ in 0..10 {
        let before = hook_stats(d).await.forked;
        for cid in &cids {
            setup
                .ok(
                    "post_message",
                    json!({"channel_id": cid, "body": "warm-up"}),
                )
                .await;
        }
        for (cid, cursor) in cids.iter().zip(cursors.iter_mut()) {
            let (_, c) = follow(&mut setup, cid, *cursor, |m| {
                !bot_posts(m, "echo").is_empty()
            })
            .await;
            *cursor = c;
        }
        if hook_stats(d).await.forked - before == channels as u64 {
            break;
        }
    }
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for (cid, cursor) in cids.into_iter().zip(cursors) {
        let url = d.mcp_url();
        let token = token.to_string();
        tasks.push(tokio::spawn(async move {
            let mut c = Mcp::connect(&url, Some(&token)).await;
            let mut posted = Vec::new();
            for i in 0..per {
                let r = c
                    .ok(
                        "post_message",
                        json!({"channel_id": cid, "body": format!("m{i}")}),
                    )
                    .await;
                posted.push(r["seq"].as_i64().unwrap());
            }
            let (msgs, _) =
                follow(&mut c, &cid, cursor, |m| bot_posts(m, "echo").len() >= per).await;
            let echoed: Vec<i64> = bot_posts(&msgs, "echo")
                .iter()
                .map(|m| m["body"]["data"]["seq"].as_i64().unwrap())
                .collect();
            assert_eq!(echoed, posted, "every hook ran once, in message order");
            per
        }));
    }
    let mut hooks = 0;
    for t in tasks {
        hooks += t.await.unwrap();
    }
    (hooks, t0.elapsed())
}

/// The daemon's hook counters (from `/metrics`): hooks run, their summed
/// wall time in the runner, hooks run pre-warmed.
struct HookStats {
    hooks: u64,
    secs: f64,
    prewarmed: u64,
    forked: u64,
    posts: u64,
    post_secs: f64,
}

impl HookStats {
    fn since(&self, before: &HookStats) -> HookStats {
        HookStats {
            hooks: self.hooks - before.hooks,
            secs: self.secs - before.secs,
            prewarmed: self.prewarmed - before.prewarmed,
            forked: self.forked - before.forked,
            posts: self.posts - before.posts,
            post_secs: self.post_secs - before.post_secs,
        }
    }
}

async fn hook_stats(d: &Daemon) -> HookStats {
    let text = reqwest::get(format!("{}/metrics", d.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let sum = |prefix: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    HookStats {
        hooks: sum("mcp_multiplayer_hook_duration_seconds_count") as u64,
        secs: sum("mcp_multiplayer_hook_duration_seconds_sum"),
        prewarmed: sum("mcp_multiplayer_hooks_prewarmed_total") as u64,
        forked: sum("mcp_multiplayer_hooks_forked_total") as u64,
        posts: sum("mcp_multiplayer_tool_call_duration_seconds_count{tool=\"post_message\"}")
            as u64,
        post_secs: sum("mcp_multiplayer_tool_call_duration_seconds_sum{tool=\"post_message\"}"),
    }
}

/// The pause before each latency sample (`BENCH_GAP_MS`).
async fn think() {
    let ms = std::env::var("BENCH_GAP_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

/// The interpreter bots run on: `BENCH_PYTHON`, else the daemon's default.
fn python() -> String {
    std::env::var("BENCH_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into())
}

/// Wall time of `python -I -S -B -c pass`, spawned and waited for.
fn bare_starts(n: usize) -> Vec<Duration> {
    let python = python();
    (0..n)
        .map(|_| {
            let t0 = Instant::now();
            let st = std::process::Command::new(&python)
                .args(["-I", "-S", "-B", "-c", "pass"])
                .env_clear()
                .status()
                .unwrap();
            assert!(st.success());
            t0.elapsed()
        })
        .collect()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let samples: usize = std::env::var("BENCH_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let runner = util::daemon_bin().with_file_name("sandbox-runner");
    assert!(
        runner.exists(),
        "{} is missing: run `cargo build --release --workspace` before this bench",
        runner.display()
    );
    let dir = TempDir::new("bench-bots");
    let ta = create_token(dir.path(), "alice");
    let tb = create_token(dir.path(), "bob");
    // The bench measures capacity: per-principal quotas out of the way.
    let cfg = dir.path().join("bench.toml");
    let mut toml = String::new();
    if std::env::var("BENCH_QUOTAS").as_deref() != Ok("0") {
        toml.push_str(UNTHROTTLED);
    }
    let mut bots = String::new();
    if let Ok(bots_dir) = std::env::var("BENCH_BOTS_DIR") {
        bots.push_str(&format!("bots_dir = {bots_dir:?}\n"));
    }
    match std::env::var("BENCH_FORK_TEMPLATES").as_deref() {
        Ok("1") => bots.push_str("fork_templates = true\n"),
        Ok("0") => bots.push_str("fork_templates = false\n"),
        _ => {}
    }
    if std::env::var("BENCH_PYTHON").is_ok() {
        bots.push_str(&format!("python = {:?}\n", python()));
    }
    if let Ok(n) = std::env::var("BENCH_PARALLEL_HOOKS") {
        let n: usize = n.parse().expect("BENCH_PARALLEL_HOOKS is a number");
        bots.push_str(&format!("max_parallel_hooks = {n}\n"));
    }
    if !bots.is_empty() {
        toml.push_str(&format!("[bots]\n{bots}"));
    }
    std::fs::write(&cfg, toml).unwrap();
    let d = Daemon::start(dir.path(), &["--config", cfg.to_str().unwrap()]);
    println!(
        "mcp-multiplayer bot benchmark ({} cores; daemon {}; bots on {})",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        util::daemon_bin().display(),
        python()
    );
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!("load average before the run: {}", load.trim());
    }
    // The bare start, half before and half after the bots, so that a change
    // of load during the run weighs on both sides alike.
    let mut bare = bare_starts(samples / 2 + 1);
    println!("| measurement | n | p50 | p99 | max |");
    println!("|---|---|---|---|---|");
    let mut rows = Vec::new();
    let mut runs = Vec::new();
    let s0 = hook_stats(&d).await;
    let echo = echo_latency(&d, &ta, samples).await;
    let s1 = hook_stats(&d).await;
    let guess = guess_latency(&d, &ta, &tb, samples).await;
    let s2 = hook_stats(&d).await;
    for (name, mut lat) in [
        ("EchoBot post → reply", echo),
        ("GuessBot guess → hint", guess),
    ] {
        lat.sort();
        rows.push((name, lat));
    }
    runs.push(("EchoBot", s1.since(&s0)));
    runs.push(("GuessBot", s2.since(&s1)));
    let (hooks, took) = busy_channels(&d, &ta, 16, 50).await;
    runs.push(("16 busy channels", hook_stats(&d).await.since(&s2)));
    bare.extend(bare_starts(samples / 2 + 1));
    bare.sort();
    rows.push(("bare `python -I -S -B -c pass` start", bare));
    for (name, lat) in &rows {
        println!(
            "| {name} | {} | {:.1} ms | {:.1} ms | {:.1} ms |",
            lat.len(),
            pct(lat, 0.5),
            pct(lat, 0.99),
            pct(lat, 1.0)
        );
    }
    let hooks_per_s = hooks as f64 / took.as_secs_f64();
    println!();
    println!(
        "16 busy EchoBot channels (templates warm): {hooks} hooks in {:.2} s = {hooks_per_s:.0} hooks/s, none lost or reordered",
        took.as_secs_f64(),
    );
    let bare_ms = pct(&rows[2].1, 0.5);
    println!(
        "against the bare start ({bare_ms:.1} ms): EchoBot p50 {:.2}× (target < 0.7), GuessBot p50 {:.2}× (target < 1.0), hooks/s {:.2} bare starts' worth (target ≥ 3)",
        pct(&rows[0].1, 0.5) / bare_ms,
        pct(&rows[1].1, 0.5) / bare_ms,
        hooks_per_s * bare_ms / 1000.0
    );
    println!();
    for (name, s) in runs {
        println!(
            "{name}: {} hooks, mean {:.1} ms in the runner as the daemon times it, {} pre-warmed, {} forked; post_message mean {:.1} ms",
            s.hooks,
            s.secs * 1000.0 / s.hooks.max(1) as f64,
            s.prewarmed,
            s.forked,
            s.post_secs * 1000.0 / s.posts.max(1) as f64
        );
    }
    println!(
        "daemon RSS after the run: {} MiB",
        rss_kib(d.child.id()) / 1024
    );
}
