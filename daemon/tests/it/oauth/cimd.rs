//! Client ID Metadata Documents against a real daemon, with a document
//! server on loopback that counts what it is asked for. Fetching from
//! loopback over plain http is what the daemon refuses by default; these
//! tests turn on the test-only switch for it, except the one that checks the
//! refusal.

use super::*;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A document server: every path it serves, and how often each was asked.
struct Docs {
    base: String,
    hits: Arc<Mutex<HashMap<String, usize>>>,
}

impl Docs {
    async fn start() -> Docs {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let (b, h) = (base.clone(), hits.clone());
        let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
            let (base, hits) = (b.clone(), h.clone());
            async move {
                let path = uri.path().to_string();
                *hits.lock().unwrap().entry(path.clone()).or_default() += 1;
                serve(&base, &path)
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Docs { base, hits }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    fn total_hits(&self) -> usize {
        self.hits.lock().unwrap().values().sum()
    }
}

fn doc(id: &str, extra: Value) -> Value {
    let mut v = json!({"client_id": id, "client_name": "Doc Client", "redirect_uris": [REDIRECT]});
    if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
        o.extend(e);
    }
    v
}

fn serve(base: &str, path: &str) -> axum::response::Response {
    let me = format!("{base}{path}");
    let json_with = |v: Value, cache: &'static str| {
        let mut h = HeaderMap::new();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
        (h, axum::Json(v)).into_response()
    };
    match path {
        "/client.json" => json_with(doc(&me, json!({})), "public, max-age=600"),
        "/nostore.json" => json_with(doc(&me, json!({})), "no-store"),
        "/wrong-id.json" => json_with(doc(&format!("{base}/client.json"), json!({})), "max-age=60"),
        "/secret.json" => json_with(doc(&me, json!({"client_secret": "s3cret"})), "max-age=60"),
        "/confidential.json" => json_with(
            doc(
                &me,
                json!({"token_endpoint_auth_method": "client_secret_basic"}),
            ),
            "max-age=60",
        ),
        "/bad-redirect.json" => json_with(
            doc(&me, json!({"redirect_uris": ["javascript:alert(1)"]})),
            "max-age=60",
        ),
        "/big.json" => json_with(
            doc(&me, json!({"padding": "x".repeat(40 * 1024)})),
            "max-age=60",
        ),
        "/moved.json" => (StatusCode::FOUND, [(header::LOCATION, "/client.json")]).into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Config with the test-only switch (and `extra` lines).
fn with_switch(dir: &TempDir, extra: &str) -> Vec<String> {
    config(
        dir.path(),
        &format!("test_only_loopback_client_metadata = true\n{extra}"),
    )
}

async fn authorize_as(
    d: &Daemon,
    client_id: &str,
    challenge: &str,
) -> (u16, Option<url::Url>, String) {
    authorize(
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
    .await
}

#[tokio::test]
async fn a_client_known_by_its_metadata_document_signs_in_without_registering() {
    let docs = Docs::start().await;
    let dir = TempDir::new("oauth-cimd");
    let d = start(&dir, &with_switch(&dir, ""));
    let id = docs.url("/client.json");
    let (verifier, challenge) = pkce();
    let (st, loc, body) = authorize_as(&d, &id, &challenge).await;
    assert_eq!(st, 302, "{body}");
    let loc = loc.unwrap();
    assert!(loc.as_str().starts_with(REDIRECT));
    assert_eq!(query(&loc, "iss").as_deref(), Some(d.base.as_str()));
    let code = query(&loc, "code").unwrap();
    // A public client: client_id alone at the token endpoint.
    let (st, tok, _) = token(
        &d,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", &verifier),
            ("redirect_uri", REDIRECT),
            ("client_id", &id),
        ],
    )
    .await;
    assert_eq!(st, 200, "{tok}");
    assert_eq!(mcp_status(&d, &s(&tok, "access_token")).await.0, 200);
    let (st, v) = refresh(&d, &id, &s(&tok, "refresh_token")).await;
    assert_eq!(st, 200, "{v}");
    // A secret is refused: the document describes a public client.
    let (st, v, _) = token(
        &d,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &s(&v, "refresh_token")),
            ("client_id", &id),
            ("client_secret", "guess"),
        ],
    )
    .await;
    assert_eq!((st, s(&v, "error").as_str()), (401, "invalid_client"));

