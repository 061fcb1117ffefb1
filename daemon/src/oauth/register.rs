//! `/register`: dynamic client registration (RFC 7591).
//!
//! Public (`none`) and confidential (`client_secret_post`,
//! `client_secret_basic`) clients. claude.ai registers a confidential client
//! anew on every fresh connection, so registration is cheap and never refused
//! for everyone: it is throttled per address (`limits`), and what it can make
//! the server store is capped per address and in total with the oldest
//! unapproved clients dropped first (`grants::register_client`); clients that
//! are never approved expire after a day.
//! Redirect URIs follow the policy in `redirect` and are stored normalised.
//! Unsupported grant and response types are narrowed away rather than refused
//! (RFC 7591 §3.2.1 lets the server replace requested values); the response
//! echoes what was registered.

use super::grants::{self, AuthMethod, Client, NewClient};
use super::redirect::{self, MAX_URI_LEN};
use super::{ClientIp, OAuth, OAuthError};
use crate::client_addr::AddrKey;
use crate::secrets::{self, SecretKind};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

/// Largest registration request.
const MAX_BODY: usize = 16 * 1024;
/// Most redirect URIs per client.
const MAX_REDIRECT_URIS: usize = 10;
/// Longest client name, in characters.
const MAX_NAME_CHARS: usize = 200;

/// Optional metadata kept and echoed verbatim when it is a string (RFC 7591
/// §2); anything else a client sends is ignored, as §2 requires.
const ECHOED_STRINGS: &[&str] = &[
    "client_uri",
    "logo_uri",
    "scope",
    "tos_uri",
    "policy_uri",
    "software_id",
    "software_version",
];

pub async fn register(State(o): State<OAuth>, ClientIp(ip): ClientIp, body: Bytes) -> Response {
    match register_inner(&o, AddrKey::of(ip), &body).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(%ip, error = e.code, detail = ?e.description, "client registration refused");
            e.into_response()
        }
    }
}

async fn register_inner(o: &OAuth, from: AddrKey, body: &[u8]) -> Result<Response, OAuthError> {
    o.limits.register(from).map_err(OAuthError::rate_limited)?;
    if body.len() > MAX_BODY {
        return Err(OAuthError::invalid_client_metadata(
            "the registration request is too large",
        ));
    }
    let req: Map<String, Value> = match serde_json::from_slice(body) {
        Ok(Value::Object(m)) => m,
        _ => {
            return Err(OAuthError::invalid_client_metadata(
                "the body must be a JSON object of client metadata (RFC 7591)",
            ));
        }
    };
    let reg = validate(&req, &o.app.config.auth.custom_redirect_schemes)?;
    let secret = (reg.auth_method != AuthMethod::None)
        .then(|| secrets::new_secret(SecretKind::ClientSecret));
    let client_id = secrets::new_id("mcpmp_client_");
    let now = secrets::now_ms();
    let mut metadata = reg.metadata;
    metadata.insert("client_id".into(), json!(client_id));
    metadata.insert("client_id_issued_at".into(), json!(now / 1000));
    // 0: the secret does not expire (RFC 7591 §3.2.1).
    metadata.insert("client_secret_expires_at".into(), json!(0));
    let stored = Value::Object(metadata.clone());
    grants::register_client(
        o.store(),
        NewClient {
            client: Client {
                client_id: client_id.clone(),
                secret_hash: secret.as_deref().map(secrets::hash_secret),
                auth_method: reg.auth_method,
                redirect_uris: reg.redirect_uris,
                client_name: reg.client_name,
                refresh: reg.refresh,
                approved: false,
            },
            metadata: stored,
            created_at: now,
            from,
            metadata_expires_at: None,
        },
        o.limits.config(),
    )
    .await?;
    tracing::info!(?client_id, %from, method = reg.auth_method.as_str(), "client registered");
    if let Some(s) = secret {
        metadata.insert("client_secret".into(), json!(s));
    }
    let mut resp = (StatusCode::CREATED, axum::Json(Value::Object(metadata))).into_response();
    super::error::no_store(resp.headers_mut());
    Ok(resp)
}

/// Client metadata that passed validation (from `/register`, or from a
/// client metadata document).
#[derive(Debug)]
pub struct Registration {
    pub auth_method: AuthMethod,
    /// Normalised, as `redirect::check` returns them.
    pub redirect_uris: Vec<String>,
    pub client_name: Option<String>,
    pub refresh: bool,
    /// The metadata to echo, without id and secret.
    pub metadata: Map<String, Value>,
}

