//! SIGTERM answers every parked call with its normal result and every
//! post in flight with its acknowledgement (never a 5xx), and stops the
//! daemon within the drain time, whatever happened to stderr.

use super::*;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Posts as fast as the test sends them.
const RELAXED: &str = "[quotas]\nposts_per_second = 100000.0\npost_burst = 100000\n";

#[tokio::test]
async fn sigterm_with_200_parked_calls_and_posts_in_flight_answers_all_without_5xx() {
    let dir = TempDir::new("sigterm");
    let alice_t = create_token(dir.path(), "alice");
    let bob_t = create_token(dir.path(), "bob");
    let opts = Opts {
        config: RELAXED.into(),
        ..Opts::default()
    };
    let mut d = Server::start(dir.path(), &opts);
    let mut alice = Mcp::connect(&d.url(), Some(&alice_t)).await;
    let (cid, invites) = channel(&mut alice, &["alice", "bob"]).await;
    let mut bob = Mcp::connect(&d.url(), Some(&bob_t)).await;
    bob.ok(
        "join_channel",
        json!({"invite_code": invites[0]["invite_code"]}),
    )
    .await;
    let head = bob.ok("get_channel_info", json!({"channel_id": cid})).await["message_count"]
        .as_i64()
        .unwrap();

    // 200 calls parked on a channel nobody posts in.
    let (quiet, _) = channel(&mut alice, &["alice"]).await;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let session = alice.session.clone();
    let mut parked = Vec::new();
    for _ in 0..200 {
        let (http, url, t, s, q) = (
            http.clone(),
            d.url(),
            alice_t.clone(),
            session.clone(),
            quiet.clone(),
        );
        parked.push(tokio::spawn(async move {
            raw_call(
                &http,
                &url,
                &t,
                s.as_deref(),
                "sync_messages",
                json!({"channel_id": q, "cursor": 2, "wait_ms": 25000}),
            )
            .await
        }));
    }
    assert!(
        eventually(Duration::from_secs(20), || async {
            d.metric("mcp_multiplayer_sync_waiting").await >= 200.0
        })
        .await,
        "the calls never parked"
    );

    // Posts keep flowing from bob while the signal lands.
    let acked: Arc<Mutex<Vec<i64>>> = Arc::default();
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut posters = Vec::new();
    let bob_session = bob.session.clone();
    for p in 0..4 {
        let (http, url, t, c, acked, failures) = (
            http.clone(),
            d.url(),
            bob_t.clone(),
            cid.clone(),
            acked.clone(),
            failures.clone(),
        );
        let session = bob_session.clone();
        posters.push(tokio::spawn(async move {
            for i in 0..10_000 {
                match raw_call(
                    &http,
                    &url,
                    &t,
                    session.as_deref(),
                    "post_message",
                    json!({"channel_id": c, "body": format!("p{p}-{i}")}),
                )
                .await
                {
                    Ok((200, v)) => match tool_result(&v) {
                        Some((false, r)) => acked.lock().unwrap().push(r["seq"].as_i64().unwrap()),
                        _ => failures.lock().unwrap().push(format!("{v}")),
                    },
                    Ok((status, v)) => {
                        failures.lock().unwrap().push(format!("HTTP {status}: {v}"));
                        return;
                    }
                    // Refused at connect once the listener is closed: fine.
                    Err(_) => return,
                }
            }
        }));
    }
    assert!(
        eventually(Duration::from_secs(10), || async {
            acked.lock().unwrap().len() >= 20
        })
        .await,
        "posts are not flowing"
    );
    let signalled = Instant::now();
    d.signal(nix::sys::signal::Signal::SIGTERM);
    let status = d
        .wait_exit(Duration::from_secs(15))
        .expect("still running 15 s after SIGTERM");
    let took = signalled.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(12), "drain took {took:?}");

    for p in parked {
        let (status, v) = p.await.unwrap().expect("a parked call got no answer");
        assert_eq!(status, 200, "{v}");
        let (is_error, r) = tool_result(&v).unwrap_or_else(|| panic!("not a tool result: {v}"));
        assert!(!is_error, "{v}");
        assert_eq!(r["messages"], json!([]), "{v}");
    }
    for p in posters {
        p.await.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "{failures:?}");

    // Every acknowledged post is there after a restart.
    let acked = acked.lock().unwrap().clone();
    let d = Server::start(dir.path(), &opts);
    let mut bob = Mcp::connect(&d.url(), Some(&bob_t)).await;
    let count = bob.ok("get_channel_info", json!({"channel_id": cid})).await["message_count"]
        .as_i64()
        .unwrap();
    assert!(
        acked.iter().all(|s| *s > head && *s <= count),
        "acknowledged seqs {acked:?} beyond the transcript's {count}"
    );
    assert_eq!(
        count - head,
        acked.len() as i64,
        "every post in the transcript was acknowledged"
    );
}

async fn stops_on_sigterm_with(stderr: StderrAfterStart) {
    let dir = TempDir::new("stderr");
    let token = create_token(dir.path(), "alice");
    let mut d = Server::start(
        dir.path(),
        &Opts {
            stderr,
            log: Some("debug".into()),
            config: RELAXED.into(),
            ..Opts::default()
        },
    );
    // Plenty to log: each call logs several lines at debug (a pipe holds 64 KiB).
    let mut c = Mcp::connect(&d.url(), Some(&token)).await;
    let (cid, _) = channel(&mut c, &["alice"]).await;
    for i in 0..300 {
        c.ok(
            "post_message",
            json!({"channel_id": cid, "body": format!("m{i}")}),
        )
        .await;
    }
    // Still answering.
    let t = Instant::now();
    let h = reqwest::get(format!("{}/healthz", d.base)).await.unwrap();
    assert_eq!(h.status(), 200);
    assert!(t.elapsed() < Duration::from_secs(2));
    d.signal(nix::sys::signal::Signal::SIGTERM);
    let status = d.wait_exit(Duration::from_secs(15));
    assert!(
        status.is_some(),
        "SIGTERM was ignored with stderr {}",
        match stderr {
            StderrAfterStart::Closed => "closed",
            StderrAfterStart::Unread => "unread",
            StderrAfterStart::Logged => "read",
        }
    );
}

#[tokio::test]
async fn sigterm_stops_the_daemon_when_nobody_reads_stderr_any_more() {
    stops_on_sigterm_with(StderrAfterStart::Closed).await;
}

#[tokio::test]
async fn sigterm_stops_the_daemon_when_stderr_is_full() {
    stops_on_sigterm_with(StderrAfterStart::Unread).await;
}
