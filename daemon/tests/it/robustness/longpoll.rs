//! The direct long-poll path (`http/longpoll.rs`) is judged like any call:
//! a session id of another principal or a closed session gets 404, a
//! private message is redacted for a waiter who is not a party to it, a
//! revoked token gets the same `TOKEN_INVALID` as through rmcp, and a client
//! that goes away leaves no waiter behind. Each step checks
//! `sync_direct_total`, so the test fails if the path is taken away or stops
//! taking these calls.

use super::sessions::until_metric;
use super::*;

const DIRECT: &str = "mcp_multiplayer_sync_direct_total";
const WAITING: &str = "mcp_multiplayer_sync_waiting";

/// `v` without the signature's time and signature: two reads of the same
/// head sign it apart when they are not answered by the same shared read.
fn unsigned(mut v: Value) -> Value {
    fn strip(v: &mut Value) {
        if let Some(h) = v.get_mut("signed_head").and_then(Value::as_object_mut) {
            for k in ["time", "signature"] {
                assert!(h.remove(k).is_some(), "{k}");
            }
        }
    }
    strip(&mut v);
    if let Some(sc) = v.get_mut("structuredContent") {
        strip(sc);
    }
    v
}

/// How many messages channel `cid` holds (the cursor of its head).
async fn message_count(c: &mut Mcp, cid: &str) -> i64 {
    c.ok("get_channel_info", json!({"channel_id": cid})).await["message_count"]
        .as_i64()
        .unwrap()
}

/// A channel `name` with `c` alone in it: its id and message count.
async fn own_channel(c: &mut Mcp, name: &str) -> (String, i64) {
    let created = c
        .ok(
            "create_channel",
            json!({"name": name, "slots": ["invite:p0"], "join_as": "p0"}),
        )
        .await;
    let cid = created["channel_id"].as_str().unwrap().to_string();
    let head = message_count(c, &cid).await;
    (cid, head)
}

/// A `sync_messages` call rmcp must answer: its progress token keeps it off
/// the direct path.
async fn sync_through_rmcp(c: &mut Mcp, args: Value) -> (bool, Value) {
    let r = c
        .rpc(
            "tools/call",
            json!({"name": "sync_messages", "arguments": args,
                   "_meta": {"progressToken": "through-rmcp"}}),
        )
        .await
        .unwrap();
    let res = &r["result"];
    (
        res["isError"].as_bool().unwrap_or(false),
        res["structuredContent"].clone(),
    )
}

/// The status and body of a direct-path-shaped `sync_messages` POST with
/// `token` and session `sid`.
async fn raw_sync(url: &str, token: &str, sid: &str, cid: &str) -> (u16, String) {
    let resp = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .header("mcp-session-id", sid)
        .body(format!(
            r#"{{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{{"name":"sync_messages","arguments":{{"channel_id":"{cid}","wait_ms":0}}}}}}"#
        ))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

/// A sessionless (2026-07-28) `sync_messages` call; with `progress`, a
/// progress token keeps it on rmcp's path. The JSON-RPC response.
async fn sessionless_sync(url: &str, token: &str, args: Value, progress: bool) -> Value {
    sessionless_on(&reqwest::Client::new(), url, token, args, progress).await
}

/// [`sessionless_sync`] on `http`, whose pooled connection the next call
/// reuses.
async fn sessionless_on(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    args: Value,
    progress: bool,
) -> Value {
    let mut meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    });
    if progress {
        meta["progressToken"] = json!("through-rmcp");
    }
    let body = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
        "params": {"name": "sync_messages", "arguments": args, "_meta": meta}});
    let resp = http
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "sync_messages")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.text().await.unwrap();
    parse_response(&text, 5).unwrap_or_else(|| panic!("no response in {text}"))
}

