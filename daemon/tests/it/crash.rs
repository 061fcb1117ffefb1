//! Crash safety under `kill -9`: what the store promises.
//!
//! Several clients, each its own principal with its own token, post
//! continuously into a few shared channels while the test SIGKILLs the daemon
//! at a random moment, restarts it on the same state directory, and checks
//! what the store promises (docs/architecture.md, "Durability"):
//!
//! - every post a client saw acknowledged (it got `seq` and `hash` back) is in
//!   the transcript at that `seq`, with that hash and body;
//! - `PRAGMA integrity_check` says `ok` (SQLite; with `MCPMP_TEST_POSTGRES`
//!   the same test runs against PostgreSQL);
//! - every channel's hash chain verifies ([`transcript::verify_chain`] over
//!   what `sync_messages` returns), and its head is the `head_hash` and
//!   `message_count` that `get_channel_info` reports.
//!
//! The crash moment is the only random wait: each round starts once the
//! daemon printed its "listening" line and goes on until at least
//! [`MIN_ACKS_PER_ROUND`] posts were acknowledged, then the kill comes after a
//! delay drawn from a seeded RNG. `CRASH_KILLS=N` runs more rounds (the
//! benchmark mode in BENCHMARKS.md); `CRASH_SEED=S` replays a seed that the
//! test printed.

use crate::util::*;
use mcp_multiplayer::transcript;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Posting clients, one principal each.
const CLIENTS: usize = 6;
/// Channels; every client holds a seat in each.
const CHANNELS: usize = 3;
/// Kills in a normal `cargo test` run (the issue asks for at least 20).
const DEFAULT_KILLS: usize = 20;
/// Acknowledged posts a round waits for before the kill can come.
const MIN_ACKS_PER_ROUND: usize = 10;
/// The kill comes 0..this many milliseconds after that.
const MAX_CRASH_DELAY_MS: u64 = 150;
/// Generous bound on any one wait, so a hung daemon fails the test instead
/// of hanging it.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// A post the daemon acknowledged.
#[derive(Debug, Clone)]
struct Acked {
    channel: usize,
    client: usize,
    seq: i64,
    hash: String,
    body: Value,
    to: Option<Vec<String>>,
}

fn label(client: usize) -> String {
    format!("c{client}")
}

fn env_num(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_posts_survive_kill_9() {
    let kills = env_num("CRASH_KILLS").map_or(DEFAULT_KILLS, |k| k as usize);
    let seed = env_num("CRASH_SEED").unwrap_or_else(rand::random);
    eprintln!("crash test: {kills} kills, CRASH_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);

    let dir = TempDir::new("crash");
    let tokens: Vec<String> = (0..CLIENTS)
        .map(|i| create_token(dir.path(), &label(i)))
        .collect();
    // The test measures durability, not quotas: lift the per-principal rate.
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        "[quotas]\nposts_per_second = 100000.0\npost_burst = 100000\n",
    )
    .unwrap();
    let args = ["--config", cfg.to_str().unwrap()];
    let mut daemon = Daemon::start(dir.path(), &args);
    let channels = set_up_channels(&daemon, &tokens).await;

    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let started = Instant::now();
    for round in 0..kills {
        let (count_tx, mut count_rx) = tokio::sync::watch::channel(0usize);
        let count_tx = Arc::new(count_tx);
        // Connect every client first, so that the kill can only interrupt
        // posts (a connect cut short is not what this test is about).
        let mut clients = Vec::with_capacity(CLIENTS);
        for token in &tokens {
            clients.push(Mcp::connect(&daemon.mcp_url(), Some(token)).await);
        }
        let mut tasks = Vec::with_capacity(CLIENTS);
        for (i, client) in clients.into_iter().enumerate() {
            let task_seed = seed ^ ((round as u64) << 32) ^ i as u64;
            tasks.push(tokio::spawn(post_until_killed(
                client,
                i,
                round,
                channels.clone(),
                acked.clone(),
                count_tx.clone(),
                task_seed,
            )));
        }
        tokio::time::timeout(
            STEP_TIMEOUT,
            count_rx.wait_for(|n| *n >= MIN_ACKS_PER_ROUND),
        )
        .await
        .unwrap_or_else(|_| {
            panic!(
                "round {round}: fewer than {MIN_ACKS_PER_ROUND} posts acknowledged in {STEP_TIMEOUT:?}\n{}",
                log_of(&daemon)
            )
        })
        .unwrap();
        // The crash moment: random, not a synchronisation.
        let delay = rng.random_range(0..=MAX_CRASH_DELAY_MS);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        daemon.kill9();
        for t in tasks {
            // Each task ends on its first failed request after the kill; a
            // panic inside (a refused post, a wrong answer) fails the test.
            tokio::time::timeout(STEP_TIMEOUT, t)
                .await
                .expect("a posting client did not notice the kill")
                .expect("posting client failed");
        }
        let log = std::fs::read_to_string(&daemon.stderr_log).unwrap_or_default();
        drop(daemon);
        daemon = Daemon::start(dir.path(), &args);
        let snapshot = acked.lock().unwrap().clone();
        verify(&daemon, &tokens[0], &channels, &snapshot)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "after kill {} (CRASH_SEED={seed}): {e}\n--- log of the killed daemon ---\n{log}",
                    round + 1
                )
            });
    }
    let total = acked.lock().unwrap().len();
    eprintln!(
        "crash test: {kills} kills, {total} acknowledged posts all present, chains and integrity ok, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(total >= kills * MIN_ACKS_PER_ROUND);
}

