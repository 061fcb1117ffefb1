//! `/authorize`: the authorization endpoint (OAuth 2.1 §4.1.1).
//!
//! Checks, in the order RFC 6749 §4.1.2.1 requires: the client and its exact
//! redirect URI first — a failure there is an HTML error page, never a
//! redirect, since the URI is not trusted. Every later error redirects back
//! with `error` and the client's `state`. PKCE S256 is mandatory (`plain` and
//! a missing challenge are refused); `resource` (RFC 8707) defaults to this
//! server's MCP resource and must equal it.
//!
//! Approval follows `auth.approval`: `auto` answers 302 with the code at once
//! (loopback only, config enforces it); `passphrase` shows a form whose POST
//! carries the operator's passphrase. The form is bound to the browser that
//! loaded it by a per-request cookie (CSRF), its request lives server-side,
//! and wrong passphrases are bounded by the lockout in `limits`.

use super::grants::{self, Client};
use super::limits::Attempt;
use super::page::{self, ApprovalForm};
use super::{ClientIp, OAuth, Params};
use crate::config::Approval;
use crate::secrets;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an approval page stays valid.
const PENDING_TTL: Duration = Duration::from_secs(600);
/// Most approval pages open at once; the oldest are dropped beyond.
const MAX_PENDING: usize = 256;
/// Name prefix of the per-request CSRF cookie.
const CSRF_COOKIE: &str = "mcpmp_csrf_";

/// A validated authorization request.
#[derive(Debug, Clone)]
struct AuthRequest {
    client: Client,
    redirect_uri: String,
    state: Option<String>,
    code_challenge: String,
    resource: String,
}

/// Why a request is refused.
enum Refusal {
    /// Shown in the browser (client or redirect URI not trusted).
    Page(&'static str, String),
    /// Sent back to the client's redirect URI.
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: &'static str,
        description: String,
    },
}

pub async fn authorize(State(o): State<OAuth>, RawQuery(q): RawQuery) -> Response {
    let req = match validate(&o, q.as_deref().unwrap_or("")).await {
        Ok(r) => r,
        Err(refusal) => return refuse(refusal),
    };
    match o.app.config.auth.approval {
        Approval::Auto => grant(&o, req, StatusCode::FOUND).await,
        Approval::Passphrase => {
            let (id, csrf) = o.pending.insert(req.clone());
            let mut resp = page::approval(StatusCode::OK, &form(&id, &req, None));
            let secure = if o.app.config.public_url.scheme() == "https" {
                "; Secure"
            } else {
                ""
            };
            let cookie = format!(
                "{CSRF_COOKIE}{id}={csrf}; Path=/authorize; Max-Age={}; HttpOnly; SameSite=Strict{secure}",
                PENDING_TTL.as_secs()
            );
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                resp.headers_mut().insert(header::SET_COOKIE, v);
            }
            resp
        }
    }
}

/// The approval form's POST.
pub async fn approve(
    State(o): State<OAuth>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut request_id = None;
    let mut passphrase = String::new();
    let mut decision = None;
    for (k, v) in url::form_urlencoded::parse(&body) {
        match &*k {
            "request" => request_id = Some(v.into_owned()),
            "passphrase" => passphrase = v.into_owned(),
            "decision" => decision = Some(v.into_owned()),
            _ => {}
        }
    }
    let expired = || {
        page::error(
            StatusCode::BAD_REQUEST,
            "Approval expired",
            "This approval request is unknown or has expired (they last 10 minutes, and a restart of the server forgets them).",
        )
    };
    let Some(id) = request_id else {
        return expired();
    };
    let Some((req, csrf_hash)) = o.pending.get(&id) else {
        return expired();
    };
    let cookie = cookie_value(&headers, &format!("{CSRF_COOKIE}{id}"));
    if !cookie.is_some_and(|c| secrets::hashes_equal(&secrets::hash_secret(&c), &csrf_hash)) {
        tracing::warn!(%ip, "approval form posted without its cookie");
        return page::error(
            StatusCode::FORBIDDEN,
            "Approval refused",
            "This form was not submitted from the approval page this browser opened. Open the sign-in link again.",
        );
    }
    match decision.as_deref() {
        Some("deny") => {
            o.pending.remove(&id);
            tracing::info!(client_id = %req.client.client_id, %ip, "authorization denied by the user");
            return refuse(Refusal::Redirect {
                redirect_uri: req.redirect_uri,
                state: req.state,
                error: "access_denied",
                description: "the operator denied the request".into(),
            });
        }
        Some("approve") => {}
        _ => {
            return page::approval(
                StatusCode::BAD_REQUEST,
                &form(&id, &req, Some("Choose Approve or Deny.")),
            );
        }
    }
    let Some(expected) = o.app.config.auth.passphrase.clone() else {
        tracing::error!("approval = passphrase but no passphrase was loaded");
        return page::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Approval unavailable",
            "The server has no passphrase configured.",
        );
    };
    match o.limits.passphrase(ip, || expected.matches(&passphrase)) {
        Attempt::Accepted => {
            if o.pending.remove(&id).is_none() {
                return expired();
            }
            tracing::info!(client_id = %req.client.client_id, %ip, "passphrase accepted");
            // 303: the browser follows with a GET (RFC 9110 §15.4.4).
            grant(&o, req, StatusCode::SEE_OTHER).await
        }
        Attempt::Wrong => {
            tracing::warn!(client_id = %req.client.client_id, %ip, "wrong approval passphrase");
            page::approval(
                StatusCode::FORBIDDEN,
                &form(&id, &req, Some("Wrong passphrase.")),
            )
        }
        Attempt::Locked(secs) => {
            tracing::warn!(%ip, retry_after = secs, "approval passphrase locked out");
            let mut r = page::error(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many attempts",
                &format!(
                    "Too many wrong passphrases. Approval is locked; try again in {} minute(s).",
                    secs.div_ceil(60)
                ),
            );
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
    }
}