#[tokio::test]
async fn a_direct_long_poll_is_judged_like_any_call() {
    let dir = TempDir::new("direct-poll");
    let names = ["alice", "bob", "carol", "dave"];
    let tokens: Vec<String> = names.iter().map(|n| create_token(dir.path(), n)).collect();
    let mallory_t = create_token(dir.path(), "mallory");
    let d = Server::start(dir.path(), &Opts::default());
    let url = d.url();
    let mut c: Vec<Mcp> = Vec::new();
    for t in &tokens {
        c.push(Mcp::connect(&url, Some(t)).await);
    }
    let created = c[0]
        .ok(
            "create_channel",
            json!({"name": "direct", "slots": ["invite:p0", "invite:p1", "invite:p2", "invite:p3"], "join_as": "p0"}),
        )
        .await;
    let cid = created["channel_id"].as_str().unwrap().to_string();
    for inv in created["invites"].as_array().unwrap() {
        let i: usize = inv["slot"].as_str().unwrap()[1..].parse().unwrap();
        c[i].ok("join_channel", json!({"invite_code": inv["invite_code"]}))
            .await;
    }
    let head = message_count(&mut c[0], &cid).await;

    // Dave waits twice, directly and through rmcp; Bob writes to Carol alone.
    let mut dave = c.pop().unwrap();
    let mut dave_rmcp = Mcp::connect(&url, Some(&tokens[3])).await;
    let direct_before = d.metric(DIRECT).await;
    let args = json!({"channel_id": cid, "cursor": head, "wait_ms": 25000});
    let a = args.clone();
    let direct = tokio::spawn(async move { dave.call("sync_messages", a).await.unwrap() });
    let a = args.clone();
    let rmcp = tokio::spawn(async move { sync_through_rmcp(&mut dave_rmcp, a).await });
    until_metric(&d, WAITING, |v| v == 2.0).await;
    assert_eq!(d.metric(DIRECT).await, direct_before + 1.0);
    c[1].ok(
        "post_message",
        json!({"channel_id": cid, "body": "for carol only", "to": ["p2"]}),
    )
    .await;
    let (err, seen) = direct.await.unwrap();
    assert!(!err, "{seen}");
    let m = &seen["messages"][0];
    assert_eq!(m["redacted"], json!(true), "{seen}");
    assert!(m.get("body").is_none_or(Value::is_null), "{seen}");
    let (err, through_rmcp) = rmcp.await.unwrap();
    assert!(!err);
    assert_eq!(
        unsigned(through_rmcp),
        unsigned(seen.clone()),
        "the direct path answers what rmcp answers"
    );
    // Carol, the recipient, reads it (directly).
    let (err, carol_sees) = c[2]
        .call(
            "sync_messages",
            json!({"channel_id": cid, "cursor": head, "wait_ms": 0}),
        )
        .await
        .unwrap();
    assert!(!err);
    assert_eq!(
        carol_sees["messages"][0]["body"],
        json!("for carol only"),
        "{carol_sees}"
    );
    assert_eq!(d.metric(DIRECT).await, direct_before + 2.0);

    // Sessionless, Dave reads the same, directly and through rmcp, to the
    // byte of the result (`resultType` included, as 2026-07-28 wants it).
    let args = json!({"channel_id": cid, "cursor": head, "wait_ms": 0});
    let direct = sessionless_sync(&url, &tokens[3], args.clone(), false).await;
    assert_eq!(d.metric(DIRECT).await, direct_before + 3.0);
    let through_rmcp = sessionless_sync(&url, &tokens[3], args, true).await;
    assert_eq!(d.metric(DIRECT).await, direct_before + 3.0);
    // The text rendering carries no signature; the structured result's is
    // compared without its time.
    assert_eq!(
        unsigned(direct["result"].clone()),
        unsigned(through_rmcp["result"].clone())
    );
    assert_eq!(
        unsigned(direct["result"]["structuredContent"].clone()),
        unsigned(seen.clone())
    );
    assert_eq!(
        direct["result"]["resultType"],
        json!("complete"),
        "{direct}"
    );

    // Another principal's session id, then a closed one: 404, never served.
    let alice_sid = c[0].session.clone().unwrap();
    let (status, _) = raw_sync(&url, &mallory_t, &alice_sid, &cid).await;
    assert_eq!(status, 404);
    let (status, body) = raw_sync(&url, &tokens[0], &alice_sid, &cid).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.starts_with("data: {") && !body.contains("\nid:") && !body.contains("retry:"),
        "one SSE event, no priming: {body}"
    );
    let closed = reqwest::Client::new()
        .delete(&url)
        .bearer_auth(&tokens[0])
        .header("mcp-protocol-version", "2025-06-18")
        .header("mcp-session-id", &alice_sid)
        .send()
        .await
        .unwrap();
    assert!(closed.status().is_success(), "{}", closed.status());
    let (status, _) = raw_sync(&url, &tokens[0], &alice_sid, &cid).await;
    assert_eq!(status, 404);
    assert_eq!(d.metric(DIRECT).await, direct_before + 4.0);

    // A client that goes away ends its wait: no waiter is left behind.
    let mut carol = c.pop().unwrap();
    let a = json!({"channel_id": cid, "cursor": head + 1, "wait_ms": 25000});
    let gone = tokio::spawn(async move { carol.call("sync_messages", a).await });
    until_metric(&d, WAITING, |v| v == 1.0).await;
    assert_eq!(d.metric(DIRECT).await, direct_before + 5.0);
    gone.abort();
    let _ = gone.await;
    until_metric(&d, WAITING, |v| v == 0.0).await;

    // Bob's token is revoked while he waits, directly and through rmcp: the
    // next commit answers both with the same TOKEN_INVALID.
    let mut bob = c.pop().unwrap();
    let mut bob_rmcp = Mcp::connect(&url, Some(&tokens[1])).await;
    let a = json!({"channel_id": cid, "cursor": head + 1, "wait_ms": 25000});
    let direct = tokio::spawn(async move { bob.call("sync_messages", a).await.unwrap() });
    let a = json!({"channel_id": cid, "cursor": head + 1, "wait_ms": 25000});
    let rmcp = tokio::spawn(async move { sync_through_rmcp(&mut bob_rmcp, a).await });
    until_metric(&d, WAITING, |v| v == 2.0).await;
    assert_eq!(d.metric(DIRECT).await, direct_before + 6.0);
    let out = daemon_cmd(dir.path())
        .args(["token", "revoke", "bob", "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut alice = Mcp::connect(&url, Some(&tokens[0])).await;
    alice
        .ok(
            "post_message",
            json!({"channel_id": cid, "body": "after the revocation"}),
        )
        .await;
    let (err, v) = direct.await.unwrap();
    assert!(err, "{v}");
    assert_eq!(v["error"]["code"], json!("TOKEN_INVALID"), "{v}");
    assert_eq!(rmcp.await.unwrap(), (true, v));
}

#[tokio::test]
#[ignore = "waits 16 s for the keep-alive: tests/steps/70-robustness.sh"]
async fn a_direct_wait_past_the_keep_alive_interval_opens_the_stream_with_a_comment() {
    let dir = TempDir::new("direct-keepalive");
    let token = create_token(dir.path(), "alice");
    let d = Server::start(dir.path(), &Opts::default());
    let url = d.url();
    let mut alice = Mcp::connect(&url, Some(&token)).await;
    let (cid, head) = own_channel(&mut alice, "slow").await;
    let sid = alice.session.clone().unwrap();
    let (poll_url, poll_token, poll_cid) = (url.clone(), token.clone(), cid.clone());
    let poll = tokio::spawn(async move {
        let resp = reqwest::Client::new()
            .post(&poll_url)
            .bearer_auth(&poll_token)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18")
            .header("mcp-session-id", &sid)
            .body(format!(
                r#"{{"jsonrpc":"2.0","id":"late","method":"tools/call","params":{{"name":"sync_messages","arguments":{{"channel_id":"{poll_cid}","cursor":{head},"wait_ms":25000}}}}}}"#
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        resp.text().await.unwrap()
    });
    until_metric(&d, WAITING, |v| v == 1.0).await;
    assert_eq!(d.metric(DIRECT).await, 1.0);
    // Past the 15 s keep-alive interval, then a message ends the wait.
    tokio::time::sleep(Duration::from_secs(16)).await;
    alice
        .ok("post_message", json!({"channel_id": cid, "body": "late"}))
        .await;
    let body = poll.await.unwrap();
    let (comments, event) = body.split_once("data: ").unwrap();
    assert!(
        !comments.is_empty() && comments.lines().all(|l| l.is_empty() || l.starts_with(':')),
        "{body}"
    );
    let v: Value = serde_json::from_str(event.trim()).unwrap();
    assert_eq!(v["id"], json!("late"));
    assert_eq!(
        v["result"]["structuredContent"]["messages"][0]["body"],
        json!("late"),
        "{v}"
    );
}

/// A post that wakes more waiters than `longpoll::HERD_MIN` holds each
/// woken waiter's next request on its connection until the rest of the
/// herd is answered; a second post lands while that goes on. Every waiter
/// still sees both messages, once each and in order, whether its next
/// long-poll was held or not, and every call took the direct path.
#[tokio::test]
async fn a_herd_is_answered_whole_and_its_next_polls_miss_nothing() {
    let dir = TempDir::new("direct-herd");
    let token = create_token(dir.path(), "alice");
    let d = Server::start(dir.path(), &Opts::default());
    let url = d.url();
    let mut alice = Mcp::connect(&url, Some(&token)).await;
    let (cid, head) = own_channel(&mut alice, "herd").await;
    let direct_before = d.metric(DIRECT).await;
    const N: usize = 48;
    let mut waiters = Vec::new();
    for _ in 0..N {
        let (url, token, cid) = (url.clone(), token.clone(), cid.clone());
        waiters.push(tokio::spawn(async move {
            // One connection, kept alive: the next call is the held one.
            let http = reqwest::Client::new();
            let mut seen = Vec::new();
            let mut cursor = head;
            let mut calls = 0;
            while seen.len() < 2 {
                let r = sessionless_on(
                    &http,
                    &url,
                    &token,
                    json!({"channel_id": cid, "cursor": cursor, "wait_ms": 25000}),
                    false,
                )
                .await;
                calls += 1;
                let sc = &r["result"]["structuredContent"];
                assert_ne!(r["result"]["isError"], json!(true), "{r}");
                for m in sc["messages"].as_array().unwrap() {
                    seen.push(m["body"].as_str().unwrap().to_string());
                }
                cursor = sc["cursor"].as_i64().unwrap();
            }
            (seen, calls)
        }));
    }
    until_metric(&d, WAITING, |v| v == N as f64).await;
    alice
        .ok("post_message", json!({"channel_id": cid, "body": "one"}))
        .await;
    alice
        .ok("post_message", json!({"channel_id": cid, "body": "two"}))
        .await;
    let mut calls = 0.0;
    for w in waiters {
        let (seen, n) = w.await.unwrap();
        assert_eq!(seen, ["one", "two"]);
        calls += n as f64;
    }
    assert_eq!(d.metric(DIRECT).await, direct_before + calls);
    // Nobody is left waiting, and nothing is held.
    until_metric(&d, WAITING, |v| v == 0.0).await;
}