/// Client 0 creates the channels (taking seat `c0`); the others join each
/// with their invite.
async fn set_up_channels(daemon: &Daemon, tokens: &[String]) -> Vec<String> {
    let mut admin = Mcp::connect(&daemon.mcp_url(), Some(&tokens[0])).await;
    let slots: Vec<String> = (0..CLIENTS)
        .map(|i| format!("invite:{}", label(i)))
        .collect();
    let mut ids = Vec::new();
    for ch in 0..CHANNELS {
        let v = admin
            .ok(
                "create_channel",
                json!({"name": format!("crash-{ch}"), "slots": slots, "join_as": label(0)}),
            )
            .await;
        let cid = v["channel_id"].as_str().unwrap().to_string();
        for inv in v["invites"].as_array().unwrap() {
            let slot = inv["slot"].as_str().unwrap();
            let i: usize = slot.trim_start_matches('c').parse().unwrap();
            let mut c = Mcp::connect(&daemon.mcp_url(), Some(&tokens[i])).await;
            let j = c
                .ok("join_channel", json!({"invite_code": inv["invite_code"]}))
                .await;
            assert_eq!(j["slot"], slot);
        }
        ids.push(cid);
    }
    ids
}

/// Posts until a request fails (the daemon was killed). Every fifth post is
/// private to another client, so the chains hold redacted entries too.
async fn post_until_killed(
    mut mcp: Mcp,
    client: usize,
    round: usize,
    channels: Vec<String>,
    acked: Arc<Mutex<Vec<Acked>>>,
    count: Arc<tokio::sync::watch::Sender<usize>>,
    seed: u64,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    for n in 0u64.. {
        let channel = rng.random_range(0..channels.len());
        let body = json!({
            "client": client, "round": round, "n": n,
            "pad": "x".repeat(rng.random_range(0..400)),
        });
        let to = (n % 5 == 4).then(|| {
            let other = (client + rng.random_range(1..CLIENTS)) % CLIENTS;
            vec![label(other)]
        });
        let mut args = json!({"channel_id": channels[channel], "body": body});
        if let Some(to) = &to {
            args["to"] = json!(to);
        }
        let Ok((is_error, v)) = mcp.call("post_message", args).await else {
            return;
        };
        assert!(!is_error, "post refused: {v}");
        let seq = v["seq"].as_i64().expect("seq in the acknowledgement");
        let hash = v["hash"].as_str().expect("hash in the acknowledgement");
        acked.lock().unwrap().push(Acked {
            channel,
            client,
            seq,
            hash: hash.to_string(),
            body,
            to,
        });
        count.send_modify(|c| *c += 1);
    }
}

