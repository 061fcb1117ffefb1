//! One token over its quotas is refused with `RATE_LIMITED` (or
//! `QUOTA_EXCEEDED`) and a wait; another principal is not affected.

use super::*;

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn a_principal_over_its_rates_is_refused_while_another_keeps_working() {
    let dir = TempDir::new("quota-rate");
    let alice_t = create_token(dir.path(), "alice");
    let bob_t = create_token(dir.path(), "bob");
    let opts = Opts {
        config: "[quotas]\nposts_per_second = 0.5\npost_burst = 3\nchannels_per_hour = 3\nopen_channels = 100\n".into(),
        ..Opts::default()
    };
    let d = Server::start(dir.path(), &opts);
    let mut alice = Mcp::connect(&d.url(), Some(&alice_t)).await;
    let mut bob = Mcp::connect(&d.url(), Some(&bob_t)).await;
    let (cid, invites) = channel(&mut alice, &["alice", "bob"]).await;
    bob.ok(
        "join_channel",
        json!({"invite_code": invites[0]["invite_code"]}),
    )
    .await;

    // The burst, then a refusal that says how long to wait.
    for i in 0..3 {
        alice
            .ok(
                "post_message",
                json!({"channel_id": cid, "body": format!("a{i}")}),
            )
            .await;
    }
    let (err, v) = alice
        .call(
            "post_message",
            json!({"channel_id": cid, "body": "one too many"}),
        )
        .await
        .unwrap();
    assert!(err, "{v}");
    assert_eq!(code(&v), "RATE_LIMITED", "{v}");
    assert_eq!(v["error"]["data"]["limit"], "posts_per_second");
    let wait = v["error"]["data"]["retry_after_ms"].as_u64().unwrap();
    assert!((1..=2000).contains(&wait), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("retry_after_ms")
    );
    // Renames announce themselves in the transcript: paced the same way.
    let (err, v) = alice
        .call(
            "update_channel",
            json!({"channel_id": cid, "op": "rename", "name": "spam"}),
        )
        .await
        .unwrap();
    assert!(err && code(&v) == "RATE_LIMITED", "{v}");

    // Bob posts meanwhile, at his own pace.
    for i in 0..3 {
        bob.ok(
            "post_message",
            json!({"channel_id": cid, "body": format!("b{i}")}),
        )
        .await;
    }

    // Channels per hour: alice has created one; two more, then refused.
    for _ in 0..2 {
        channel(&mut alice, &["alice"]).await;
    }
    let (err, v) = alice
        .call(
            "create_channel",
            json!({"name": "x", "slots": ["invite:alice"], "join_as": "alice"}),
        )
        .await
        .unwrap();
    assert!(err);
    assert_eq!(code(&v), "RATE_LIMITED", "{v}");
    assert_eq!(v["error"]["data"]["limit"], "channels_per_hour");
    let wait = v["error"]["data"]["retry_after_ms"].as_u64().unwrap();
    assert!(
        wait > 3_500_000 && wait <= 3_600_000,
        "about an hour: {wait}"
    );
    channel(&mut bob, &["alice"]).await;

    assert_eq!(
        d.metric("mcp_multiplayer_rate_limited_total{limit=\"posts_per_second\"}")
            .await,
        2.0
    );
    assert_eq!(
        d.metric(
            "mcp_multiplayer_tool_calls_total{tool=\"create_channel\",outcome=\"RATE_LIMITED\"}"
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn daily_bytes_survive_a_restart_and_full_channels_say_what_to_do() {
    let dir = TempDir::new("quota-bytes");
    let alice_t = create_token(dir.path(), "alice");
    let opts = Opts {
        config: "[quotas]\nbytes_per_principal_per_day = 3000\nmessages_per_channel = 6\nopen_channels = 2\n".into(),
        ..Opts::default()
    };
    let mut d = Server::start(dir.path(), &opts);
    let mut alice = Mcp::connect(&d.url(), Some(&alice_t)).await;
    let (cid, _) = channel(&mut alice, &["alice"]).await;
    let body = "x".repeat(1000);
    for _ in 0..2 {
        alice
            .ok("post_message", json!({"channel_id": cid, "body": body}))
            .await;
    }
    let (err, v) = alice
        .call("post_message", json!({"channel_id": cid, "body": body}))
        .await
        .unwrap();
    assert!(err && code(&v) == "RATE_LIMITED", "{v}");
    assert_eq!(v["error"]["data"]["limit"], "bytes_per_principal_per_day");
    assert!(v["error"]["data"]["retry_after_ms"].as_u64().unwrap() <= 86_400_000);

    // The count is in the database: a restart does not reset it.
    d.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(d.wait_exit(Duration::from_secs(15)).is_some());
    let d = Server::start(dir.path(), &opts);
    let mut alice = Mcp::connect(&d.url(), Some(&alice_t)).await;
    let (err, v) = alice
        .call("post_message", json!({"channel_id": cid, "body": body}))
        .await
        .unwrap();
    assert!(err && code(&v) == "RATE_LIMITED", "after a restart: {v}");
    // Small posts still fit, up to the channel's message limit (6 entries:
    // created, seat filled, two posts, then two more).
    for i in 0..2 {
        alice
            .ok(
                "post_message",
                json!({"channel_id": cid, "body": format!("s{i}")}),
            )
            .await;
    }
    let (err, v) = alice
        .call("post_message", json!({"channel_id": cid, "body": "full"}))
        .await
        .unwrap();
    assert!(err && code(&v) == "QUOTA_EXCEEDED", "{v}");
    assert_eq!(v["error"]["data"]["limit"], "messages_per_channel");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("new channel")
    );

    // Open channels: one is open; a second fits, a third does not until
    // one is closed.
    let (c2, _) = channel(&mut alice, &["alice"]).await;
    let (err, v) = alice
        .call(
            "create_channel",
            json!({"name": "x", "slots": ["invite:alice"], "join_as": "alice"}),
        )
        .await
        .unwrap();
    assert!(err && code(&v) == "QUOTA_EXCEEDED", "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("close"));
    alice
        .ok("update_channel", json!({"channel_id": c2, "op": "close"}))
        .await;
    channel(&mut alice, &["alice"]).await;
}
