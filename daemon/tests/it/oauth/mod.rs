//! The OAuth 2.1 authorization server, over real HTTP against a real daemon.
//!
//! The `oauth2` crate plays a real client where a flow should succeed; raw
//! `reqwest` exchanges send what a good client never would. Every negative
//! test asserts the refusal on the wire (status, RFC 6749 error code), and
//! where a refusal must have side effects (a replayed code, a reused refresh
//! token) that the tokens it concerns stop working at `/mcp`.
//!
//! Expiry is tested without sleeping through config knobs: `code_ttl_secs = 0`
//! makes every code expire at once, `refresh_grace_secs = 0` closes the
//! refresh grace window at once.
//!
//! Submodules: `native` (redirect URIs, and the exact requests of VS Code and
//! Cursor), `abuse` (floods, forged forwarded headers, passphrase guessing,
//! out-of-band approval), `cimd` (client metadata documents, served by a
//! document server on loopback).

mod abuse;
mod cimd;
mod native;

use crate::util::*;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use oauth2::basic::BasicClient;
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge, RedirectUrl,
    TokenResponse, TokenUrl,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

const REDIRECT: &str = "http://127.0.0.1:9/callback";

/// An HTTP client that never follows redirects: the tests read `Location`.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Like [`http`], but connecting from another loopback address
/// (127.0.0.0/8 is all loopback on Linux): a different peer to the daemon.
fn http_from(last_octet: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(std::net::IpAddr::from([127, 0, 0, last_octet]))
        .build()
        .unwrap()
}

/// The `oauth2` crate's HTTP hook, backed by reqwest, no redirects.
async fn send(req: oauth2::HttpRequest) -> Result<oauth2::HttpResponse, reqwest::Error> {
    let (parts, body) = req.into_parts();
    let resp = http()
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await?;
    let mut out = oauth2::http::Response::builder().status(resp.status());
    for (k, v) in resp.headers() {
        out = out.header(k, v);
    }
    let body = resp.bytes().await?.to_vec();
    Ok(out.body(body).unwrap())
}

/// A config file with `[auth]` settings; returns `--config PATH` args.
fn config(dir: &Path, auth: &str) -> Vec<String> {
    let p = dir.join("config.toml");
    std::fs::write(&p, format!("[auth]\n{auth}\n")).unwrap();
    vec!["--config".into(), p.display().to_string()]
}

fn start(dir: &TempDir, extra: &[String]) -> Daemon {
    let args: Vec<&str> = extra.iter().map(String::as_str).collect();
    Daemon::start(dir.path(), &args)
}

/// A fresh PKCE pair (verifier, S256 challenge).
fn pkce() -> (String, String) {
    let verifier = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

async fn register(d: &Daemon, body: Value) -> (u16, Value) {
    let r = http()
        .post(format!("{}/register", d.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// Registers a client with the test redirect URI and `method`.
async fn client(d: &Daemon, method: &str) -> (String, Option<String>) {
    let (s, v) = register(
        d,
        json!({"client_name": "it", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": method}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    (
        v["client_id"].as_str().unwrap().to_string(),
        v["client_secret"].as_str().map(str::to_string),
    )
}

/// GETs `/authorize` with `params`; returns (status, Location, body).
async fn authorize(d: &Daemon, params: &[(&str, &str)]) -> (u16, Option<url::Url>, String) {
    let r = http()
        .get(format!("{}/authorize", d.base))
        .query(params)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let loc = r
        .headers()
        .get("location")
        .map(|l| url::Url::parse(l.to_str().unwrap()).unwrap());
    (status, loc, r.text().await.unwrap())
}

fn query(u: &url::Url, k: &str) -> Option<String> {
    u.query_pairs()
        .find(|(n, _)| n == k)
        .map(|(_, v)| v.into_owned())
}

/// A code for a public client through `auto` approval.
async fn code_for(d: &Daemon, client_id: &str, challenge: &str) -> String {
    let (s, loc, body) = authorize(
        d,
        &[
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", REDIRECT),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256"),
            ("state", "st"),
        ],
    )
    .await;
    assert_eq!(s, 302, "{body}");
    let loc = loc.unwrap();
    assert_eq!(query(&loc, "state").as_deref(), Some("st"));
    // RFC 9207: the issuer, exactly as the metadata names it.
    assert_eq!(query(&loc, "iss").as_deref(), Some(d.base.as_str()));
    query(&loc, "code").unwrap()
}

/// POSTs a form to `/token`; returns (status, body, Cache-Control).
async fn token(d: &Daemon, form: &[(&str, &str)]) -> (u16, Value, String) {
    let r = http()
        .post(format!("{}/token", d.base))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let cc = r
        .headers()
        .get("cache-control")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, r.json().await.unwrap(), cc)
}

/// A public client's tokens: (client_id, token response).
async fn signed_in(d: &Daemon) -> (String, Value) {
    let (cid, _) = client(d, "none").await;
    let (verifier, challenge) = pkce();
    let code = code_for(d, &cid, &challenge).await;
    let (s, v, _) = token(
        d,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", &verifier),
            ("client_id", &cid),
            ("redirect_uri", REDIRECT),
        ],
    )
    .await;
    assert_eq!(s, 200, "{v}");
    (cid, v)
}

async fn refresh(d: &Daemon, cid: &str, rt: &str) -> (u16, Value) {
    let (s, v, _) = token(
        d,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt),
            ("client_id", cid),
        ],
    )
    .await;
    (s, v)
}

/// Status and `WWW-Authenticate` of a `/mcp` request with `token`.
async fn mcp_status(d: &Daemon, token: &str) -> (u16, String) {
    let r = reqwest::Client::new()
        .post(d.mcp_url())
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"it","version":"0"}}}"#)
        .send()
        .await
        .unwrap();
    let h = r
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (r.status().as_u16(), h)
}

