//! Native clients and their redirect URIs: VS Code's and Cursor's exact
//! requests replayed against a real daemon, loopback redirect URIs on any
//! port, private-use schemes, and what registration refuses or normalises.

use super::*;

/// VS Code's registration body: what `fetchDynamicRegistration` sends
/// (`client_uri`, the grant types narrowed to what the metadata lists, its
/// four redirect URIs, `application_type: native`, no scope), serialised by
/// `JSON.stringify` in that order.
const VS_CODE_DCR: &str = r#"{"client_name":"Visual Studio Code","client_uri":"https://code.visualstudio.com","grant_types":["authorization_code","refresh_token"],"response_types":["code"],"redirect_uris":["https://insiders.vscode.dev/redirect","https://vscode.dev/redirect","http://127.0.0.1/","http://127.0.0.1:33418/"],"token_endpoint_auth_method":"none","application_type":"native"}"#;

/// Cursor's registration: a public client with its private-use callback,
/// its hosted callback and a loopback one, in one request (Cursor is closed
/// source; this is the body as its users and server authors have reported
/// it).
const CURSOR_DCR: &str = r#"{"redirect_uris":["cursor://anysphere.cursor-mcp/oauth/callback","https://www.cursor.com/agents/mcp/oauth/callback","http://localhost:8787/callback"],"token_endpoint_auth_method":"none","grant_types":["authorization_code","refresh_token"],"response_types":["code"],"client_name":"Cursor"}"#;

