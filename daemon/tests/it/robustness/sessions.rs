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
    // Her own DELETE works.
    let s3 = third.session.clone().unwrap();
    let st = status(&http, reqwest::Method::DELETE, &d.url(), &alice_t, &s3).await;
    assert!((200..300).contains(&st), "{st}");
    assert_eq!(d.metric("mcp_multiplayer_sessions_open").await, 1.0);
}