fn assert_invalid_token(status_and_header: (u16, String)) {
    assert_eq!(status_and_header.0, 401);
    assert!(
        status_and_header.1.contains("error=\"invalid_token\""),
        "{}",
        status_and_header.1
    );
}

fn s(v: &Value, k: &str) -> String {
    v[k].as_str()
        .unwrap_or_else(|| panic!("{k} in {v}"))
        .to_string()
}

// ---------------------------------------------------------------- snapshots

fn snapshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/snapshots")
}

/// Compares `actual` with the committed snapshot `name` (the daemon's port
/// replaced by `PORT`). `UPDATE_SNAPSHOTS=1` rewrites it instead.
fn check_snapshot(name: &str, actual: &str) {
    let path = snapshot_dir().join(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(snapshot_dir()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_SNAPSHOTS=1 writes it)", path.display()));
    assert_eq!(
        actual,
        expected,
        "the wire changed: {} (UPDATE_SNAPSHOTS=1 accepts it)",
        path.display()
    );
}

#[tokio::test]
async fn discovery_documents_and_challenge_match_snapshots() {
    let dir = TempDir::new("oauth-snap");
    let d = start(&dir, &[]);
    let normalise = |s: String| s.replace(&d.base, "http://127.0.0.1:PORT");
    let doc = |path: &'static str| {
        let url = format!("{}{path}", d.base);
        async move {
            let r = reqwest::get(url).await.unwrap();
            assert_eq!(r.status(), 200, "{path}");
            assert!(
                r.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("application/json")
            );
            let v: Value = r.json().await.unwrap();
            serde_json::to_string_pretty(&v).unwrap() + "\n"
        }
    };
    let prm = doc("/.well-known/oauth-protected-resource/mcp").await;
    assert_eq!(prm, doc("/.well-known/oauth-protected-resource").await);
    let v: Value = serde_json::from_str(&prm).unwrap();
    assert_eq!(
        v["resource"],
        json!(d.mcp_url()),
        "resource = PUBLIC_URL/mcp exactly"
    );
    check_snapshot("oauth-protected-resource.json", &normalise(prm));

    let asm = doc("/.well-known/oauth-authorization-server").await;
    let v: Value = serde_json::from_str(&asm).unwrap();
    assert_eq!(v["issuer"], json!(d.base), "issuer = the origin");
    assert_eq!(v["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(
        v["authorization_response_iss_parameter_supported"],
        json!(true)
    );
    assert_eq!(v["client_id_metadata_document_supported"], json!(true));
    check_snapshot("oauth-authorization-server.json", &normalise(asm));

    let (_, without) = {
        let r = reqwest::Client::new()
            .post(d.mcp_url())
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        (
            (),
            r.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .to_string(),
        )
    };
    let (status, with_bad) = mcp_status(&d, "mcpmp_at_not-a-token").await;
    assert_eq!(status, 401);
    check_snapshot(
        "www-authenticate.txt",
        &normalise(format!("no token: {without}\nbad token: {with_bad}\n")),
    );
}

// ------------------------------------------------------------ happy paths

#[tokio::test]
async fn oauth2_crate_client_signs_in_calls_tools_refreshes_and_keeps_its_seat() {
    let dir = TempDir::new("oauth-flow");
    let d = start(&dir, &[]);
    // A confidential client using HTTP Basic, the oauth2 crate's default.
    let (cid, secret) = client(&d, "client_secret_basic").await;
    let secret = secret.unwrap();
    let oc = BasicClient::new(ClientId::new(cid.clone()))
        .set_client_secret(ClientSecret::new(secret.clone()))
        .set_auth_uri(AuthUrl::new(format!("{}/authorize", d.base)).unwrap())
        .set_token_uri(TokenUrl::new(format!("{}/token", d.base)).unwrap())
        .set_redirect_uri(RedirectUrl::new(REDIRECT.into()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf) = oc
        .authorize_url(CsrfToken::new_random)
        .set_pkce_challenge(challenge)
        .add_extra_param("resource", d.mcp_url())
        .url();
    let r = http().get(url.as_str()).send().await.unwrap();
    assert_eq!(r.status(), 302);
    let loc = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    assert!(loc.as_str().starts_with(REDIRECT), "{loc}");
    assert_eq!(
        query(&loc, "state").as_deref(),
        Some(csrf.secret().as_str())
    );
    let code = query(&loc, "code").unwrap();
    assert!(code.starts_with("mcpmp_code_"));
    let code_seen = code.clone();

    let tok = oc
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(verifier)
        .add_extra_param("resource", d.mcp_url())
        .request_async(&send)
        .await
        .unwrap();
    let access = tok.access_token().secret().clone();
    let expires = tok.expires_in().unwrap().as_secs();
    assert!(
        (3590..=3600).contains(&expires),
        "1 h default, got {expires}"
    );
    let rt = tok.refresh_token().unwrap().clone();

    let mut c = Mcp::connect(&d.mcp_url(), Some(&access)).await;
    let ch = c
        .ok(
            "create_channel",
            json!({"name": "oauth", "slots": ["invite:alice", "invite:bob"], "join_as": "alice"}),
        )
        .await;
    let channel = s(&ch, "channel_id");

    // Refresh: a new access token for the same principal, which still holds
    // its seat — from a fresh MCP session, as a reconnecting client would.
    let tok2 = oc
        .exchange_refresh_token(&rt)
        .request_async(&send)
        .await
        .unwrap();
    let access2 = tok2.access_token().secret().clone();
    assert_ne!(access2, access);
    let mut c2 = Mcp::connect(&d.mcp_url(), Some(&access2)).await;
    let mine = c2.ok("list_channels", json!({})).await;
    assert!(
        mine.to_string().contains(&channel),
        "the seat stays with the grant across refresh: {mine}"
    );
    c2.ok(
        "post_message",
        json!({"channel_id": channel, "body": "still me"}),
    )
    .await;

    // Revoking the current refresh token (RFC 7009, HTTP Basic; the oauth2
    // crate refuses a plain-http revocation URL) revokes the whole grant.
    let rt2 = tok2.refresh_token().unwrap().secret().clone();
    let r = http()
        .post(format!("{}/revoke", d.base))
        .basic_auth(&cid, Some(&secret))
        .form(&[
            ("token", rt2.as_str()),
            ("token_type_hint", "refresh_token"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_invalid_token(mcp_status(&d, &access2).await);
    assert_invalid_token(mcp_status(&d, &access).await);

    // None of the secrets reached the log.
    let log = std::fs::read_to_string(&d.stderr_log).unwrap();
    assert!(log.contains("tokens issued"), "the flow was logged");
    for secret in [&access, &access2, &secret, rt.secret(), &rt2, &code_seen] {
        assert!(!log.contains(secret.as_str()), "a secret is in the log");
    }
}

#[tokio::test]
async fn claude_ai_registration_replayed_exactly() {
    let dir = TempDir::new("oauth-claude");
    let d = start(&dir, &[]);
    // The body claude.ai sends (CLIENTS.md), byte for byte.
    let body = r#"{"client_name":"Claude","redirect_uris":["https://claude.ai/api/mcp/auth_callback"],"grant_types":["authorization_code","refresh_token"],"response_types":["code"],"token_endpoint_auth_method":"client_secret_post"}"#;
    let r = http()
        .post(format!("{}/register", d.base))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["client_name"], "Claude");
    assert_eq!(
        v["redirect_uris"],
        json!(["https://claude.ai/api/mcp/auth_callback"])
    );
    assert_eq!(
        v["grant_types"],
        json!(["authorization_code", "refresh_token"])
    );
    assert_eq!(v["response_types"], json!(["code"]));
    assert_eq!(v["token_endpoint_auth_method"], "client_secret_post");
    assert_eq!(v["client_secret_expires_at"], json!(0));
    assert!(v["client_id_issued_at"].is_i64(), "integer timestamp: {v}");
    let cid = s(&v, "client_id");
    let secret = s(&v, "client_secret");

    let (verifier, challenge) = pkce();
    let cb = "https://claude.ai/api/mcp/auth_callback";
    let (st, loc, _) = authorize(
        &d,
        &[
            ("response_type", "code"),
            ("client_id", &cid),
            ("redirect_uri", cb),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("state", "claude-state"),
            ("scope", "claudeai"),
        ],
    )
    .await;
    assert_eq!(st, 302);
    let loc = loc.unwrap();
    assert_eq!(
        format!(
            "{}://{}{}",
            loc.scheme(),
            loc.host_str().unwrap(),
            loc.path()
        ),
        cb
    );
    assert_eq!(query(&loc, "state").as_deref(), Some("claude-state"));
    let code = query(&loc, "code").unwrap();
    // No resource anywhere (older flows): the canonical one is bound.
    let (st, tok, cc) = token(
        &d,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", &verifier),
            ("redirect_uri", cb),
            ("client_id", &cid),
            ("client_secret", &secret),
        ],
    )
    .await;
    assert_eq!(st, 200, "{tok}");
    assert_eq!(cc, "no-store");
    assert_eq!(tok["token_type"], "Bearer");
    let mut c = Mcp::connect(&d.mcp_url(), Some(&s(&tok, "access_token"))).await;
    c.ok("list_channels", json!({})).await;

    // claude.com's callback registers too.
    let (st, _) = register(
        &d,
        json!({"client_name":"Claude","redirect_uris":["https://claude.com/api/mcp/auth_callback"],"grant_types":["authorization_code","refresh_token"],"response_types":["code"],"token_endpoint_auth_method":"client_secret_post"}),
    )
    .await;
    assert_eq!(st, 201);
}

// ---------------------------------------------------------- PKCE and codes

#[tokio::test]
async fn pkce_is_mandatory_and_s256_only() {
    let dir = TempDir::new("oauth-pkce");
    let d = start(&dir, &[]);
    let (cid, _) = client(&d, "none").await;
    let (verifier, challenge) = pkce();
    let base = [
        ("response_type", "code"),
        ("client_id", cid.as_str()),
        ("redirect_uri", REDIRECT),
        ("state", "s1"),
    ];
    let cases: [(&str, Vec<(&str, &str)>); 3] = [
        ("missing challenge", vec![]),
        (
            "plain",
            vec![
                ("code_challenge", verifier.as_str()),
                ("code_challenge_method", "plain"),
            ],
        ),
        (
            "missing method",
            vec![("code_challenge", challenge.as_str())],
        ),
    ];
    for (what, extra) in cases {
        let mut params = base.to_vec();
        params.extend(extra);
        let (st, loc, _) = authorize(&d, &params).await;
        assert_eq!(st, 302, "{what}");
        let loc = loc.unwrap();
        assert!(loc.as_str().starts_with(REDIRECT), "{what}: {loc}");
        assert_eq!(
            query(&loc, "error").as_deref(),
            Some("invalid_request"),
            "{what}"
        );
        assert_eq!(query(&loc, "state").as_deref(), Some("s1"), "{what}");
        assert_eq!(
            query(&loc, "iss").as_deref(),
            Some(d.base.as_str()),
            "{what}"
        );
        assert!(query(&loc, "code").is_none(), "{what}: no code");
    }
    // No verifier at the token endpoint: refused.
    let code = code_for(&d, &cid, &challenge).await;
    let (st, v, cc) = token(
        &d,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", &cid),
        ],
    )
    .await;
    assert_eq!((st, s(&v, "error").as_str()), (400, "invalid_request"));
    assert_eq!(cc, "no-store");
}

#[tokio::test]
async fn wrong_verifier_is_refused_and_burns_the_code() {
    let dir = TempDir::new("oauth-verifier");
    let d = start(&dir, &[]);
    let (cid, _) = client(&d, "none").await;
    let (verifier, challenge) = pkce();
    let (other, _) = pkce();
    let code = code_for(&d, &cid, &challenge).await;
    let exchange = |v: String| {
        let (code, cid) = (code.clone(), cid.clone());
        let d = &d;
        async move {
            token(
                d,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("code_verifier", &v),
                    ("redirect_uri", REDIRECT),
                    ("client_id", &cid),
                ],
            )
            .await
        }
    };
    let (st, v, _) = exchange(other).await;
    assert_eq!((st, s(&v, "error").as_str()), (400, "invalid_grant"));
    assert!(s(&v, "error_description").contains("code_verifier"), "{v}");
    // The right verifier now comes too late: the code is spent.
    let (st, v, _) = exchange(verifier).await;
    assert_eq!((st, s(&v, "error").as_str()), (400, "invalid_grant"));
}

/// Attack (red-team F5): a code issued to an explicit `redirect_uri` is
/// redeemed without naming it. Stopped by `grants::exchange_code`, which
/// requires it when the authorization request carried one (OAuth 2.1
/// §4.1.3; `oauth_codes.redirect_uri_given`). A client whose authorization
/// request left it out (its only registered URI) may leave it out here too.
#[tokio::test]
async fn a_code_issued_to_a_named_redirect_uri_needs_it_at_the_token_endpoint() {
    let dir = TempDir::new("oauth-redirect-required");
    let d = start(&dir, &[]);
    let (cid, _) = client(&d, "none").await;
    let (verifier, challenge) = pkce();
    let code = code_for(&d, &cid, &challenge).await;
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("code_verifier", verifier.as_str()),
        ("client_id", cid.as_str()),
    ];
    let (st, v, _) = token(&d, &form).await;
    assert_eq!(
        (st, s(&v, "error").as_str()),
        (400, "invalid_request"),
        "{v}"
    );
    assert!(
        s(&v, "error_description").contains("redirect_uri is missing"),
        "{v}"
    );
    // The code is used up by the attempt, like any presentation.
    form.push(("redirect_uri", REDIRECT));
    let (st, v, _) = token(&d, &form).await;
    assert_eq!((st, s(&v, "error").as_str()), (400, "invalid_grant"), "{v}");

    // Left out of both requests: the client's only redirect URI, fine.
    let (verifier, challenge) = pkce();
    let (st, loc, body) = authorize(
        &d,
        &[
            ("response_type", "code"),
            ("client_id", &cid),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    )
    .await;
    assert_eq!(st, 302, "{body}");
    let code = query(&loc.unwrap(), "code").unwrap();
    let (st, v, _) = token(
        &d,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", &verifier),
            ("client_id", &cid),
        ],
    )
    .await;
    assert_eq!(st, 200, "{v}");
}