fn form<'a>(id: &'a str, req: &'a AuthRequest, error: Option<&'a str>) -> ApprovalForm<'a> {
    ApprovalForm {
        request_id: id,
        client_name: req
            .client
            .client_name
            .as_deref()
            .unwrap_or("An unnamed client"),
        client_id: &req.client.client_id,
        redirect_uri: &req.redirect_uri,
        resource: &req.resource,
        error,
    }
}

/// Approves: creates the grant (a new principal) and sends the code back.
async fn grant(o: &OAuth, req: AuthRequest, status: StatusCode) -> Response {
    let principal_name = req
        .client
        .client_name
        .clone()
        .unwrap_or_else(|| "OAuth client".into())
        .chars()
        .take(64)
        .collect();
    let approval = grants::Approval {
        client_id: req.client.client_id.clone(),
        principal_name,
        resource: req.resource.clone(),
        redirect_uri: req.redirect_uri.clone(),
        code_challenge: req.code_challenge.clone(),
    };
    match grants::approve(o.store(), approval, o.lifetimes()).await {
        Ok(code) => {
            let mut pairs = vec![("code", code.as_str())];
            if let Some(s) = &req.state {
                pairs.push(("state", s));
            }
            redirect(&req.redirect_uri, &pairs, status)
        }
        Err(e) => {
            tracing::error!(error = %e, "storing an approval failed");
            refuse(Refusal::Redirect {
                redirect_uri: req.redirect_uri,
                state: req.state,
                error: "server_error",
                description: "internal error".into(),
            })
        }
    }
}

fn refuse(r: Refusal) -> Response {
    match r {
        Refusal::Page(title, message) => {
            tracing::warn!(%message, "authorization request refused (shown as a page)");
            page::error(StatusCode::BAD_REQUEST, title, &message)
        }
        Refusal::Redirect {
            redirect_uri,
            state,
            error,
            description,
        } => {
            tracing::warn!(error, %description, "authorization request refused");
            let mut pairs = vec![
                ("error", error),
                ("error_description", description.as_str()),
            ];
            if let Some(s) = &state {
                pairs.push(("state", s));
            }
            redirect(&redirect_uri, &pairs, StatusCode::FOUND)
        }
    }
}

