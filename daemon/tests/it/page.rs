//! The channel page over real HTTP: spectator and member links, what each
//! may see, the event stream (live, resumable, cut by revocation), and the
//! page's headers. Each attack names the mechanism that stops it.

use crate::util::*;
use serde_json::{Value, json};
use std::time::Duration;

/// The page's Content-Security-Policy, exactly.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A channel with alice (admin, seated) and bob, no bot; returns
/// (daemon, alice, bob, channel id).
async fn table(dir: &TempDir, name: &str) -> (Daemon, Mcp, Mcp, String) {
    table_with(dir, name, "").await
}

/// [`table`], with more configuration lines.
async fn table_with(dir: &TempDir, name: &str, config: &str) -> (Daemon, Mcp, Mcp, String) {
    let (ta, tb) = (
        create_token(dir.path(), "alice"),
        create_token(dir.path(), "bob"),
    );
    // Tests post quickly: lift the post rate quota.
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!("{config}[quotas]\nposts_per_second = 1000.0\npost_burst = 1000\n"),
    )
    .unwrap();
    let d = Daemon::start(dir.path(), &["--config", cfg.to_str().unwrap()]);
    let mut alice = Mcp::connect(&d.mcp_url(), Some(&ta)).await;
    let mut bob = Mcp::connect(&d.mcp_url(), Some(&tb)).await;
    let created = alice
        .ok(
            "create_channel",
            json!({"name": name, "slots": ["invite:alice", "invite:bob"], "join_as": "alice"}),
        )
        .await;
    let cid = created["channel_id"].as_str().unwrap().to_string();
    let invite = created["invites"][0]["invite_code"].as_str().unwrap();
    bob.ok("join_channel", json!({"invite_code": invite})).await;
    (d, alice, bob, cid)
}

/// Opens a link: the `?key=` URL answers 303 with the page's cookie; returns
/// the cookie header to send.
async fn open_link(http: &reqwest::Client, url: &str) -> String {
    let r = http.get(url).send().await.unwrap();
    assert_eq!(r.status(), 303, "{url}");
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(set.contains("HttpOnly"), "{set}");
    assert!(set.contains("SameSite=Lax"), "{set}");
    assert!(set.contains("Path=/c/"), "{set}");
    set.split(';').next().unwrap().to_string()
}

async fn get(
    http: &reqwest::Client,
    url: &str,
    cookie: &str,
) -> (u16, reqwest::header::HeaderMap, String) {
    let r = http.get(url).header("cookie", cookie).send().await.unwrap();
    let (s, h) = (r.status().as_u16(), r.headers().clone());
    (s, h, r.text().await.unwrap())
}

/// An open event stream, read frame by frame.
struct Events {
    resp: reqwest::Response,
    buf: String,
    /// The signed heads the stream sent, set aside by [`Events::next`].
    heads: Vec<Value>,
}

impl Events {
    async fn open(http: &reqwest::Client, url: &str, cookie: &str, last: Option<i64>) -> Events {
        let mut r = http.get(url).header("cookie", cookie);
        if let Some(id) = last {
            r = r.header("last-event-id", id.to_string());
        }
        let resp = r.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        Events {
            resp,
            buf: String::new(),
            heads: Vec::new(),
        }
    }

    /// The next event (name, data), skipping comments and `retry` and
    /// setting `head` events aside in `heads`; `None`
    /// when the server ended the stream. Bounded by a deadline so a missing
    /// event fails the test instead of hanging it.
    async fn next(&mut self) -> Option<(String, Value)> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let frame: String = self.buf.drain(..end + 2).collect();
                let mut event = None;
                let mut data = None;
                for line in frame.lines() {
                    if let Some(e) = line.strip_prefix("event: ") {
                        event = Some(e.to_string());
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data = Some(serde_json::from_str(d).unwrap());
                    }
                }
                match (event, data) {
                    (Some(e), Some(d)) if e == "head" => self.heads.push(d),
                    (Some(e), Some(d)) => return Some((e, d)),
                    _ => {}
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.resp.chunk())
                .await
                .expect("an event within 10 s")
                .unwrap()?;
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// Messages until (and including) seq `upto`.
    async fn messages_upto(&mut self, upto: i64) -> Vec<Value> {
        let mut out = Vec::new();
        while out.last().and_then(|m: &Value| m["seq"].as_i64()) != Some(upto) {
            let (e, d) = self.next().await.expect("the stream ended early");
            assert_eq!(e, "message", "{d}");
            out.push(d);
        }
        out
    }
}