#[tokio::test]
async fn reused_code_is_refused_and_revokes_what_it_issued() {
    let dir = TempDir::new("oauth-reuse");
    let d = start(&dir, &[]);
    let (cid, _) = client(&d, "none").await;
    let (verifier, challenge) = pkce();
    let code = code_for(&d, &cid, &challenge).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("code_verifier", verifier.as_str()),
        ("redirect_uri", REDIRECT),
        ("client_id", cid.as_str()),
    ];
    let (st, first, _) = token(&d, &form).await;
    assert_eq!(st, 200);
    let access = s(&first, "access_token");
    assert_eq!(mcp_status(&d, &access).await.0, 200);
    let (st, v, _) = token(&d, &form).await;
    assert_eq!((st, s(&v, "error").as_str()), (400, "invalid_grant"));
    assert!(s(&v, "error_description").contains("already used"), "{v}");
    // RFC 6749 §4.1.2: what the code issued is revoked.
    assert_invalid_token(mcp_status(&d, &access).await);
    let (st, v) = refresh(&d, &cid, &s(&first, "refresh_token")).await;
    assert_eq!((st, s(&v, "error").as_str()), (400, "invalid_grant"));
}

#[tokio::test]
async fn expired_code_is_refused() {
    let dir = TempDir::new("oauth-expired");
    let d = start(&dir, &config(dir.path(), "code_ttl_secs = 0"));
    let (cid, _) = client(&d, "none").await;
    let (verifier, challenge) = pkce();
    let code = code_for(&d, &cid, &challenge).await;
    let (st, v, _) = token(
        &d,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", &verifier),
            ("redirect_uri", REDIRECT),
            ("client_id", &cid),
        ],
    )
    .await;
    assert_eq!((st, s(&v, "error").as_str()), (400, "invalid_grant"));
    assert!(s(&v, "error_description").contains("expired"), "{v}");
}

