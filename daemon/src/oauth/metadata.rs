//! Discovery documents: protected-resource metadata (RFC 9728) and
//! authorization-server metadata (RFC 8414), both at the origin root.
//!
//! The `resource` string is exactly `config.resource()`: clients (claude.ai
//! above all) compare it byte for byte with the token audience.

use super::OAuth;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// RFC 9728 §3: served at `/.well-known/oauth-protected-resource` and, for the
/// resource `BASE/mcp`, at `/.well-known/oauth-protected-resource/mcp` (the
/// path the `WWW-Authenticate` challenge names).
pub async fn protected_resource(State(o): State<OAuth>) -> Response {
    json_doc(protected_resource_document(&o.app.config))
}

/// RFC 8414 §2. Endpoints at the origin root; the issuer is the origin.
pub async fn authorization_server(State(o): State<OAuth>) -> Response {
    json_doc(authorization_server_document(&o.app.config))
}

pub fn protected_resource_document(cfg: &crate::config::Config) -> Value {
    json!({
        "resource": cfg.resource(),
        "authorization_servers": [cfg.public_origin()],
        "bearer_methods_supported": ["header"],
        "resource_name": "mcp-multiplayer",
    })
}

pub fn authorization_server_document(cfg: &crate::config::Config) -> Value {
    let base = cfg.public_origin();
    let methods = json!(["none", "client_secret_post", "client_secret_basic"]);
    // `iss` (RFC 9207) is the issuer exactly as here, without a trailing
    // slash; clients compare it as a plain string.
    json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "registration_endpoint": format!("{base}/register"),
        "revocation_endpoint": format!("{base}/revoke"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_methods_supported": methods,
        "revocation_endpoint_auth_methods_supported": methods,
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
        "client_id_metadata_document_supported": cfg.auth.client_metadata_documents,
    })
}

fn json_doc(v: Value) -> Response {
    let mut r = axum::Json(v).into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    r
}

/// CORS for the OAuth endpoints, so that browser-based clients (MCP
/// Inspector) can discover, register and exchange codes. Nothing here relies
/// on cookies except the approval form, which is same-origin, so a wildcard
/// origin without credentials is safe.
pub async fn cors(req: Request, next: Next) -> Response {
    let path_is_form = req.uri().path() == "/authorize";
    if req.method() == Method::OPTIONS && !path_is_form {
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type, mcp-protocol-version"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("86400"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        return r;
    }
    let mut r = next.run(req).await;
    if !path_is_form {
        r.headers_mut().insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
    }
    r
}