#[tokio::test]
async fn a_spectator_sees_public_messages_and_private_entries_without_their_bodies() {
    let dir = TempDir::new("page-spectator");
    let (d, mut alice, mut bob, cid) = table(&dir, "bids").await;
    alice
        .ok(
            "post_message",
            json!({"channel_id": cid, "body": "hello all"}),
        )
        .await;
    let private = alice
        .ok(
            "post_message",
            json!({"channel_id": cid, "body": "my bid is 450-SECRET", "to": ["bob"]}),
        )
        .await;
    let shared = bob.ok("share_channel", json!({"channel_id": cid})).await;
    assert_eq!(shared["audience"], "spectators");
    let url = shared["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/c/{cid}?key=mcpmp_view_", d.base)),
        "{url}"
    );

    let http = browser();
    let cookie = open_link(&http, url).await;
    let (status, headers, html) = get(&http, &format!("{}/c/{cid}", d.base), &cookie).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("hello all"));
    // Redaction (`rules::message_view` for a reader with no seat): the
    // private body never reaches a spectator, its hash does.
    assert!(!html.contains("450-SECRET"), "a private body leaked");
    let stream = format!("{}/c/{cid}/events", d.base);
    let mut ev = Events::open(&http, &stream, &cookie, None).await;
    let msgs = ev.messages_upto(private["seq"].as_i64().unwrap()).await;
    let p = msgs.last().unwrap();
    assert_eq!(p["redacted"], true);
    assert!(
        p.get("body").is_none() && p.get("body_salt").is_none(),
        "{p}"
    );
    assert!(p["body_hash"].as_str().unwrap().starts_with("sha256:"));
    // The chain the browser checks is whole: every entry, hashes that link.
    let mcp_view: Vec<Value> = msgs.clone();
    assert_eq!(
        mcp_multiplayer::transcript::verify_chain(&cid, &mcp_view).unwrap(),
        p["hash"].as_str().unwrap()
    );
    // Nothing a member alone holds: no invite codes or rejoin tokens, no
    // principal ids.
    for secret_prefix in ["mcpmp_inv_", "mcpmp_rj_", "mcpmp_at_", "mcpmp_view_"] {
        assert!(!html.contains(secret_prefix), "{secret_prefix} in the page");
    }
    // The page's headers: a strict CSP, no sniffing, no referrer, no cache.
    assert_eq!(headers["content-security-policy"], CSP);
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["cache-control"], "no-store");
    // The script and stylesheet it names come from the daemon, under the
    // same CSP; no other origin is named anywhere.
    for asset in ["js", "css"] {
        let path = html
            .split('"')
            .find(|s| s.starts_with("/page/page.") && s.ends_with(asset))
            .unwrap();
        let (s, h, _) = get(&http, &format!("{}{path}", d.base), "").await;
        assert_eq!(s, 200);
        assert_eq!(h["content-security-policy"], CSP);
    }
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no absolute URL to anywhere"
    );
}