// --------------------------------------------------------- redirect URIs

#[tokio::test]
async fn unregistered_redirect_or_unknown_client_is_an_error_page_never_a_redirect() {
    let dir = TempDir::new("oauth-redirect");
    let d = start(&dir, &[]);
    let (cid, _) = client(&d, "none").await;
    let (_, challenge) = pkce();
    for (what, client_id, redirect) in [
        ("other uri", cid.as_str(), "https://evil.example/callback"),
        (
            "prefix of the registered",
            cid.as_str(),
            "http://127.0.0.1:9/callback/x",
        ),
        // Any port is fine on loopback, but not another host or scheme.
        (
            "localhost for 127.0.0.1",
            cid.as_str(),
            "http://localhost:9/callback",
        ),
        (
            "[::1] for 127.0.0.1",
            cid.as_str(),
            "http://[::1]:9/callback",
        ),
        (
            "https for http",
            cid.as_str(),
            "https://127.0.0.1:9/callback",
        ),
        (
            "a query added",
            cid.as_str(),
            "http://127.0.0.1:9/callback?x=1",
        ),
        (
            "a fragment added",
            cid.as_str(),
            "http://127.0.0.1:9/callback#x",
        ),
        (
            "control characters",
            cid.as_str(),
            "http://127.0.0.1:9/call\nback",
        ),
        ("unknown client", "mcpmp_client_nope", REDIRECT),
    ] {
        let (st, loc, body) = authorize(
            &d,
            &[
                ("response_type", "code"),
                ("client_id", client_id),
                ("redirect_uri", redirect),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
                ("state", "s"),
            ],
        )
        .await;
        assert_eq!(st, 400, "{what}");
        assert!(loc.is_none(), "{what}: must not redirect");
        assert!(body.contains("<!doctype html>"), "{what}: an HTML page");
    }
}