    // Fresh for 10 minutes (max-age=600): the next sign-in does not fetch.
    let (st, _, _) = authorize_as(&d, &id, &challenge).await;
    assert_eq!(st, 302);
    assert_eq!(docs.hits("/client.json"), 1, "cached by its max-age");
    // no-store: fetched every time.
    let nostore = docs.url("/nostore.json");
    for _ in 0..2 {
        let (st, _, body) = authorize_as(&d, &nostore, &challenge).await;
        assert_eq!(st, 302, "{body}");
    }
    assert_eq!(docs.hits("/nostore.json"), 2, "no-store is not reused");
    // A redirect URI the document does not list is refused as a page.
    let (st, loc, _) = authorize(
        &d,
        &[
            ("response_type", "code"),
            ("client_id", &id),
            ("redirect_uri", "http://127.0.0.1:9/elsewhere"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    )
    .await;
    assert_eq!(st, 400);
    assert!(loc.is_none());
}

/// Each document breaks one rule of the fetch or of the draft; the daemon
/// refuses the sign-in with a page that says which, and never redirects.
#[tokio::test]
async fn metadata_documents_that_break_the_rules_are_refused() {
    let docs = Docs::start().await;
    let dir = TempDir::new("oauth-cimd-bad");
    let d = start(&dir, &with_switch(&dir, ""));
    let (_, challenge) = pkce();
    for (path, reason) in [
        ("/wrong-id.json", "not the URL it was fetched from"),
        ("/secret.json", "must not contain a client secret"),
        ("/confidential.json", "must be none"),
        ("/bad-redirect.json", "never accepted"),
        ("/big.json", "larger than"),
        ("/moved.json", "redirects are not followed"),
        ("/missing.json", "404"),
    ] {
        let (st, loc, body) = authorize_as(&d, &docs.url(path), &challenge).await;
        assert_eq!(st, 400, "{path}: {body}");
        assert!(loc.is_none(), "{path}");
        assert!(body.contains(reason), "{path}: {body}");
    }
    assert_eq!(
        docs.hits("/client.json"),
        0,
        "the redirect was not followed"
    );
    // URLs the draft forbids are refused before any fetch.
    let before = docs.total_hits();
    for bad in [
        format!("{}/", docs.base),
        format!("{}/a/../client.json", docs.base),
        format!("{}/client.json#x", docs.base),
    ] {
        let (st, _, body) = authorize_as(&d, &bad, &challenge).await;
        assert_eq!(st, 400, "{bad}: {body}");
    }
    assert_eq!(docs.total_hits(), before);
}

/// The attack: a client_id URL that points the server at itself or its
/// network (SSRF). What stops it: https only, and the address check before
/// connecting (`cimd::fetch`); the test switch is off by default. The
/// document server is never contacted.
#[tokio::test]
async fn without_the_test_switch_loopback_and_plain_http_documents_are_never_fetched() {
    let docs = Docs::start().await;
    let dir = TempDir::new("oauth-cimd-ssrf");
    let d = start(&dir, &[]);
    let port = docs.base.rsplit(':').next().unwrap().to_string();
    let (_, challenge) = pkce();
    for (id, reason) in [
        (docs.url("/client.json"), "must use https"),
        (
            format!("https://127.0.0.1:{port}/client.json"),
            "private, loopback or reserved",
        ),
        (
            format!("https://localhost:{port}/client.json"),
            "private, loopback or reserved",
        ),
        (
            format!("https://[::1]:{port}/client.json"),
            "private, loopback or reserved",
        ),
        (
            "https://169.254.169.254/latest/meta-data.json".to_string(),
            "private, loopback or reserved",
        ),
        (
            "https://10.0.0.1/client.json".to_string(),
            "private, loopback or reserved",
        ),
    ] {
        let (st, loc, body) = authorize_as(&d, &id, &challenge).await;
        assert_eq!(st, 400, "{id}: {body}");
        assert!(loc.is_none());
        assert!(body.contains(reason), "{id}: {body}");
    }
    assert_eq!(docs.total_hits(), 0, "nothing reached the document server");
}

#[tokio::test]
async fn the_approval_page_shows_who_publishes_the_document() {
    let docs = Docs::start().await;
    let dir = TempDir::new("oauth-cimd-page");
    let file = dir.path().join("passphrase");
    std::fs::write(&file, "pass\n").unwrap();
    let d = start(
        &dir,
        &with_switch(
            &dir,
            &format!(
                "approval = \"passphrase\"\npassphrase_file = {:?}",
                file.display().to_string()
            ),
        ),
    );
    let (_, challenge) = pkce();
    let (st, _, html) = authorize_as(&d, &docs.url("/client.json"), &challenge).await;
    assert_eq!(st, 200, "{html}");
    assert!(html.contains("<strong>Doc Client</strong> asks"), "{html}");
    assert!(
        html.contains("Its description is published by <strong>127.0.0.1</strong>"),
        "{html}"
    );
}

#[tokio::test]
async fn an_operator_can_turn_metadata_documents_off() {
    let docs = Docs::start().await;
    let dir = TempDir::new("oauth-cimd-off");
    let d = start(
        &dir,
        &with_switch(&dir, "client_metadata_documents = false"),
    );
    let meta: Value = reqwest::get(format!("{}/.well-known/oauth-authorization-server", d.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["client_id_metadata_document_supported"], json!(false));
    let (_, challenge) = pkce();
    let (st, _, body) = authorize_as(&d, &docs.url("/client.json"), &challenge).await;
    assert_eq!(st, 400);
    assert!(body.contains("Unknown client"), "{body}");
    assert_eq!(docs.total_hits(), 0);
}