#[tokio::test]
async fn a_spectator_link_cannot_post_or_act_as_a_member() {
    let dir = TempDir::new("page-nopost");
    let (d, _alice, mut bob, cid) = table(&dir, "read only").await;
    let url = bob.ok("share_channel", json!({"channel_id": cid})).await["url"]
        .as_str()
        .unwrap()
        .to_string();
    let key = url.split("key=").nth(1).unwrap().to_string();
    let http = browser();
    let cookie = open_link(&http, &url).await;
    // The page's router has no write route: every method but GET is refused.
    for path in [format!("/c/{cid}"), format!("/c/{cid}/events")] {
        let r = http
            .post(format!("{}{path}", d.base))
            .header("cookie", &cookie)
            .body("{\"body\":\"spoofed\"}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "{path}");
    }
    // The capability is not a bearer token: `/mcp` authenticates only
    // access tokens (`principals::authenticate`).
    let r = reqwest::Client::new()
        .post(d.mcp_url())
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                   "params": {"name": "post_message", "arguments": {"channel_id": cid, "body": "x"}}})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // A link of one channel opens no other: the link row names its channel.
    let other = bob
        .ok(
            "create_channel",
            json!({"name": "other", "slots": ["invite:x"]}),
        )
        .await["channel_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, _, _) = get(&http, &format!("{}/c/{other}", d.base), &cookie).await;
    assert_eq!(s, 403);
    let r = http
        .get(format!(
            "{}/c/{other}?{}",
            d.base,
            url.split('?').nth(1).unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // No cookie, or a made-up one: the page explains and shows nothing.
    let (s, _, html) = get(&http, &format!("{}/c/{cid}", d.base), "").await;
    assert_eq!(s, 401);
    assert!(html.contains("does not open the channel"));
    let (s, _, _) = get(
        &http,
        &format!("{}/c/{cid}", d.base),
        "mcpmp_page=mcpmp_view_madeup",
    )
    .await;
    assert_eq!(s, 403);
}

#[tokio::test]
async fn revoking_ends_an_open_stream_and_the_link_with_nothing_committed_after() {
    let dir = TempDir::new("page-revoke");
    let (d, mut alice, mut bob, cid) = table(&dir, "revoked").await;
    let shared = bob.ok("share_channel", json!({"channel_id": cid})).await;
    let http = browser();
    let cookie = open_link(&http, shared["url"].as_str().unwrap()).await;
    let stream = format!("{}/c/{cid}/events", d.base);
    let mut ev = Events::open(&http, &stream, &cookie, None).await;
    let head = alice
        .ok("post_message", json!({"channel_id": cid, "body": "before"}))
        .await["seq"]
        .as_i64()
        .unwrap();
    ev.messages_upto(head).await;
    // Only the admin revokes (`rules::require_admin`).
    let (err, v) = bob
        .call("revoke_shares", json!({"channel_id": cid}))
        .await
        .unwrap();
    assert!(err && v["error"]["code"] == "NOT_ADMIN", "{v}");
    let revoked = alice
        .ok(
            "revoke_shares",
            json!({"channel_id": cid, "link_id": shared["link_id"]}),
        )
        .await;
    assert_eq!(revoked["revoked"], 1);
    alice
        .ok(
            "post_message",
            json!({"channel_id": cid, "body": "after the revocation"}),
        )
        .await;
    // The stream re-checks its link at the commit that revoked it
    // (`links::check` in the snapshot of every read): it says so and ends,
    // and the message posted after never reaches it.
    let (e, d2) = ev.next().await.expect("a revoked event");
    assert_eq!(e, "revoked", "{d2}");
    assert_eq!(d2["reason"], "revoked");
    assert!(ev.next().await.is_none(), "the stream ended");
    let (s, _, html) = get(&http, &format!("{}/c/{cid}", d.base), &cookie).await;
    assert_eq!(s, 403);
    assert!(!html.contains("after the revocation"));
    let r = http
        .get(&stream)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // The link itself no longer opens the page.
    let r = http
        .get(shared["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn the_stream_is_live_and_resumes_after_last_event_id() {
    let dir = TempDir::new("page-live");
    let (d, mut alice, mut bob, cid) = table(&dir, "live").await;
    let shared = bob.ok("share_channel", json!({"channel_id": cid})).await;
    let http = browser();
    let cookie = open_link(&http, shared["url"].as_str().unwrap()).await;
    let stream = format!("{}/c/{cid}/events", d.base);
    let mut ev = Events::open(&http, &stream, &cookie, None).await;
    let first = alice
        .ok("post_message", json!({"channel_id": cid, "body": "one"}))
        .await["seq"]
        .as_i64()
        .unwrap();
    ev.messages_upto(first).await;
    // A post reaches the open stream, woken by its commit.
    let started = std::time::Instant::now();
    let seq = alice
        .ok("post_message", json!({"channel_id": cid, "body": "two"}))
        .await["seq"]
        .as_i64()
        .unwrap();
    let got = ev.messages_upto(seq).await;
    assert_eq!(got.last().unwrap()["body"], "two");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // The stream is counted while open.
    let metrics = http
        .get(format!("{}/metrics", d.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("mcp_multiplayer_page_streams 1\n"),
        "{metrics}"
    );
    drop(ev);
    alice
        .ok("post_message", json!({"channel_id": cid, "body": "three"}))
        .await;
    // A reconnecting browser sends the last id it saw: it gets what follows.
    let mut ev = Events::open(&http, &stream, &cookie, Some(seq)).await;
    let (e, m) = ev.next().await.unwrap();
    assert_eq!(e, "message");
    assert_eq!(
        (m["seq"].as_i64(), m["body"].as_str()),
        (Some(seq + 1), Some("three"))
    );
}

#[tokio::test]
async fn a_member_link_works_once_and_shows_that_members_private_messages() {
    let dir = TempDir::new("page-member");
    let (d, mut alice, mut bob, cid) = table(&dir, "member").await;
    alice
        .ok(
            "post_message",
            json!({"channel_id": cid, "body": "for bob only 77", "to": ["bob"]}),
        )
        .await;
    let mine = bob
        .ok(
            "share_channel",
            json!({"channel_id": cid, "audience": "me"}),
        )
        .await;
    assert_eq!(mine["seat"], "bob");
    let url = mine["url"].as_str().unwrap();
    assert!(url.contains("key=mcpmp_pagein_"), "{url}");
    let http = browser();
    let cookie = open_link(&http, url).await;
    // The cookie is a session of its own, not the link.
    assert!(cookie.starts_with("mcpmp_page=mcpmp_pgs_"), "{cookie}");
    let (s, _, html) = get(&http, &format!("{}/c/{cid}", d.base), &cookie).await;
    assert_eq!(s, 200);
    assert!(
        html.contains("for bob only 77"),
        "bob reads his private message"
    );
    assert!(html.contains("viewing as bob"));
    // Single use: the link was spent in the write that made the session.
    let r = http.get(url).send().await.unwrap();
    assert_eq!(r.status(), 403);
    // A spectator of the same channel does not read it.
    let spect = alice.ok("share_channel", json!({"channel_id": cid})).await;
    let c2 = open_link(&http, spect["url"].as_str().unwrap()).await;
    let (_, _, html) = get(&http, &format!("{}/c/{cid}", d.base), &c2).await;
    assert!(!html.contains("for bob only 77"));
    // Membership is checked at every request: kicked, bob's session stops.
    alice
        .ok(
            "update_channel",
            json!({"channel_id": cid, "op": "kick", "slot": "bob"}),
        )
        .await;
    let (s, _, _) = get(&http, &format!("{}/c/{cid}", d.base), &cookie).await;
    assert_eq!(s, 403);
    // A spectator link for an admin-less caller needs a seat for "me".
    let (err, v) = bob
        .call(
            "share_channel",
            json!({"channel_id": cid, "audience": "me"}),
        )
        .await
        .unwrap();
    assert!(err && v["error"]["code"] == "NOT_MEMBER", "{v}");
}

#[tokio::test]
async fn xss_in_names_and_bodies_renders_as_text() {
    let dir = TempDir::new("page-xss");
    let name = "<script>alert('name')</script>";
    let (d, mut alice, mut bob, cid) = table(&dir, name).await;
    let bodies = [
        "<img src=x onerror=alert(1)>".to_string(),
        "</li></ol><script src=/x.js></script>".to_string(),
        "\"><svg onload=alert(2)>".to_string(),
    ];
    for b in &bodies {
        alice
            .ok("post_message", json!({"channel_id": cid, "body": b}))
            .await;
    }
    alice
        .ok(
            "post_message",
            json!({"channel_id": cid, "body": {"<b>k</b>": "<i>v</i>"}}),
        )
        .await;
    let url = bob.ok("share_channel", json!({"channel_id": cid})).await["url"]
        .as_str()
        .unwrap()
        .to_string();
    let http = browser();
    let cookie = open_link(&http, &url).await;
    let (_, _, html) = get(&http, &format!("{}/c/{cid}", d.base), &cookie).await;
    // maud escapes every interpolated string: none of these tags exists in
    // the page as markup, each shows as its text.
    for raw in [
        "<script>alert",
        "<img src=x",
        "<svg",
        "<script src=/x.js",
        "<b>k",
        "<i>v",
    ] {
        assert!(!html.contains(raw), "{raw} is markup in the page");
    }
    assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
    assert!(html.contains("&lt;script&gt;alert('name')&lt;/script&gt;"));
    // The only script element is the daemon's own.
    assert_eq!(html.matches("<script").count(), 1);
}

/// Attack: the page links a CLI token minted (a member session reading the
/// seat's private messages, a spectator link) keep working after the
/// operator revoked the token with `token revoke`. Stopped by
/// `store::principals::revoke_cli_tokens` revoking every link the principal
/// minted (`store::links::revoke_of_principal`); another member's links stay.
#[tokio::test]
async fn revoking_a_cli_principals_tokens_ends_the_page_links_it_minted() {
    let dir = TempDir::new("page-token-revoke");
    let (d, mut alice, mut bob, cid) = table(&dir, "token-revoke").await;
    let http = browser();
    let view = format!("{}/c/{cid}", d.base);
    let me = json!({"channel_id": cid, "audience": "me"});
    let bob_session = open_link(
        &http,
        bob.ok("share_channel", me.clone()).await["url"]
            .as_str()
            .unwrap(),
    )
    .await;
    let bob_spectator = open_link(
        &http,
        bob.ok("share_channel", json!({"channel_id": cid})).await["url"]
            .as_str()
            .unwrap(),
    )
    .await;
    let alice_session = open_link(
        &http,
        alice.ok("share_channel", me).await["url"].as_str().unwrap(),
    )
    .await;
    for c in [&bob_session, &bob_spectator, &alice_session] {
        assert_eq!(get(&http, &view, c).await.0, 200);
    }
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
    assert_eq!(
        get(&http, &view, &bob_session).await.0,
        403,
        "member session"
    );
    assert_eq!(
        get(&http, &view, &bob_spectator).await.0,
        403,
        "spectator link"
    );
    assert_eq!(
        get(&http, &view, &alice_session).await.0,
        200,
        "alice's stays"
    );
}

#[tokio::test]
async fn the_operator_revokes_a_channels_page_links_from_the_command_line() {
    let dir = TempDir::new("page-cli");
    let (d, _alice, mut bob, cid) = table(&dir, "operator").await;
    let shared = bob.ok("share_channel", json!({"channel_id": cid})).await;
    let http = browser();
    let cookie = open_link(&http, shared["url"].as_str().unwrap()).await;
    let (s, _, _) = get(&http, &format!("{}/c/{cid}", d.base), &cookie).await;
    assert_eq!(s, 200);
    let out = daemon_cmd(dir.path())
        .args(["page", "revoke", &cid, "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Revoked 1 page link(s)"));
    let (s, _, _) = get(&http, &format!("{}/c/{cid}", d.base), &cookie).await;
    assert_eq!(s, 403);
    let out = daemon_cmd(dir.path())
        .args(["page", "revoke", "ch_nope", "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no channel \"ch_nope\""));
}

/// `mcp-multiplayer verify FILE --json`: exit code and report.
fn verify_file(dir: &TempDir, name: &str, doc: &Value) -> (i32, Value) {
    let path = dir.path().join(name);
    std::fs::write(&path, serde_json::to_vec(doc).unwrap()).unwrap();
    let out = std::process::Command::new(daemon_bin())
        .arg("verify")
        .arg(&path)
        .arg("--json")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn the_stream_and_the_download_carry_the_daemons_signed_heads() {
    let dir = TempDir::new("page-signed");
    // A small page budget: the download streams several pages.
    let (d, mut alice, mut bob, cid) = table_with(&dir, "signed", "max_sync_bytes = 65536\n").await;
    let pad = "x".repeat(20_000);
    for i in 0..5 {
        alice
            .ok(
                "post_message",
                json!({"channel_id": cid, "body": {"n": i, "pad": pad}}),
            )
            .await;
    }
    let private = alice
        .ok(
            "post_message",
            json!({"channel_id": cid, "body": "my bid is 450-SECRET", "to": ["bob"]}),
        )
        .await["seq"]
        .as_i64()
        .unwrap();
    let keys: Value = reqwest::get(format!("{}/.well-known/mcp-multiplayer/keys.json", d.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let shared = bob.ok("share_channel", json!({"channel_id": cid})).await;
    let http = browser();
    let cookie = open_link(&http, shared["url"].as_str().unwrap()).await;

    // The page itself carries the head at the last entry it renders (the
    // page budget holds fewer than all of them here)...
    let (_, _, html) = get(&http, &format!("{}/c/{cid}", d.base), &cookie).await;
    let attr = html
        .split("data-head=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let head: Value = serde_json::from_str(&attr.replace("&quot;", "\"")).unwrap();
    assert_eq!(head["channel_id"], cid.as_str());
    let rendered = head["seq"].as_i64().unwrap();
    assert!(html.contains(&format!("id=\"m-{rendered}\"")));
    assert!(!html.contains(&format!("id=\"m-{}\"", rendered + 1)));

    // ...and every batch of the stream ends with one at its last entry.
    let stream = format!("{}/c/{cid}/events", d.base);
    let mut ev = Events::open(&http, &stream, &cookie, None).await;
    let msgs = ev.messages_upto(private).await;
    let later = alice
        .ok("post_message", json!({"channel_id": cid, "body": "live"}))
        .await["seq"]
        .as_i64()
        .unwrap();
    let live = ev.messages_upto(later).await;
    // The live message's head comes before the next message.
    alice
        .ok("post_message", json!({"channel_id": cid, "body": "flush"}))
        .await;
    ev.next().await.unwrap();
    let stream_heads = std::mem::take(&mut ev.heads);
    drop(ev);
    let seqs: Vec<i64> = stream_heads
        .iter()
        .map(|h| h["seq"].as_i64().unwrap())
        .collect();
    assert!(seqs.contains(&private) && seqs.contains(&later), "{seqs:?}");
    // The offline verifier accepts what the page received, each head signed
    // by the published key over its entry's chain hash: the stream's
    // entries with its heads, and the rendered page's head.
    let received = |entries: Vec<Value>, heads: Vec<Value>| {
        json!({
            "format": "mcp-multiplayer-transcript", "version": 1,
            "exported_at": "2026-01-01T00:00:00.000Z", "exported_as": "spectator",
            "channel": {"channel_id": cid, "name": "signed", "created_at": "2026-01-01T00:00:00.000Z",
                        "closed": false, "allow_network": false, "slots": []},
            "entries": entries, "bots": [], "signed_heads": heads,
            "keys": keys["keys"], "replay": {},
        })
    };
    let streamed: Vec<Value> = msgs.iter().chain(&live).cloned().collect();
    let (code, report) = verify_file(
        &dir,
        "stream.json",
        &received(streamed, stream_heads.clone()),
    );
    assert_eq!(code, 0, "{report}");
    let (code, report) = verify_file(
        &dir,
        "rendered.json",
        &received(
            msgs[..usize::try_from(rendered).unwrap()].to_vec(),
            vec![head.clone()],
        ),
    );
    assert_eq!(code, 0, "{report}");
    // The same head with its signature altered is refused.
    let mut forged = head.clone();
    let sig = forged["signature"].as_str().unwrap().to_string();
    let flipped = if sig.starts_with('A') { "B" } else { "A" };
    forged["signature"] = json!(format!("{flipped}{}", &sig[1..]));
    let (code, report) = verify_file(
        &dir,
        "forged.json",
        &received(
            msgs[..usize::try_from(rendered).unwrap()].to_vec(),
            vec![forged],
        ),
    );
    assert_eq!(code, 1, "{report}");
    // (With no valid head left, nothing from seq 1 on is vouched for.)
    assert_eq!(report["first_bad_seq"], 1, "{report}");
    assert!(
        report.to_string().contains("the signature is not valid"),
        "{report}"
    );

    // The download is the export: the same format and checks as
    // `export_transcript`, as a spectator sees the channel.
    let r = http
        .get(format!("{}/c/{cid}/export", d.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-security-policy"], CSP);
    assert_eq!(
        r.headers()["content-disposition"],
        format!("attachment; filename=\"{cid}.transcript.json\"").as_str()
    );
    let spectators: Value = r.json().await.unwrap();
    assert_eq!(spectators["format"], "mcp-multiplayer-transcript");
    assert_eq!(spectators["exported_as"], "spectator");
    assert!(spectators.get("page").is_none(), "streamed whole");
    let entries = spectators["entries"].as_array().unwrap();
    let p = &entries[usize::try_from(private - 1).unwrap()];
    assert_eq!(p["redacted"], true, "{p}");
    assert!(p.get("body").is_none() && p.get("body_salt").is_none());
    assert!(
        !spectators.to_string().contains("450-SECRET"),
        "a private body leaked"
    );
    assert_eq!(spectators["keys"], keys["keys"]);
    let heads = spectators["signed_heads"].as_array().unwrap();
    assert_eq!(heads.last().unwrap()["seq"], entries.last().unwrap()["seq"]);
    assert!(heads.len() >= 3, "one per page at least: {}", heads.len());
    let (code, report) = verify_file(&dir, "spectator.json", &spectators);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["verified"], true);

    // A member's page downloads the channel as their seat reads it.
    let mine = bob
        .ok(
            "share_channel",
            json!({"channel_id": cid, "audience": "me"}),
        )
        .await;
    let member = open_link(&http, mine["url"].as_str().unwrap()).await;
    let (s, _, body) = get(&http, &format!("{}/c/{cid}/export", d.base), &member).await;
    assert_eq!(s, 200);
    let bobs: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(bobs["exported_as"], "bob");
    assert!(body.contains("450-SECRET"), "bob reads his private message");
    let hashes = |d: &Value| -> Vec<Value> {
        d["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["hash"].clone())
            .collect()
    };
    assert_eq!(hashes(&bobs), hashes(&spectators), "one chain, two views");
    let (code, report) = verify_file(&dir, "bob.json", &bobs);
    assert_eq!(code, 0, "{report}");

    // A revoked link downloads nothing.
    alice.ok("revoke_shares", json!({"channel_id": cid})).await;
    for c in [&cookie, &member] {
        let (s, _, body) = get(&http, &format!("{}/c/{cid}/export", d.base), c).await;
        assert_eq!(s, 403);
        assert!(!body.contains("entries"));
    }
}

/// The attack (red team F1) over every read a new holder of a kicked seat
/// has through the real daemon: alice (admin and player) kicks bob after he
/// sent a private message, redeems his fresh invite herself and reads as
/// the seat "bob" through `sync_messages`, `export_transcript`, the HTTP
/// export, and the channel page opened as that seat (HTML, event stream,
/// download). Stopped by the kick's seal (`slots.private_from`) that
/// `rules::SeatReader` applies in every one of those reads; the sealed
/// entries keep their `body_hash` and the page's own signed heads.
#[tokio::test]
async fn a_kicked_seats_next_holder_reads_none_of_its_private_history_on_any_path() {
    let dir = TempDir::new("page-kicked");
    let ta = create_token(dir.path(), "alice");
    let tb = create_token(dir.path(), "bob");
    let d = Daemon::start(dir.path(), &[]);
    let mut alice = Mcp::connect(&d.mcp_url(), Some(&ta)).await;
    let mut bob = Mcp::connect(&d.mcp_url(), Some(&tb)).await;
    let created = alice
        .ok(
            "create_channel",
            json!({"name": "kick", "slots": ["invite:alice", "invite:bob", "invite:carol"], "join_as": "alice"}),
        )
        .await;
    let cid = created["channel_id"].as_str().unwrap().to_string();
    assert_eq!(created["invites"][0]["slot"], "bob");
    let invite = created["invites"][0]["invite_code"].as_str().unwrap();
    bob.ok("join_channel", json!({"invite_code": invite})).await;
    let secret = "bobs-sealed-bid-4711";
    let sent = bob
        .ok(
            "post_message",
            json!({"channel_id": cid, "body": {"bid": secret}, "to": ["carol"]}),
        )
        .await;
    let secret_seq = sent["seq"].as_i64().unwrap();
    let before = bob
        .ok("export_transcript", json!({"channel_id": cid}))
        .await;
    assert!(
        before.to_string().contains(secret),
        "bob reads what he sent"
    );
    let kicked = alice
        .ok(
            "update_channel",
            json!({"channel_id": cid, "op": "kick", "slot": "bob"}),
        )
        .await;
    let code = kicked["invite"]["invite_code"].as_str().unwrap();
    let joined = alice.ok("join_channel", json!({"invite_code": code})).await;
    assert_eq!(joined["slot"], "bob");
    let sealed = |v: &Value| !v.to_string().contains(secret);
    // As herself alice never could read it.
    let mine = alice
        .ok(
            "sync_messages",
            json!({"channel_id": cid, "slot": "alice", "cursor": 0, "wait_ms": 0}),
        )
        .await;
    assert!(sealed(&mine));
    let as_bob = alice
        .ok(
            "sync_messages",
            json!({"channel_id": cid, "slot": "bob", "cursor": 0, "wait_ms": 0}),
        )
        .await;
    let entry = as_bob["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["seq"] == secret_seq)
        .unwrap()
        .clone();
    assert!(
        entry["body"].is_null() && entry["redacted"] == true,
        "{entry}"
    );
    assert!(entry["body_hash"].as_str().unwrap().starts_with("sha256:"));
    let export = alice
        .ok(
            "export_transcript",
            json!({"channel_id": cid, "slot": "bob"}),
        )
        .await;
    assert_eq!(export["exported_as"], "bob");
    let http = reqwest::Client::new();
    let r = http
        .get(format!("{}/channels/{cid}/export?slot=bob", d.base))
        .bearer_auth(&ta)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let http_export: Value = r.json().await.unwrap();
    let link = alice
        .ok(
            "share_channel",
            json!({"channel_id": cid, "audience": "me", "slot": "bob"}),
        )
        .await;
    assert_eq!(link["seat"], "bob");
    let browser = browser();
    let cookie = open_link(&browser, link["url"].as_str().unwrap()).await;
    let (s, _, html) = get(&browser, &format!("{}/c/{cid}", d.base), &cookie).await;
    assert_eq!(s, 200);
    assert!(html.contains("viewing as bob"));
    let (s, _, download) = get(&browser, &format!("{}/c/{cid}/export", d.base), &cookie).await;
    assert_eq!(s, 200);
    let mut events = Events::open(
        &browser,
        &format!("{}/c/{cid}/events", d.base),
        &cookie,
        None,
    )
    .await;
    let head = as_bob["cursor"].as_i64().unwrap();
    let streamed = events.messages_upto(head).await;
    for (path, v) in [
        ("sync_messages", as_bob.clone()),
        ("export_transcript", export.clone()),
        ("GET /channels/{id}/export", http_export),
        (
            "the page's download",
            serde_json::from_str(&download).unwrap(),
        ),
        ("the page's event stream", Value::Array(streamed)),
    ] {
        assert!(
            sealed(&v),
            "{path} shows bob's private message to its next holder"
        );
    }
    assert!(!html.contains(secret), "the page opened as the seat");
}