#[tokio::test]
async fn registration_refuses_non_https_redirects() {
    let dir = TempDir::new("oauth-register");
    let d = start(&dir, &[]);
    for bad in [
        "http://example.com/callback",
        "http://192.168.1.2/callback",
        "javascript:alert(1)",
        "https://claude.ai/cb#fragment",
    ] {
        let (st, v) = register(&d, json!({"redirect_uris": [bad]})).await;
        assert_eq!(st, 400, "{bad}");
        assert_eq!(v["error"], "invalid_redirect_uri", "{bad}");
    }
    let (st, v) = register(&d, json!({"client_name": "x"})).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("invalid_redirect_uri"))
    );
    let (st, v) = register(
        &d,
        json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "private_key_jwt"}),
    )
    .await;
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("invalid_client_metadata"))
    );
    // Public clients get no secret; confidential ones default to Basic.
    let (st, v) = register(
        &d,
        json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}),
    )
    .await;
    assert_eq!(st, 201);
    assert!(v.get("client_secret").is_none(), "{v}");
    let (_, v) = register(&d, json!({"redirect_uris": ["http://localhost:1/cb"]})).await;
    assert_eq!(v["token_endpoint_auth_method"], "client_secret_basic");
    assert!(v["client_secret"].is_string());
}

// ------------------------------------------------------------ refresh tokens

#[tokio::test]
async fn refresh_reuse_after_the_grace_window_revokes_the_family() {
    let dir = TempDir::new("oauth-refresh-reuse");
    let d = start(&dir, &config(dir.path(), "refresh_grace_secs = 0"));
    let (cid, first) = signed_in(&d).await;
    let r1 = s(&first, "refresh_token");
    let (st, second) = refresh(&d, &cid, &r1).await;
    assert_eq!(st, 200, "{second}");
    let a2 = s(&second, "access_token");
    let r2 = s(&second, "refresh_token");
    assert_ne!(r1, r2, "refresh tokens rotate");
    assert_eq!(mcp_status(&d, &a2).await.0, 200);
    // r1 again, the window closed: a replay. The whole family goes.
    let (st, v) = refresh(&d, &cid, &r1).await;
    assert_eq!((st, s(&v, "error").as_str()), (400, "invalid_grant"));
    assert_invalid_token(mcp_status(&d, &a2).await);
    assert_invalid_token(mcp_status(&d, &s(&first, "access_token")).await);
    let (st, v) = refresh(&d, &cid, &r2).await;
    assert_eq!((st, s(&v, "error").as_str()), (400, "invalid_grant"));
}

#[tokio::test]
async fn concurrent_refreshes_within_the_grace_window_both_work() {
    let dir = TempDir::new("oauth-refresh-grace");
    let d = start(&dir, &[]);
    let (cid, first) = signed_in(&d).await;
    let r1 = s(&first, "refresh_token");
    // Two refreshes of one token at once, as claude.ai's two egress IPs do.
    let (a, b) = tokio::join!(refresh(&d, &cid, &r1), refresh(&d, &cid, &r1));
    assert_eq!((a.0, b.0), (200, 200), "{} {}", a.1, b.1);
    for v in [&a.1, &b.1] {
        assert_eq!(mcp_status(&d, &s(v, "access_token")).await.0, 200);
    }
    // Each successor keeps the family going.
    let (st, _) = refresh(&d, &cid, &s(&b.1, "refresh_token")).await;
    assert_eq!(st, 200);
}

