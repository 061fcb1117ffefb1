//! The operator's commands against a live daemon, and `/metrics`.

use crate::robustness::logs::oauth_flow;
use crate::robustness::{Opts, Server, channel, raw_call, tool_result};
use crate::util::*;
use mcp_multiplayer::transcript;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// Runs the CLI with `args` (and `--state-dir DIR`): (exit code, stdout, stderr).
fn cli(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = crate::util::daemon_cmd(dir)
        .args(args)
        .arg("--state-dir")
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every message of a channel, as its member `c` reads it.
async fn transcript_of(c: &mut Mcp, cid: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor = 0;
    loop {
        let v = c
            .ok(
                "sync_messages",
                json!({"channel_id": cid, "cursor": cursor, "limit": 500, "wait_ms": 0}),
            )
            .await;
        let msgs = v["messages"].as_array().unwrap().clone();
        if msgs.is_empty() {
            return all;
        }
        cursor = v["cursor"].as_i64().unwrap();
        all.extend(msgs);
    }
}

#[tokio::test]
async fn a_backup_taken_while_posts_flow_restores_to_a_sound_database_whose_chains_verify() {
    if on_postgres() {
        // SQLite's backup; PostgreSQL is backed up with its own tools.
        return;
    }
    let dir = TempDir::new("backup");
    let alice_t = create_token(dir.path(), "alice");
    let bob_t = create_token(dir.path(), "bob");
    let d = Server::start(
        dir.path(),
        &Opts {
            config: "[quotas]\nposts_per_second = 10000.0\npost_burst = 10000\n".into(),
            ..Opts::default()
        },
    );
    let mut alice = Mcp::connect(&d.url(), Some(&alice_t)).await;
    let mut bob = Mcp::connect(&d.url(), Some(&bob_t)).await;
    let mut channels = Vec::new();
    for _ in 0..2 {
        let (cid, invites) = channel(&mut alice, &["alice", "bob"]).await;
        bob.ok(
            "join_channel",
            json!({"invite_code": invites[0]["invite_code"]}),
        )
        .await;
        channels.push(cid);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let posted = Arc::new(AtomicUsize::new(0));
    let http = reqwest::Client::new();
    let sessions = [alice.session.clone(), bob.session.clone()];
    let mut posters = Vec::new();
    for p in 0..4 {
        let (http, url, stop, posted) = (http.clone(), d.url(), stop.clone(), posted.clone());
        let (token, cid) = if p % 2 == 0 {
            (alice_t.clone(), channels[0].clone())
        } else {
            (bob_t.clone(), channels[1].clone())
        };
        let session = sessions[p % 2].clone();
        posters.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let mut args = json!({"channel_id": cid, "body": {"n": i, "from": p}});
                if i % 3 == 0 {
                    args["to"] = json!([if p % 2 == 0 { "bob" } else { "alice" }]);
                }
                let (s, v) = raw_call(
                    &http,
                    &url,
                    &token,
                    session.as_deref(),
                    "post_message",
                    args,
                )
                .await
                .unwrap();
                assert!(s == 200 && !tool_result(&v).unwrap().0, "{v}");
                posted.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    assert!(
        crate::robustness::eventually(Duration::from_secs(30), || async {
            posted.load(Ordering::Relaxed) >= 200
        })
        .await
    );
    let copy = dir.path().join("backup.db");
    let dir2 = dir.path().to_path_buf();
    let copy2 = copy.clone();
    let (code, out, err) =
        tokio::task::spawn_blocking(move || cli(&dir2, &["backup", copy2.to_str().unwrap()]))
            .await
            .unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("integrity_check: ok"), "{out}");
    let during = posted.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for p in posters {
        p.await.unwrap();
    }
    assert!(posted.load(Ordering::Relaxed) > during || during >= 200);

    // Never over an existing file.
    let (code, _, err) = cli(dir.path(), &["backup", copy.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("exists"), "{err}");

    // Restore into a fresh state directory and read it as its members.
    let restored = TempDir::new("restored");
    std::fs::copy(&copy, restored.path().join("mcp-multiplayer.db")).unwrap();
    {
        let c = rusqlite::Connection::open(restored.path().join("mcp-multiplayer.db")).unwrap();
        let ok: String = c
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok");
    }
    let r = Server::start(restored.path(), &Opts::default());
    let mut alice = Mcp::connect(&r.url(), Some(&alice_t)).await;
    let mut total = 0;
    for cid in &channels {
        let msgs = transcript_of(&mut alice, cid).await;
        total += msgs.len();
        let head = transcript::verify_chain(cid, &msgs)
            .unwrap_or_else(|b| panic!("channel {cid}: chain breaks at {}: {}", b.seq, b.reason));
        let info = alice
            .ok("get_channel_info", json!({"channel_id": cid}))
            .await;
        assert_eq!(info["head_hash"].as_str(), Some(head.as_str()));
    }
    assert!(total > 200, "the backup holds {total} messages");
}

#[test]
fn config_check_finds_problems_and_config_show_prints_no_secret() {
    let dir = TempDir::new("config");
    let pass = dir.path().join("passphrase");
    std::fs::write(&pass, "a very secret passphrase\n").unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[auth]\napproval = \"passphrase\"\npassphrase_file = {:?}\n[quotas]\nposts_per_second = 2.5\n",
            pass.display().to_string()
        ),
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    let (code, out, err) = cli(dir.path(), &["config", "show", "--config", c]);
    assert_eq!(code, 0, "{err}");
    let shown: toml::Table = toml::from_str(&out).unwrap();
    assert_eq!(shown["quotas"]["posts_per_second"].as_float(), Some(2.5));
    assert_eq!(shown["auth"]["approval"].as_str(), Some("passphrase"));
    assert!(shown["http"]["header_timeout_secs"].is_integer());
    assert!(!out.contains("very secret"), "{out}");

    let (code, out, _) = cli(dir.path(), &["config", "check", "--config", c]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("passphrase file is readable"), "{out}");

    // A missing runner and an unreadable passphrase are problems.
    std::fs::write(
        &cfg,
        "[auth]\napproval = \"passphrase\"\npassphrase_file = \"/nonexistent/pass\"\n[bots]\nrunner = \"/nonexistent/sandbox-runner\"\n",
    )
    .unwrap();
    let (code, out, _) = cli(dir.path(), &["config", "check", "--config", c]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(out.matches("PROBLEM").count(), 2, "{out}");
    assert!(out.contains("/nonexistent/sandbox-runner"), "{out}");

    // A bad value is refused with the key.
    std::fs::write(&cfg, "[http]\nidle_timeout_secs = 0\n").unwrap();
    let (code, _, err) = cli(dir.path(), &["config", "check", "--config", c]);
    assert_eq!(code, 1);
    assert!(err.contains("http.idle_timeout_secs"), "{err}");
}

#[tokio::test]
async fn principals_clients_and_grants_are_listed_and_revoked_on_a_live_daemon() {
    let dir = TempDir::new("admin-lists");
    let alice_t = create_token(dir.path(), "alice");
    let d = Server::start(dir.path(), &Opts::default());
    let mut alice = Mcp::connect(&d.url(), Some(&alice_t)).await;
    channel(&mut alice, &["alice", "bob"]).await;
    let mut secrets = Vec::new();
    let (client_id, oauth_token) = oauth_flow(&d.base, &mut secrets).await;
    let mut bob = Mcp::connect(&d.url(), Some(&oauth_token)).await;
    bob.ok("list_channels", json!({})).await;

    let (code, out, _) = cli(dir.path(), &["principal", "list"]);
    assert_eq!(code, 0);
    assert!(out.contains("alice") && out.contains("oauth"), "{out}");
    for s in secrets.iter().chain([&alice_t]) {
        assert!(!out.contains(s.as_str()));
    }
    let (code, out, _) = cli(dir.path(), &["client", "list"]);
    assert_eq!(code, 0);
    assert!(
        out.contains(&client_id) && out.contains("live grants: 1"),
        "{out}"
    );
    let (code, out, _) = cli(dir.path(), &["grant", "list"]);
    assert_eq!(code, 0);
    let family = out.split_whitespace().next().unwrap().to_string();
    assert!(out.contains("; live; live access tokens:"), "{out}");

    // Revoking the grant stops its token at once.
    let (code, out, _) = cli(dir.path(), &["grant", "revoke", &family]);
    assert_eq!(code, 0, "{out}");
    let r = bob.rpc("tools/list", json!({})).await;
    assert!(
        r.is_err_and(|e| e.contains("401")),
        "a revoked grant's token still works"
    );
    let (code, out, _) = cli(dir.path(), &["grant", "revoke", &family]);
    assert_eq!(code, 0);
    assert!(out.contains("already revoked"), "{out}");

    // A second sign-in of the same client, then the client revoked whole.
    let (_, token2) = oauth_flow(&d.base, &mut secrets).await;
    let mut again = Mcp::connect(&d.url(), Some(&token2)).await;
    again.ok("list_channels", json!({})).await;
    let (code, out, _) = cli(dir.path(), &["client", "revoke", &client_id]);
    assert_eq!(code, 0, "{out}");
    // oauth_flow registers a client each time: this one had one live grant.
    let (_, out2, _) = cli(dir.path(), &["client", "list"]);
    assert!(out2.contains(&client_id), "the registration stays: {out2}");
    let (code, _, err) = cli(dir.path(), &["client", "revoke", "no-such-client"]);
    assert_eq!(code, 1);
    assert!(err.contains("client list"), "{err}");
    let (code, _, err) = cli(dir.path(), &["grant", "revoke", "no-such-grant"]);
    assert_eq!(code, 1);
    assert!(err.contains("grant list"), "{err}");
    alice.ok("list_channels", json!({})).await;
}

#[tokio::test]
async fn metrics_are_present_and_move() {
    let dir = TempDir::new("metrics");
    let token = create_token(dir.path(), "alice");
    let d = Server::start(dir.path(), &Opts::default());
    let text = reqwest::get(format!("{}/metrics", d.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for series in [
        "mcp_multiplayer_build_info{version=",
        "mcp_multiplayer_hooks_total{outcome=\"ok\"}",
        "mcp_multiplayer_rate_limited_total{limit=\"posts_per_second\"}",
        "mcp_multiplayer_db_commit_batch_size_bucket{le=\"1\"}",
        "mcp_multiplayer_db_commit_duration_seconds_count",
        "mcp_multiplayer_sync_waiting",
        "mcp_multiplayer_connections_open",
        "mcp_multiplayer_sessions_open",
    ] {
        assert!(text.contains(series), "{series} missing:\n{text}");
    }
    let commits = d
        .metric("mcp_multiplayer_db_commit_duration_seconds_count")
        .await;
    let mut c = Mcp::connect(&d.url(), Some(&token)).await;
    let created = c
        .ok(
            "create_channel",
            json!({"name": "m", "slots": ["invite:alice", "bot:echo"], "join_as": "alice", "bot_preset": "echo"}),
        )
        .await;
    let cid = created["channel_id"].as_str().unwrap().to_string();
    c.ok("post_message", json!({"channel_id": cid, "body": "hello"}))
        .await;
    let (err, _) = c
        .call(
            "post_message",
            json!({"channel_id": "ch_nope", "body": "x"}),
        )
        .await
        .unwrap();
    assert!(err);
    assert_eq!(
        d.metric("mcp_multiplayer_tool_calls_total{tool=\"post_message\",outcome=\"ok\"}")
            .await,
        1.0
    );
    assert_eq!(
        d.metric(
            "mcp_multiplayer_tool_calls_total{tool=\"post_message\",outcome=\"CHANNEL_NOT_FOUND\"}"
        )
        .await,
        1.0
    );
    assert!(
        d.metric("mcp_multiplayer_db_commit_duration_seconds_count")
            .await
            > commits
    );
    assert!(
        d.metric("mcp_multiplayer_http_requests_total{route=\"/mcp\",status=\"200\"}")
            .await
            >= 3.0
    );
    // A parked call shows in the gauge while it waits.
    let http = reqwest::Client::new();
    let parked = {
        let (http, url, t, cid, s) = (
            http.clone(),
            d.url(),
            token.clone(),
            cid.clone(),
            c.session.clone(),
        );
        tokio::spawn(async move {
            raw_call(
                &http,
                &url,
                &t,
                s.as_deref(),
                "sync_messages",
                json!({"channel_id": cid, "cursor": 1000, "wait_ms": 20000}),
            )
            .await
        })
    };
    assert!(
        crate::robustness::eventually(Duration::from_secs(10), || async {
            d.metric("mcp_multiplayer_sync_waiting").await == 1.0
        })
        .await
    );
    c.ok("post_message", json!({"channel_id": cid, "body": "wake"}))
        .await;
    parked.await.unwrap().unwrap();
    // The echo bot ran its hooks (init, the posts): counted with durations.
    assert!(
        crate::robustness::eventually(Duration::from_secs(20), || async {
            d.metric("mcp_multiplayer_hooks_total{outcome=\"ok\"}")
                .await
                >= 2.0
        })
        .await,
        "no hook counted"
    );
    assert!(
        d.metric("mcp_multiplayer_hook_duration_seconds_count{outcome=\"ok\"}")
            .await
            >= 2.0
    );
}