/// Validates client metadata (RFC 7591 §2) against what this server does.
///
/// # Errors
/// `invalid_redirect_uri` or `invalid_client_metadata`, saying what to fix.
pub fn validate(
    req: &Map<String, Value>,
    custom_schemes: &[String],
) -> Result<Registration, OAuthError> {
    let uris = match req.get("redirect_uris") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        _ => {
            return Err(OAuthError::invalid_redirect_uri(
                "redirect_uris must be a non-empty array (the authorization code flow needs one)",
            ));
        }
    };
    if uris.len() > MAX_REDIRECT_URIS {
        return Err(OAuthError::invalid_redirect_uri(format!(
            "at most {MAX_REDIRECT_URIS} redirect_uris"
        )));
    }
    let mut redirect_uris = Vec::with_capacity(uris.len());
    for u in uris {
        let Some(s) = u.as_str() else {
            return Err(OAuthError::invalid_redirect_uri(
                "redirect_uris must be strings",
            ));
        };
        let (normalised, _) =
            redirect::check(s, custom_schemes).map_err(OAuthError::invalid_redirect_uri)?;
        let normalised = normalised.to_string();
        if !redirect_uris.contains(&normalised) {
            redirect_uris.push(normalised);
        }
    }
    // RFC 7591 §2: the default method is client_secret_basic.
    let auth_method = match req.get("token_endpoint_auth_method") {
        None | Some(Value::Null) => AuthMethod::ClientSecretBasic,
        Some(Value::String(s)) => AuthMethod::parse(s).ok_or_else(|| {
            OAuthError::invalid_client_metadata(format!(
                "token_endpoint_auth_method {s:?} is not supported; use none, client_secret_post or client_secret_basic"
            ))
        })?,
        Some(_) => {
            return Err(OAuthError::invalid_client_metadata(
                "token_endpoint_auth_method must be a string",
            ));
        }
    };
    // Narrow grant types to what this server does. Omitted: both (a client
    // that says nothing still gets to refresh rather than sign in hourly).
    let listed: Option<Vec<&str>> = match req.get("grant_types") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => Some(a.iter().filter_map(Value::as_str).collect()),
        Some(_) => {
            return Err(OAuthError::invalid_client_metadata(
                "grant_types must be an array",
            ));
        }
    };
    if listed
        .as_ref()
        .is_some_and(|g| !g.contains(&"authorization_code"))
    {
        return Err(OAuthError::invalid_client_metadata(
            "this server grants only authorization_code (with refresh_token); register grant_types accordingly",
        ));
    }
    let refresh = listed.as_ref().is_none_or(|g| g.contains(&"refresh_token"));
    let grant_types: &[&str] = if refresh {
        &["authorization_code", "refresh_token"]
    } else {
        &["authorization_code"]
    };
    if let Some(rt) = req.get("response_types").and_then(Value::as_array)
        && !rt.iter().any(|t| t == "code")
    {
        return Err(OAuthError::invalid_client_metadata(
            "this server supports only response_types [\"code\"]",
        ));
    }
    let client_name = match req.get("client_name") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            let clean: String = s
                .chars()
                .filter(|c| !c.is_control())
                .take(MAX_NAME_CHARS)
                .collect();
            Some(clean.trim().to_string()).filter(|s| !s.is_empty())
        }
        Some(_) => {
            return Err(OAuthError::invalid_client_metadata(
                "client_name must be a string",
            ));
        }
    };

    let mut metadata = Map::new();
    metadata.insert("redirect_uris".into(), json!(redirect_uris));
    metadata.insert(
        "token_endpoint_auth_method".into(),
        json!(auth_method.as_str()),
    );
    metadata.insert("grant_types".into(), json!(grant_types));
    metadata.insert("response_types".into(), json!(["code"]));
    if let Some(n) = &client_name {
        metadata.insert("client_name".into(), json!(n));
    }
    for key in ECHOED_STRINGS {
        if let Some(Value::String(v)) = req.get(*key)
            && v.len() <= MAX_URI_LEN
        {
            metadata.insert((*key).into(), json!(v));
        }
    }
    if let Some(Value::Array(c)) = req.get("contacts")
        && c.iter().all(Value::is_string)
        && c.len() <= 10
    {
        metadata.insert("contacts".into(), Value::Array(c.clone()));
    }
    Ok(Registration {
        auth_method,
        redirect_uris,
        client_name,
        refresh,
        metadata,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claudes_registration_is_accepted_as_confidential() {
        let req: Map<String, Value> = serde_json::from_str(
            r#"{"client_name":"Claude","redirect_uris":["https://claude.ai/api/mcp/auth_callback"],"grant_types":["authorization_code","refresh_token"],"response_types":["code"],"token_endpoint_auth_method":"client_secret_post"}"#,
        )
        .unwrap();
        let r = validate(&req, &[]).unwrap();
        assert_eq!(r.auth_method, AuthMethod::ClientSecretPost);
        assert!(r.refresh);
        assert_eq!(
            r.metadata["grant_types"],
            json!(["authorization_code", "refresh_token"])
        );
    }

    #[test]
    fn unsupported_grant_types_are_narrowed() {
        let req: Map<String, Value> = serde_json::from_str(
            r#"{"redirect_uris":["http://127.0.0.1:1/cb"],"grant_types":["authorization_code","client_credentials","urn:ietf:params:oauth:grant-type:device_code"],"token_endpoint_auth_method":"none"}"#,
        )
        .unwrap();
        let r = validate(&req, &[]).unwrap();
        assert_eq!(r.metadata["grant_types"], json!(["authorization_code"]));
        assert!(!r.refresh);
        let only_cc: Map<String, Value> = serde_json::from_str(
            r#"{"redirect_uris":["http://127.0.0.1:1/cb"],"grant_types":["client_credentials"]}"#,
        )
        .unwrap();
        assert!(validate(&only_cc, &[]).is_err());
    }
}