/// The checks of one restart. Returns what was wrong.
async fn verify(
    daemon: &Daemon,
    reader_token: &str,
    channels: &[String],
    acked: &[Acked],
) -> Result<(), String> {
    // SQLite's own check of the file; PostgreSQL checks its pages itself
    // (the chains below are what the daemon promises on both).
    if !on_postgres() {
        integrity_check(&daemon.state_dir.join("mcp-multiplayer.db"))?;
    }
    let mut reader = Mcp::connect(&daemon.mcp_url(), Some(reader_token)).await;
    let mut transcripts = Vec::new();
    for cid in channels {
        let msgs = read_all(&mut reader, cid).await?;
        let head = transcript::verify_chain(cid, &msgs)
            .map_err(|b| format!("channel {cid}: chain breaks at seq {}: {}", b.seq, b.reason))?;
        let info = reader
            .call("get_channel_info", json!({"channel_id": cid}))
            .await?
            .1;
        if info["head_hash"].as_str() != Some(head.as_str()) {
            return Err(format!(
                "channel {cid}: head_hash {} but the chain ends in {head}",
                info["head_hash"]
            ));
        }
        if info["message_count"].as_u64() != Some(msgs.len() as u64) {
            return Err(format!(
                "channel {cid}: message_count {} but {} messages",
                info["message_count"],
                msgs.len()
            ));
        }
        transcripts.push(msgs);
    }
    for a in acked {
        let msgs = &transcripts[a.channel];
        let Some(m) = usize::try_from(a.seq - 1).ok().and_then(|i| msgs.get(i)) else {
            return Err(format!(
                "acknowledged post lost: {a:?} (channel has {} messages)",
                msgs.len()
            ));
        };
        // The reader (c0) sees the body of public posts and of private ones
        // it sent or received. Other private posts reach it redacted, as
        // their salted `body_hash` only: the acknowledged hash, which chains
        // that `body_hash`, is what ties them to what was posted.
        let body_matches = match m.get("body") {
            Some(b) => *b == a.body,
            None => a.to.is_some() && m["redacted"] == json!(true),
        };
        let to_matches = match &a.to {
            None => m.get("to").is_none(),
            Some(to) => m["to"] == json!(to),
        };
        if m["hash"].as_str() != Some(a.hash.as_str())
            || m["sender"].as_str() != Some(label(a.client).as_str())
            || !body_matches
            || !to_matches
        {
            return Err(format!(
                "acknowledged post differs: acknowledged {a:?}, stored {m}"
            ));
        }
    }
    Ok(())
}

/// Every message of a channel, through `sync_messages` pages.
async fn read_all(reader: &mut Mcp, cid: &str) -> Result<Vec<Value>, String> {
    let mut all = Vec::new();
    let mut cursor = 0i64;
    loop {
        let (is_error, v) = reader
            .call(
                "sync_messages",
                json!({"channel_id": cid, "cursor": cursor, "limit": 500, "wait_ms": 0}),
            )
            .await?;
        if is_error {
            return Err(format!("sync_messages failed: {v}"));
        }
        let page = v["messages"].as_array().cloned().unwrap_or_default();
        if page.is_empty() {
            return Ok(all);
        }
        cursor = v["cursor"].as_i64().ok_or("no cursor")?;
        all.extend(page);
    }
}

/// `PRAGMA integrity_check` on a read-only connection of our own.
fn integrity_check(db: &Path) -> Result<(), String> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| format!("open {}: {e}", db.display()))?;
    let mut st = conn
        .prepare("PRAGMA integrity_check")
        .map_err(|e| e.to_string())?;
    let rows: Vec<String> = st
        .query_map([], |r| r.get(0))
        .and_then(|rows| rows.collect())
        .map_err(|e| e.to_string())?;
    if rows == ["ok"] {
        Ok(())
    } else {
        Err(format!("integrity_check: {rows:?}"))
    }
}

fn log_of(d: &Daemon) -> String {
    std::fs::read_to_string(&d.stderr_log).unwrap_or_default()
}
