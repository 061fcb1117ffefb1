//! Memory stays bounded: parallel large reads, and idle MCP sessions.

use super::*;
use std::time::Instant;

const BIG: usize = 60 * 1024;

#[tokio::test]
#[ignore = "builds a 30 MB transcript and 10,000 channels, then measures peak RSS: tests/steps/70-robustness.sh"]
async fn rss_stays_under_512_mib_during_16_parallel_large_syncs_and_20_parallel_lists() {
    let dir = TempDir::new("rss");
    let token = create_token(dir.path(), "alice");
    let other = create_token(dir.path(), "bob");
    let d = Server::start(dir.path(), &Opts {
        config: "[quotas]\nposts_per_second = 100000.0\npost_burst = 100000\nchannels_per_hour = 100000\nopen_channels = 100000\nbytes_per_principal_per_day = 10000000000\n".into(),
        ..Opts::default()
    });
    let mut c = Mcp::connect(&d.url(), Some(&token)).await;
    let (cid, _) = channel(&mut c, &["alice"]).await;
    let body = "z".repeat(BIG);
    for _ in 0..500 {
        c.ok("post_message", json!({"channel_id": cid, "body": body}))
            .await;
    }
    let http = reqwest::Client::new();
    let session = c.session.clone();
    let mut makers = Vec::new();
    for _ in 0..8 {
        let (http, url, t, s) = (http.clone(), d.url(), token.clone(), session.clone());
        makers.push(tokio::spawn(async move {
            for _ in 0..1250 {
                let (st, v) = raw_call(&http, &url, &t, s.as_deref(), "create_channel",
                    json!({"name": "many", "slots": ["invite:alice", "invite:bob"], "join_as": "alice"}))
                    .await
                    .unwrap();
                assert!(st == 200 && !tool_result(&v).unwrap().0, "{v}");
            }
        }));
    }
    for m in makers {
        m.await.unwrap();
    }
    let (before, _) = d.rss();
    let mut readers = Vec::new();
    for _ in 0..16 {
        let (http, url, t, cid, s) = (
            http.clone(),
            d.url(),
            token.clone(),
            cid.clone(),
            session.clone(),
        );
        readers.push(tokio::spawn(async move {
            raw_call(
                &http,
                &url,
                &t,
                s.as_deref(),
                "sync_messages",
                json!({"channel_id": cid, "cursor": 0, "limit": 500, "wait_ms": 0}),
            )
            .await
        }));
    }
    for _ in 0..20 {
        let (http, url, t, s) = (http.clone(), d.url(), token.clone(), session.clone());
        readers.push(tokio::spawn(async move {
            raw_call(&http, &url, &t, s.as_deref(), "list_channels", json!({})).await
        }));
    }
    // Another principal meanwhile.
    let o = Mcp::connect(&d.url(), Some(&other)).await;
    let t = Instant::now();
    let (s, _) = raw_call(
        &http,
        &d.url(),
        &other,
        o.session.as_deref(),
        "list_channels",
        json!({}),
    )
    .await
    .unwrap();
    let other_took = t.elapsed();
    assert_eq!(s, 200);
    for r in readers {
        let (s, v) = r.await.unwrap().unwrap();
        assert_eq!(s, 200, "{v}");
    }
    let (_, peak) = d.rss();
    eprintln!(
        "RSS before the reads {} MiB, peak {} MiB; another principal's call took {other_took:?}",
        before >> 20,
        peak >> 20
    );
    assert!(peak < 512 << 20, "peak RSS {} MiB", peak >> 20);
}

#[tokio::test]
#[ignore = "opens 1,000 MCP sessions and measures RSS: tests/steps/70-robustness.sh"]
async fn idle_sessions_cost_little_and_one_principal_cannot_pile_them_up() {
    let dir = TempDir::new("sessions-mem");
    let token = create_token(dir.path(), "alice");
    let d = Server::start(
        dir.path(),
        &Opts {
            config: "[http]\nmax_sessions_per_principal = 5000\nsession_sleep_secs = 1\n".into(),
            ..Opts::default()
        },
    );
    // Warm up (first connections, allocator arenas), then measure.
    let mut warm = Vec::new();
    for _ in 0..50 {
        warm.push(Mcp::connect(&d.url(), Some(&token)).await);
    }
    super::sessions::until_metric(&d, "mcp_multiplayer_sessions_asleep", |v| v == 50.0).await;
    // Awake: what a session in use costs (rmcp's worker and service loop).
    let (before, _) = d.rss();
    let mut held = Vec::new();
    for _ in 0..100 {
        held.push(Mcp::connect(&d.url(), Some(&token)).await.session);
    }
    let (after, _) = d.rss();
    let awake = after.saturating_sub(before) / 100;
    // Idle: sessions opened 100 at a time, each batch left to fall asleep
    // before the next opens (as sessions of many clients come and go), so
    // the memory a sleeping batch gave back serves the next one.
    super::sessions::until_metric(&d, "mcp_multiplayer_sessions_asleep", |v| v == 150.0).await;
    let (before, _) = d.rss();
    for batch in 1..=10 {
        for _ in 0..100 {
            held.push(Mcp::connect(&d.url(), Some(&token)).await.session);
        }
        let want = 150.0 + 100.0 * f64::from(batch);
        super::sessions::until_metric(&d, "mcp_multiplayer_sessions_asleep", |v| v == want).await;
    }
    let (after, _) = d.rss();
    let asleep = after.saturating_sub(before) / 1000;
    eprintln!(
        "an awake session: {awake} bytes; 1,000 idle (asleep) sessions: +{} KiB RSS, {asleep} bytes each",
        after.saturating_sub(before) >> 10,
    );
    assert_eq!(d.metric("mcp_multiplayer_sessions_open").await, 1150.0);
    assert!(asleep < 20 * 1024, "{asleep} bytes per idle session");
    drop((warm, held));

    // With the default cap, one principal keeps at most 32.
    let dir = TempDir::new("sessions-cap");
    let token = create_token(dir.path(), "alice");
    let d = Server::start(dir.path(), &Opts::default());
    for _ in 0..200 {
        Mcp::connect(&d.url(), Some(&token)).await;
    }
    assert_eq!(d.metric("mcp_multiplayer_sessions_open").await, 32.0);
}