/// Attack (red-team F4): a thief who redeems a just-rotated refresh token
/// inside the grace window gets a chain of its own that refreshes forever
/// beside the client's, and reuse detection never fires. Stopped by
/// `grants::refresh`: the first successor used supersedes the others (and
/// closes its parent's window), and a superseded token revokes the grant.
#[tokio::test]
async fn the_grace_window_never_forks_a_grant_into_two_live_chains() {
    let dir = TempDir::new("oauth-refresh-fork");
    let d = start(&dir, &[]);
    let (cid, first) = signed_in(&d).await;
    let r0 = s(&first, "refresh_token");
    let (st, legit) = refresh(&d, &cid, &r0).await;
    assert_eq!(st, 200, "{legit}");
    let (st, thief) = refresh(&d, &cid, &r0).await;
    assert_eq!(
        st, 200,
        "within the window the rotated token is still honoured"
    );
    // The client moves on first: the thief's successor is superseded.
    let (st, legit2) = refresh(&d, &cid, &s(&legit, "refresh_token")).await;
    assert_eq!(st, 200, "{legit2}");
    let (st, v) = refresh(&d, &cid, &s(&thief, "refresh_token")).await;
    assert_eq!((st, s(&v, "error").as_str()), (400, "invalid_grant"), "{v}");
    assert!(s(&v, "error_description").contains("superseded"), "{v}");
    // ...which revokes the grant: theft detected, both chains end.
    assert_invalid_token(mcp_status(&d, &s(&legit2, "access_token")).await);
    let (st, _) = refresh(&d, &cid, &s(&legit2, "refresh_token")).await;
    assert_eq!(st, 400);

    // Once a successor was used, its parent's window is closed too.
    let (cid, first) = signed_in(&d).await;
    let r0 = s(&first, "refresh_token");
    let (_, next) = refresh(&d, &cid, &r0).await;
    let (st, _) = refresh(&d, &cid, &s(&next, "refresh_token")).await;
    assert_eq!(st, 200);
    let (st, v) = refresh(&d, &cid, &r0).await;
    assert_eq!((st, s(&v, "error").as_str()), (400, "invalid_grant"), "{v}");
}

/// A client whose refresh response was lost retries with the same token
/// inside the grace window, and carries on with the second answer: the
/// successor it never received is the one superseded.
#[tokio::test]
async fn a_refresh_retried_after_a_lost_response_keeps_working() {
    let dir = TempDir::new("oauth-refresh-retry");
    let d = start(&dir, &[]);
    let (cid, first) = signed_in(&d).await;
    let r0 = s(&first, "refresh_token");
    let (st, _lost) = refresh(&d, &cid, &r0).await;
    assert_eq!(st, 200);
    let (st, retried) = refresh(&d, &cid, &r0).await;
    assert_eq!(st, 200, "{retried}");
    let mut rt = s(&retried, "refresh_token");
    for _ in 0..3 {
        let (st, v) = refresh(&d, &cid, &rt).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(mcp_status(&d, &s(&v, "access_token")).await.0, 200);
        rt = s(&v, "refresh_token");
    }
}

// ------------------------------------------------------------ revocation

