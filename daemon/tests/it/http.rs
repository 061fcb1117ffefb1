//! HTTP-level behaviour of `/mcp`, `/healthz`: authentication, Host/Origin
//! checks, tool errors.

use crate::util::*;
use serde_json::json;

#[tokio::test]
async fn mcp_without_token_is_401_with_resource_metadata() {
    let dir = TempDir::new("http401");
    let d = Daemon::start(dir.path(), &[]);
    let r = reqwest::Client::new()
        .post(d.mcp_url())
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let h = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        h,
        format!(
            "Bearer resource_metadata=\"{}/.well-known/oauth-protected-resource/mcp\"",
            d.base
        )
    );
    let r = reqwest::Client::new()
        .post(d.mcp_url())
        .bearer_auth("mcpmp_at_garbage")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"invalid_token\"")
    );
}

#[tokio::test]
async fn foreign_origin_is_refused_and_healthz_reports_database() {
    let dir = TempDir::new("origin");
    let token = create_token(dir.path(), "alice");
    let d = Daemon::start(dir.path(), &[]);
    let r = reqwest::Client::new()
        .post(d.mcp_url())
        .bearer_auth(&token)
        .header("origin", "https://evil.example")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let h: serde_json::Value = reqwest::get(format!("{}/healthz", d.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["status"], "ok");
    assert_eq!(h["database"], "ok");
}

#[tokio::test]
async fn bad_input_gets_stable_codes() {
    let dir = TempDir::new("badinput");
    let token = create_token(dir.path(), "alice");
    let d = Daemon::start(dir.path(), &[]);
    let mut c = Mcp::connect(&d.mcp_url(), Some(&token)).await;
    let v = c
        .ok(
            "create_channel",
            json!({"name": "t", "slots": ["invite:alice", "invite:bob"], "join_as": "alice"}),
        )
        .await;
    let cid = v["channel_id"].as_str().unwrap().to_string();
    let code = |v: &serde_json::Value| v["error"]["code"].as_str().unwrap().to_string();

    let (e, v) = c
        .call(
            "post_message",
            json!({"channel_id": "ch_nope", "body": "x"}),
        )
        .await
        .unwrap();
    assert!(e);
    assert_eq!(code(&v), "CHANNEL_NOT_FOUND");
    let big = "x".repeat(70 * 1024);
    let (e, v) = c
        .call("post_message", json!({"channel_id": cid, "body": big}))
        .await
        .unwrap();
    assert!(e);
    assert_eq!(code(&v), "BAD_REQUEST");
    assert!(v["error"]["message"].as_str().unwrap().contains("limit"));
    let (e, v) = c
        .call("post_message", json!({"channel_id": cid, "body": [1, 2]}))
        .await
        .unwrap();
    assert!(e && code(&v) == "BAD_REQUEST");
    let (e, v) = c
        .call(
            "post_message",
            json!({"channel_id": cid, "body": "hi", "to": "carol"}),
        )
        .await
        .unwrap();
    assert!(e);
    assert_eq!(code(&v), "UNKNOWN_SLOT");
    let (e, v) = c
        .call("post_message", json!({"channelId": cid, "body": "hi"}))
        .await
        .unwrap();
    assert!(e);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("channelId"),
        "{v}"
    );
    let (e, v) = c
        .call("join_channel", json!({"invite_code": "mcpmp_inv_nope"}))
        .await
        .unwrap();
    assert!(e && code(&v) == "INVITE_INVALID");
    // Malformed JSON-RPC is a protocol error, not a 500.
    let r = c
        .http
        .post(d.mcp_url())
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", c.session.clone().unwrap())
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
}