/// A redirect to a registered URI with `pairs` appended to its query.
fn redirect(uri: &str, pairs: &[(&str, &str)], status: StatusCode) -> Response {
    let Ok(mut u) = url::Url::parse(uri) else {
        // Registered URIs were parsed at registration; this cannot happen.
        return page::error(
            StatusCode::BAD_REQUEST,
            "Bad redirect URI",
            "The client's redirect URI is not a URL.",
        );
    };
    u.query_pairs_mut().extend_pairs(pairs);
    let mut r = status.into_response();
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(u.as_str()) {
        h.insert(header::LOCATION, v);
    }
    super::error::no_store(h);
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

async fn validate(o: &OAuth, query: &str) -> Result<AuthRequest, Refusal> {
    let p = Params::parse(query.as_bytes());
    let bad_page = |m: String| Refusal::Page("Sign-in request refused", m);
    let client_id = p
        .one("client_id")
        .map_err(bad_page)?
        .ok_or_else(|| bad_page("The request has no client_id.".into()))?;
    let client = match grants::client(o.store(), client_id).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return Err(bad_page(
                "Unknown client. Unused registrations expire; reconnect from your MCP client so it registers again.".into(),
            ));
        }
        Err(e) => {
            tracing::error!(error = %e, "client lookup failed");
            return Err(Refusal::Page(
                "Server error",
                "The server could not look up the client.".into(),
            ));
        }
    };
    // Exact match against the registration (OAuth 2.1 §2.3.1). Omitted only
    // when exactly one is registered.
    let redirect_uri = match p.one("redirect_uri").map_err(bad_page)? {
        Some(r) if client.redirect_uris.iter().any(|u| u == r) => r.to_string(),
        Some(_) => {
            return Err(bad_page(
                "The redirect_uri is not one this client registered, so the server will not send you there.".into(),
            ));
        }
        None => match client.redirect_uris.as_slice() {
            [only] => only.clone(),
            _ => {
                return Err(bad_page(
                    "The request has no redirect_uri and the client registered several.".into(),
                ));
            }
        },
    };
    // From here on, errors go back to the client. A repeated state cannot be
    // echoed: send none.
    let state = p.one("state").ok().flatten().map(str::to_string);
    let back = |error: &'static str, description: String| Refusal::Redirect {
        redirect_uri: redirect_uri.clone(),
        state: state.clone(),
        error,
        description,
    };
    let one = |k: &str| p.one(k).map_err(|m| back("invalid_request", m));
    if p.one("state").is_err() {
        return Err(back(
            "invalid_request",
            "the parameter state is repeated".into(),
        ));
    }
    match one("response_type")? {
        Some("code") => {}
        Some(other) => {
            return Err(back(
                "unsupported_response_type",
                format!("response_type {other:?} is not supported; use code"),
            ));
        }
        None => return Err(back("invalid_request", "response_type is missing".into())),
    }
    let Some(code_challenge) = one("code_challenge")? else {
        return Err(back(
            "invalid_request",
            "PKCE is required: send code_challenge with code_challenge_method=S256".into(),
        ));
    };
    match one("code_challenge_method")? {
        Some("S256") => {}
        Some(m) => {
            return Err(back(
                "invalid_request",
                format!("code_challenge_method {m:?} is not supported; use S256"),
            ));
        }
        // RFC 7636 §4.3 would default to plain, which is refused.
        None => {
            return Err(back(
                "invalid_request",
                "code_challenge_method is missing (it would default to plain); use S256".into(),
            ));
        }
    }
    // BASE64URL(SHA-256) without padding is exactly 43 characters.
    if code_challenge.len() != 43
        || !code_challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(back(
            "invalid_request",
            "code_challenge is not a base64url SHA-256 digest".into(),
        ));
    }
    let canonical = o.app.config.resource();
    let resource = match p.one("resource") {
        Err(_) => {
            return Err(back(
                "invalid_target",
                "only one resource may be requested".into(),
            ));
        }
        Ok(None) => canonical,
        Ok(Some(r)) if r == canonical => canonical,
        Ok(Some(r)) => {
            return Err(back(
                "invalid_target",
                format!("this server grants access only to {canonical}, not {r}"),
            ));
        }
    };
    Ok(AuthRequest {
        client,
        redirect_uri,
        state,
        code_challenge: code_challenge.to_string(),
        resource,
    })
}

/// The value of cookie `name`, if the request carries it.
fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// Approval pages awaiting their POST, in memory.
#[derive(Default)]
pub struct PendingApprovals {
    map: Mutex<HashMap<String, Pending>>,
}

struct Pending {
    req: AuthRequest,
    csrf_hash: Vec<u8>,
    created: Instant,
}

impl PendingApprovals {
    /// Stores `req`; returns its id and the CSRF cookie value.
    fn insert(&self, req: AuthRequest) -> (String, String) {
        let id = secrets::new_id("");
        let csrf = secrets::new_secret(secrets::SecretKind::FormToken);
        let now = Instant::now();
        if let Ok(mut m) = self.map.lock() {
            m.retain(|_, p| now.duration_since(p.created) < PENDING_TTL);
            while m.len() >= MAX_PENDING {
                let Some(oldest) = m
                    .iter()
                    .min_by_key(|(_, p)| p.created)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                m.remove(&oldest);
            }
            m.insert(
                id.clone(),
                Pending {
                    req,
                    csrf_hash: secrets::hash_secret(&csrf),
                    created: now,
                },
            );
        }
        (id, csrf)
    }

    fn get(&self, id: &str) -> Option<(AuthRequest, Vec<u8>)> {
        let m = self.map.lock().ok()?;
        m.get(id)
            .filter(|p| p.created.elapsed() < PENDING_TTL)
            .map(|p| (p.req.clone(), p.csrf_hash.clone()))
    }

    fn remove(&self, id: &str) -> Option<AuthRequest> {
        self.map.lock().ok()?.remove(id).map(|p| p.req)
    }
}