#[tokio::test]
async fn revoked_access_token_is_refused() {
    let dir = TempDir::new("oauth-revoke");
    let d = start(&dir, &[]);
    let (cid, tok) = signed_in(&d).await;
    let access = s(&tok, "access_token");
    assert_eq!(mcp_status(&d, &access).await.0, 200);
    let r = http()
        .post(format!("{}/revoke", d.base))
        .form(&[
            ("token", access.as_str()),
            ("token_type_hint", "access_token"),
            ("client_id", cid.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_invalid_token(mcp_status(&d, &access).await);
    // An unknown token: still 200 (RFC 7009 §2.2).
    let r = http()
        .post(format!("{}/revoke", d.base))
        .form(&[("token", "mcpmp_at_unknown"), ("client_id", cid.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The refresh token was not revoked with the access token.
    let (st, _) = refresh(&d, &cid, &s(&tok, "refresh_token")).await;
    assert_eq!(st, 200);
}

/// Attack (red-team F1): a stolen access token turned into channel page
/// links — a spectator link, a one-time member link, and the member session
/// (cookie) a member link is exchanged for, which reads the seat's private
/// messages for twelve hours — kept working after the grant was revoked.
/// Stopped by `oauth::grants::revoke_family`, which revokes every page link
/// minted under the grant (`store::links::revoke_of_grant`, by the
/// `grant_id` each link records), and by `store::links::by_hash` reading a
/// link of a revoked grant as revoked. Checked for `/revoke` of the refresh
/// token and for `client revoke` on the command line.
#[tokio::test]
async fn revoking_a_grant_ends_the_page_links_and_sessions_it_minted() {
    let dir = TempDir::new("oauth-revoke-page");
    let d = start(&dir, &[]);
    let browser = http();
    let page = |url: &str, cookie: Option<&str>| {
        let mut r = browser.get(url);
        if let Some(c) = cookie {
            r = r.header("cookie", c);
        }
        r.send()
    };
    // What a thief holding the grant's access token mints.
    let mcp_url = d.mcp_url();
    let minted = |access: String| {
        let mcp_url = mcp_url.clone();
        async move {
            let mut mcp = Mcp::connect(&mcp_url, Some(&access)).await;
            let ch = mcp
                .ok(
                    "create_channel",
                    json!({"name": "private", "slots": ["invite:a", "invite:b"], "join_as": "a"}),
                )
                .await;
            let cid = s(&ch, "channel_id");
            let spectator = s(
                &mcp.ok("share_channel", json!({"channel_id": cid})).await,
                "url",
            );
            let me = json!({"channel_id": cid, "audience": "me"});
            let session_link = s(&mcp.ok("share_channel", me.clone()).await, "url");
            let unused_link = s(&mcp.ok("share_channel", me).await, "url");
            (cid, spectator, session_link, unused_link)
        }
    };
    let cookie_of = |r: &reqwest::Response| {
        assert_eq!(r.status(), 303);
        let set = r.headers()["set-cookie"].to_str().unwrap();
        set.split(';').next().unwrap().to_string()
    };

    for how in ["/revoke", "client revoke"] {
        let (cid, tok) = signed_in(&d).await;
        let (ch, spectator, session_link, unused_link) = minted(s(&tok, "access_token")).await;
        let view = format!("{}/c/{ch}", d.base);
        let spectator_cookie = cookie_of(&page(&spectator, None).await.unwrap());
        let session = cookie_of(&page(&session_link, None).await.unwrap());
        for c in [&spectator_cookie, &session] {
            assert_eq!(page(&view, Some(c)).await.unwrap().status(), 200, "{how}");
        }
        if how == "/revoke" {
            let r = http()
                .post(format!("{}/revoke", d.base))
                .form(&[
                    ("token", s(&tok, "refresh_token").as_str()),
                    ("token_type_hint", "refresh_token"),
                    ("client_id", cid.as_str()),
                ])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        } else {
            let out = daemon_cmd(dir.path())
                .args(["client", "revoke", &cid, "--state-dir"])
                .arg(dir.path())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert_invalid_token(mcp_status(&d, &s(&tok, "access_token")).await);
        for (what, c) in [
            ("spectator link", &spectator_cookie),
            ("member session", &session),
        ] {
            assert_eq!(
                page(&view, Some(c)).await.unwrap().status(),
                403,
                "{how}: the {what} outlived its grant"
            );
        }
        for (what, url) in [
            ("spectator link", &spectator),
            ("member link", &unused_link),
        ] {
            assert_ne!(
                page(url, None).await.unwrap().status(),
                303,
                "{how}: the {what} still opens the page"
            );
        }
    }
}

// ------------------------------------------------------------ audience

#[tokio::test]
async fn tokens_are_bound_to_this_resource() {
    let dir = TempDir::new("oauth-resource");
    let d = start(&dir, &[]);
    let (cid, _) = client(&d, "none").await;
    let (verifier, challenge) = pkce();
    // Asking for another resource at /authorize: invalid_target.
    let (st, loc, _) = authorize(
        &d,
        &[
            ("response_type", "code"),
            ("client_id", &cid),
            ("redirect_uri", REDIRECT),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("resource", "https://other.example/mcp"),
        ],
    )
    .await;
    assert_eq!(st, 302);
    assert_eq!(
        query(&loc.unwrap(), "error").as_deref(),
        Some("invalid_target")
    );
    // ...or at /token.
    let code = code_for(&d, &cid, &challenge).await;
    let (st, v, _) = token(
        &d,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", &verifier),
            ("redirect_uri", REDIRECT),
            ("client_id", &cid),
            ("resource", "https://other.example/mcp"),
        ],
    )
    .await;
    assert_eq!((st, s(&v, "error").as_str()), (400, "invalid_target"));

    // A token issued for this resource is refused by a server whose resource
    // is another (here: the same state, now published under another URL).
    let (_, tok) = signed_in(&d).await;
    let access = s(&tok, "access_token");
    assert_eq!(mcp_status(&d, &access).await.0, 200);
    drop(d);
    // (A non-loopback public_url defaults to passphrase approval; this test
    // only needs tokens checked, so it keeps auto.)
    let mut args = config(dir.path(), "approval = \"auto\"");
    args.extend(["--public-url".into(), "http://mcp.example.test".into()]);
    let moved = start(&dir, &args);
    assert_invalid_token(mcp_status(&moved, &access).await);
    // A CLI token (no audience) keeps working there.
    let cli = create_token(dir.path(), "ops");
    assert_eq!(mcp_status(&moved, &cli).await.0, 200);
}

#[tokio::test]
async fn garbage_bearer_is_invalid_token() {
    let dir = TempDir::new("oauth-garbage");
    let d = start(&dir, &[]);
    for garbage in [
        "x",
        "mcpmp_at_",
        "mcpmp_rt_AAAA",
        "Bearer",
        "%00%ff",
        "a b c",
    ] {
        let r = reqwest::Client::new()
            .post(d.mcp_url())
            .header("authorization", format!("Bearer {garbage}"))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{garbage}");
        let h = r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(h.contains("error=\"invalid_token\""), "{garbage}: {h}");
        assert!(h.contains("resource_metadata="), "{h}");
    }
    // A refresh token is not an access token.
    let (_, tok) = signed_in(&d).await;
    assert_invalid_token(mcp_status(&d, &s(&tok, "refresh_token")).await);
}

// --------------------------------------------------- client authentication

#[tokio::test]
async fn token_endpoint_authenticates_clients() {
    let dir = TempDir::new("oauth-clientauth");
    let d = start(&dir, &[]);
    let (cid, secret) = client(&d, "client_secret_post").await;
    let secret = secret.unwrap();
    let (verifier, challenge) = pkce();
    let code = code_for(&d, &cid, &challenge).await;
    let base = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("code_verifier", verifier.as_str()),
        ("redirect_uri", REDIRECT),
        ("client_id", cid.as_str()),
    ];
    // No secret, wrong secret: invalid_client, 401, and the code survives.
    let (st, v, _) = token(&d, &base).await;
    assert_eq!((st, s(&v, "error").as_str()), (401, "invalid_client"));
    let mut wrong = base.to_vec();
    wrong.push(("client_secret", "mcpmp_cs_wrong"));
    let (st, v, _) = token(&d, &wrong).await;
    assert_eq!((st, s(&v, "error").as_str()), (401, "invalid_client"));
    let r = http()
        .post(format!("{}/token", d.base))
        .basic_auth(&cid, Some("mcpmp_cs_wrong"))
        .form(&base)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    let mut right = base.to_vec();
    right.push(("client_secret", secret.as_str()));
    let (st, v, _) = token(&d, &right).await;
    assert_eq!(st, 200, "{v}");
    let (st, v, _) = token(
        &d,
        &[
            ("grant_type", "password"),
            ("client_id", &cid),
            ("client_secret", &secret),
        ],
    )
    .await;
    assert_eq!(
        (st, s(&v, "error").as_str()),
        (400, "unsupported_grant_type")
    );
}

// ------------------------------------------------------- passphrase mode

/// A daemon in passphrase mode with `pass` as the passphrase.
fn passphrase_daemon(dir: &TempDir, pass: &str) -> Daemon {
    let file = dir.path().join("passphrase");
    std::fs::write(&file, format!("{pass}\n")).unwrap();
    start(
        dir,
        &config(
            dir.path(),
            &format!(
                "approval = \"passphrase\"\npassphrase_file = {:?}",
                file.display().to_string()
            ),
        ),
    )
}

/// Opens the approval page; returns (request id, cookie header).
async fn approval_page(d: &Daemon, cid: &str, challenge: &str) -> (String, String) {
    let r = http()
        .get(format!("{}/authorize", d.base))
        .query(&[
            ("response_type", "code"),
            ("client_id", cid),
            ("redirect_uri", REDIRECT),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256"),
            ("state", "pp"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("location").is_none());
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let cookie = cookie.split(';').next().unwrap().to_string();
    let html = r.text().await.unwrap();
    assert!(
        html.contains("<strong>it</strong> asks"),
        "names the client"
    );
    assert!(html.contains("type=\"password\""));
    // Enter in the field submits with the first button: it must approve.
    assert!(html.find("value=\"approve\"").unwrap() < html.find("value=\"deny\"").unwrap());
    let id = html
        .split("name=\"request\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    (id, cookie)
}

async fn post_passphrase(
    d: &Daemon,
    id: &str,
    cookie: Option<&str>,
    pass: &str,
) -> reqwest::Response {
    let mut r = http().post(format!("{}/authorize", d.base)).form(&[
        ("request", id),
        ("passphrase", pass),
        ("decision", "approve"),
    ]);
    if let Some(c) = cookie {
        r = r.header("cookie", c);
    }
    r.send().await.unwrap()
}

#[tokio::test]
async fn passphrase_approval_accepts_the_right_one_only() {
    let dir = TempDir::new("oauth-pass");
    let d = passphrase_daemon(&dir, "correct horse battery staple");
    let (cid, _) = client(&d, "none").await;
    let (verifier, challenge) = pkce();
    let (id, cookie) = approval_page(&d, &cid, &challenge).await;

    let r = post_passphrase(&d, &id, Some(&cookie), "Correct horse battery staple").await;
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("location").is_none());
    assert!(r.text().await.unwrap().contains("Wrong passphrase"));
    // The right passphrase without the page's cookie (a cross-site POST).
    let r = post_passphrase(&d, &id, None, "correct horse battery staple").await;
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("location").is_none());

    let r = post_passphrase(&d, &id, Some(&cookie), "correct horse battery staple").await;
    assert_eq!(r.status(), 303);
    let loc = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(query(&loc, "state").as_deref(), Some("pp"));
    let code = query(&loc, "code").unwrap();
    let (st, tok, _) = token(
        &d,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", &verifier),
            ("redirect_uri", REDIRECT),
            ("client_id", &cid),
        ],
    )
    .await;
    assert_eq!(st, 200, "{tok}");
    assert_eq!(mcp_status(&d, &s(&tok, "access_token")).await.0, 200);
    // The request was consumed.
    let r = post_passphrase(&d, &id, Some(&cookie), "correct horse battery staple").await;
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn passphrase_mode_refuses_to_start_without_a_passphrase() {
    let dir = TempDir::new("oauth-nopass");
    let args = config(dir.path(), "approval = \"passphrase\"");
    let out = crate::util::daemon_cmd(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--state-dir"])
        .arg(dir.path())
        .args(&args)
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("MCP_MULTIPLAYER_PASSPHRASE_FILE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("passphrase_file"), "{err}");
}