async fn register_raw(d: &Daemon, body: &str) -> (u16, Value) {
    let r = http()
        .post(format!("{}/register", d.base))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// A token request as a browser-less client sends it; returns the tokens.
async fn exchange(d: &Daemon, form: &[(&str, &str)]) -> Value {
    let (st, v, cc) = token(d, form).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(cc, "no-store");
    v
}

#[tokio::test]
async fn vs_code_signs_in_on_another_loopback_port_than_it_registered() {
    let dir = TempDir::new("oauth-vscode");
    let d = start(&dir, &[]);
    let (st, reg) = register_raw(&d, VS_CODE_DCR).await;
    assert_eq!(st, 201, "{reg}");
    assert_eq!(reg["token_endpoint_auth_method"], "none");
    assert_eq!(
        reg["redirect_uris"],
        json!([
            "https://insiders.vscode.dev/redirect",
            "https://vscode.dev/redirect",
            "http://127.0.0.1/",
            "http://127.0.0.1:33418/"
        ])
    );
    let cid = s(&reg, "client_id");

    // Port 33418 was busy: VS Code listens on another one and sends that.
    // Its authorization request, parameter by parameter in its order (an
    // empty scope, a base64 state with +, / and =).
    let (verifier, challenge) = pkce();
    let callback = "http://127.0.0.1:50123/";
    let state = "q+Ab/cd9Ef==";
    let resource = d.mcp_url();
    let r = http()
        .get(format!("{}/authorize", d.base))
        .query(&[
            ("client_id", cid.as_str()),
            ("response_type", "code"),
            ("scope", ""),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("resource", resource.as_str()),
            ("redirect_uri", callback),
            ("state", state),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "{}", r.text().await.unwrap());
    let loc = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(
        format!("{}://{}", loc.scheme(), loc.host_str().unwrap()),
        "http://127.0.0.1"
    );
    assert_eq!(loc.port(), Some(50123), "back to the port it asked for");
    assert_eq!(loc.path(), "/");
    assert_eq!(query(&loc, "state").as_deref(), Some(state));
    assert_eq!(query(&loc, "iss").as_deref(), Some(d.base.as_str()));
    let code = query(&loc, "code").unwrap();

    let tok = exchange(
        &d,
        &[
            ("client_id", &cid),
            ("code", &code),
            ("grant_type", "authorization_code"),
            ("code_verifier", &verifier),
            ("redirect_uri", callback),
            ("resource", &resource),
        ],
    )
    .await;
    let mut c = Mcp::connect(&d.mcp_url(), Some(&s(&tok, "access_token"))).await;
    c.ok("list_channels", json!({})).await;
    // It refreshes like any public client.
    let (st, v) = refresh(&d, &cid, &s(&tok, "refresh_token")).await;
    assert_eq!(st, 200, "{v}");

    // The code is bound to the port it went to: another port at /token is
    // another redirect URI.
    let (verifier, challenge) = pkce();
    let (st, loc, _) = authorize(
        &d,
        &[
            ("client_id", &cid),
            ("response_type", "code"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("redirect_uri", "http://127.0.0.1:40000/"),
        ],
    )
    .await;
    assert_eq!(st, 302);
    let code = query(&loc.unwrap(), "code").unwrap();
    let (st, v, _) = token(
        &d,
        &[
            ("client_id", &cid),
            ("code", &code),
            ("grant_type", "authorization_code"),
            ("code_verifier", &verifier),
            ("redirect_uri", "http://127.0.0.1:40001/"),
        ],
    )
    .await;
    assert_eq!((st, s(&v, "error").as_str()), (400, "invalid_grant"));
}

#[tokio::test]
async fn cursor_registers_its_private_scheme_and_gets_the_code_there() {
    let dir = TempDir::new("oauth-cursor");
    let d = start(&dir, &[]);
    let (st, reg) = register_raw(&d, CURSOR_DCR).await;
    assert_eq!(st, 201, "{reg}");
    assert_eq!(
        reg["redirect_uris"],
        json!([
            "cursor://anysphere.cursor-mcp/oauth/callback",
            "https://www.cursor.com/agents/mcp/oauth/callback",
            "http://localhost:8787/callback"
        ])
    );
    let cid = s(&reg, "client_id");
    let callback = "cursor://anysphere.cursor-mcp/oauth/callback";
    let (verifier, challenge) = pkce();
    let resource = d.mcp_url();
    // The TypeScript SDK's authorization request, which Cursor uses.
    let (st, loc, body) = authorize(
        &d,
        &[
            ("response_type", "code"),
            ("client_id", &cid),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("redirect_uri", callback),
            ("state", "cursor-state"),
            ("resource", &resource),
        ],
    )
    .await;
    assert_eq!(st, 302, "{body}");
    let loc = loc.unwrap();
    assert!(
        loc.as_str().starts_with(&format!("{callback}?code=")),
        "{loc}"
    );
    assert_eq!(query(&loc, "state").as_deref(), Some("cursor-state"));
    assert_eq!(query(&loc, "iss").as_deref(), Some(d.base.as_str()));
    let code = query(&loc, "code").unwrap();
    let tok = exchange(
        &d,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", &verifier),
            ("redirect_uri", callback),
            ("client_id", &cid),
            ("resource", &resource),
        ],
    )
    .await;
    let mut c = Mcp::connect(&d.mcp_url(), Some(&s(&tok, "access_token"))).await;
    c.ok("list_channels", json!({})).await;
    // Its loopback callback on another port works too, and only its paths.
    let (_, challenge) = pkce();
    for (uri, ok) in [
        ("http://localhost:9999/callback", true),
        ("cursor://anysphere.cursor-mcp/oauth/other", false),
        ("cursor://evil/oauth/callback", false),
    ] {
        let (st, _, _) = authorize(
            &d,
            &[
                ("response_type", "code"),
                ("client_id", &cid),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
                ("redirect_uri", uri),
            ],
        )
        .await;
        assert_eq!(st, if ok { 302 } else { 400 }, "{uri}");
    }
}

#[tokio::test]
async fn the_approval_page_names_an_apps_scheme_as_where_the_code_goes() {
    let dir = TempDir::new("oauth-cursor-page");
    let d = passphrase_daemon(&dir, "correct horse battery staple");
    let (_, reg) = register_raw(&d, CURSOR_DCR).await;
    let cid = s(&reg, "client_id");
    let (_, challenge) = pkce();
    let r = http()
        .get(format!("{}/authorize", d.base))
        .query(&[
            ("response_type", "code"),
            ("client_id", cid.as_str()),
            (
                "redirect_uri",
                "cursor://anysphere.cursor-mcp/oauth/callback",
            ),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("<strong>Cursor</strong> asks"), "{html}");
    assert!(
        html.contains("the app that opens cursor: links (cursor://anysphere.cursor-mcp)"),
        "{html}"
    );
}

#[tokio::test]
async fn registration_refuses_dangerous_redirect_uris_and_stores_the_rest_normalised() {
    let dir = TempDir::new("oauth-register-uris");
    let d = start(&dir, &[]);
    for bad in [
        "javascript:alert(1)",
        "data:text/html,x",
        "file:///etc/passwd",
        "vbscript:msgbox(1)",
        "http://example.com/cb",
        "myapp://callback",
        "https://claude.ai/cb#",
        " https://claude.ai/cb",
        "https://claude.ai/cb\r\n",
        "https://claude.ai/c\u{0}b",
        "https://claude.ai/\tcb",
    ] {
        let (st, v) = register(&d, json!({"redirect_uris": [bad]})).await;
        assert_eq!(st, 400, "{bad:?}");
        assert_eq!(v["error"], "invalid_redirect_uri", "{bad:?}");
        assert!(
            v["error_description"]
                .as_str()
                .unwrap()
                .contains("redirect URI"),
            "{v}"
        );
    }
    // An unknown private scheme: the answer says how to allow it.
    let (_, v) = register(&d, json!({"redirect_uris": ["myapp://callback"]})).await;
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .contains("custom_redirect_schemes"),
        "{v}"
    );
    // Stored and echoed normalised, duplicates after normalisation once.
    let (st, v) = register(
        &d,
        json!({"token_endpoint_auth_method": "none", "redirect_uris": [
            "HTTP://LOCALHOST:80/cb", "http://localhost/cb", "HTTPS://Example.COM:443/a"
        ]}),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(
        v["redirect_uris"],
        json!(["http://localhost/cb", "https://example.com/a"])
    );
    // And the normalised form is what matches at /authorize.
    let cid = s(&v, "client_id");
    let (verifier, challenge) = pkce();
    let (st, loc, _) = authorize(
        &d,
        &[
            ("response_type", "code"),
            ("client_id", &cid),
            ("redirect_uri", "https://example.com/a"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    )
    .await;
    assert_eq!(st, 302);
    let loc = loc.unwrap();
    assert!(loc.as_str().starts_with("https://example.com/a?code="));
    // A client that sends the URI at /token as it first wrote it is not
    // refused for the server's normalisation.
    let tok = exchange(
        &d,
        &[
            ("grant_type", "authorization_code"),
            ("code", &query(&loc, "code").unwrap()),
            ("code_verifier", &verifier),
            ("client_id", &cid),
            ("redirect_uri", "HTTPS://Example.COM:443/a"),
        ],
    )
    .await;
    assert!(tok["access_token"].is_string());
}

#[tokio::test]
async fn an_operator_can_allow_another_private_scheme_or_none() {
    let dir = TempDir::new("oauth-schemes");
    let d = start(
        &dir,
        &config(
            dir.path(),
            "custom_redirect_schemes = [\"com.example.app\"]",
        ),
    );
    let (st, _) = register(
        &d,
        json!({"redirect_uris": ["com.example.app:/oauth2redirect"]}),
    )
    .await;
    assert_eq!(st, 201);
    let (st, _) = register_raw(&d, CURSOR_DCR).await;
    assert_eq!(st, 400, "cursor is no longer in the list");
}
