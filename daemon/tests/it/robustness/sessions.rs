//! MCP sessions belong to the principal that opened them: another
//! principal holding the id gets 404, as for an unknown session; a
//! principal's sessions are capped.

use super::*;

async fn status(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: &str,
    session: &str,
) -> u16 {
    http.request(method, url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .header("mcp-session-id", session)
        .body(r#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn another_principal_holding_a_session_id_gets_404_and_cannot_delete_it() {
    let dir = TempDir::new("sess-bind");
    let alice_t = create_token(dir.path(), "alice");
    let mallory_t = create_token(dir.path(), "mallory");
    let d = Server::start(
        dir.path(),
        &Opts {
            config: "[http]\nmax_sessions_per_principal = 2\n".into(),
            ..Opts::default()
        },
    );
    let http = reqwest::Client::new();
    let mut alice = Mcp::connect(&d.url(), Some(&alice_t)).await;
    let sid = alice.session.clone().unwrap();

    for m in [
        reqwest::Method::POST,
        reqwest::Method::GET,
        reqwest::Method::DELETE,
    ] {
        assert_eq!(
            status(&http, m.clone(), &d.url(), &mallory_t, &sid).await,
            404,
            "{m}"
        );
    }
    // Alice's session is untouched by the attempts.
    alice.ok("list_channels", json!({})).await;
    assert_eq!(
        d.metric("mcp_multiplayer_sessions_foreign_total").await,
        3.0
    );

    // Two more sessions for alice: the least recently used one (the first,
    // used before the second was opened) is closed.
    let _second = Mcp::connect(&d.url(), Some(&alice_t)).await;
    let mut third = Mcp::connect(&d.url(), Some(&alice_t)).await;
    assert_eq!(
        status(&http, reqwest::Method::POST, &d.url(), &alice_t, &sid).await,
        404
    );
    third.ok("list_channels", json!({})).await;
    assert_eq!(d.metric("mcp_multiplayer_sessions_open").await, 2.0);
    assert_eq!(
        d.metric("mcp_multiplayer_sessions_closed_total{reason=\"per_principal_cap\"}")
            .await,
        1.0
    );
    // Her own DELETE works: the session is closed when the answer comes
    // (204, not 202: the Python SDK logs anything but 200 and 204 as a
    // failed termination), and its id is unknown from then on.
    let s3 = third.session.clone().unwrap();
    let st = status(&http, reqwest::Method::DELETE, &d.url(), &alice_t, &s3).await;
    assert_eq!(st, 204);
    assert_eq!(d.metric("mcp_multiplayer_sessions_open").await, 1.0);
    assert_eq!(
        status(&http, reqwest::Method::POST, &d.url(), &alice_t, &s3).await,
        404
    );
}

/// Waits until `series` satisfies `ok` (the daemon's sweep runs on its own
/// clock), at most 20 s; returns the value.
pub(crate) async fn until_metric(d: &Server, series: &str, ok: impl Fn(f64) -> bool) -> f64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let v = d.metric(series).await;
        if ok(v) {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{series} stayed at {v} for 20 s"
        );
        // A poll interval, not a guess at when the sweep runs.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_idle_session_sleeps_and_wakes_for_its_owner_alone_and_a_long_poll_keeps_it_awake() {
    let dir = TempDir::new("sess-sleep");
    let alice_t = create_token(dir.path(), "alice");
    let mallory_t = create_token(dir.path(), "mallory");
    let d = Server::start(
        dir.path(),
        &Opts {
            config: "[http]\nsession_sleep_secs = 1\n".into(),
            ..Opts::default()
        },
    );
    let http = reqwest::Client::new();
    let mut alice = Mcp::connect(&d.url(), Some(&alice_t)).await;
    let sid = alice.session.clone().unwrap();
    let created = alice
        .ok(
            "create_channel",
            json!({"name": "sleepy", "slots": ["invite:p0", "invite:p1"], "join_as": "p0"}),
        )
        .await;
    let cid = created["channel_id"].as_str().unwrap().to_string();
    alice
        .ok(
            "post_message",
            json!({"channel_id": cid, "body": "before sleep"}),
        )
        .await;

    // Idle for the configured second: asleep, still open, still hers.
    until_metric(&d, "mcp_multiplayer_sessions_asleep", |v| v == 1.0).await;
    assert_eq!(d.metric("mcp_multiplayer_sessions_open").await, 1.0);
    assert_eq!(
        status(&http, reqwest::Method::POST, &d.url(), &mallory_t, &sid).await,
        404,
        "a sleeping session is bound to its owner like an awake one"
    );
    assert_eq!(d.metric("mcp_multiplayer_sessions_asleep").await, 1.0);

    // Her next request wakes it and is served as usual.
    let synced = alice
        .ok(
            "sync_messages",
            json!({"channel_id": cid, "cursor": 0, "wait_ms": 0}),
        )
        .await;
    let bodies: Vec<&Value> = synced["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["body"])
        .collect();
    assert!(bodies.contains(&&json!("before sleep")), "{synced}");
    assert_eq!(alice.session.as_deref(), Some(sid.as_str()), "same session");
    assert_eq!(d.metric("mcp_multiplayer_sessions_asleep").await, 0.0);
    assert_eq!(d.metric("mcp_multiplayer_sessions_open").await, 1.0);

    // A long-poll is a stream in flight: its session must stay awake however
    // long it waits. A second session, used after the poll parked, is the
    // witness that the sweep ran past the poll's idle time.
    let head = synced["cursor"].as_i64().unwrap();
    let poll_cid = cid.clone();
    let poll = tokio::spawn(async move {
        let v = alice
            .call(
                "sync_messages",
                json!({"channel_id": poll_cid, "cursor": head, "wait_ms": 25000}),
            )
            .await;
        (alice, v)
    });
    until_metric(&d, "mcp_multiplayer_sync_waiting", |v| v == 1.0).await;
    let mut witness = Mcp::connect(&d.url(), Some(&alice_t)).await;
    witness
        .ok("get_channel_info", json!({"channel_id": cid}))
        .await;
    until_metric(&d, "mcp_multiplayer_sessions_asleep", |v| v >= 1.0).await;
    witness
        .ok(
            "post_message",
            json!({"channel_id": cid, "body": "after the wait"}),
        )
        .await;
    let (_alice, polled) = poll.await.unwrap();
    let (err, v) = polled.expect("the long-poll's session stayed awake and answered");
    assert!(!err, "{v}");
    assert_eq!(v["messages"][0]["body"], json!("after the wait"), "{v}");
}
