//! `/authorize`: the authorization endpoint (OAuth 2.1 §4.1.1).
//!
//! Checks, in the order RFC 6749 §4.1.2.1 requires: the client (registered,
//! or known by its metadata document, see `cimd`) and the redirect URI
//! (registered, with any port on loopback, see `redirect`) first — a failure
//! there is an HTML error page, never a redirect, since the URI is not
//! trusted. Later errors go back to the redirect URI with `error`, the
//! client's `state` and `iss` only when that URI is one the operator
//! approved: in `auto` mode every client is, otherwise a client approved
//! before. For a client nobody has approved yet they are a page too, so that
//! registering a client does not make this server an open redirector. PKCE
//! S256 is mandatory; `resource` (RFC 8707) defaults to this server's MCP
//! resource and must equal it. Every response to the redirect URI carries
//! `iss` (RFC 9207), the issuer of the metadata.
//!
//! Approval follows `auth.approval`: `auto` answers 302 with the code at once
//! (loopback only, config enforces it); `passphrase` stores the request
//! (`oauth_pending`, so a restart keeps it and `mcp-multiplayer approve` can
//! see it) and shows a form. The form is bound to the browser that loaded it
//! by a per-request cookie (CSRF). Its POST carries the passphrase, judged
//! under the per-address backoff in `limits`, or continues a request the
//! operator approved on the server.

use super::cimd::{self, Reach};
use super::grants::{self, Client, NewClient, PendingRequest};
use super::limits::Attempt;
use super::page::{self, ApprovalForm};
use super::redirect;
use super::{ClientIp, OAuth, Params};
use crate::client_addr::AddrKey;
use crate::config::Approval;
use crate::secrets;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::time::Duration;

/// How long an approval page stays valid.
const PENDING_TTL: Duration = Duration::from_secs(600);
/// Name prefix of the per-request CSRF cookie.
const CSRF_COOKIE: &str = "mcpmp_csrf_";

/// A validated authorization request.
#[derive(Debug, Clone)]
struct AuthRequest {
    client: Client,
    /// As requested, normalised: one the client registered (any port on
    /// loopback).
    redirect_uri: String,
    /// Whether the request named it (else the client's only one): then the
    /// token request must name it too.
    redirect_uri_given: bool,
    state: Option<String>,
    code_challenge: String,
    resource: String,
}

impl AuthRequest {
    fn pending(&self) -> PendingRequest {
        PendingRequest {
            client_id: self.client.client_id.clone(),
            redirect_uri: self.redirect_uri.clone(),
            redirect_uri_given: self.redirect_uri_given,
            state: self.state.clone(),
            code_challenge: self.code_challenge.clone(),
            resource: self.resource.clone(),
        }
    }
}

/// Why a request is refused.
enum Refusal {
    /// Shown in the browser.
    Page {
        status: StatusCode,
        title: &'static str,
        message: String,
        retry_after: Option<u64>,
    },
    /// Sent back to the client's redirect URI.
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: &'static str,
        description: String,
    },
}

fn bad_page(message: String) -> Refusal {
    Refusal::Page {
        status: StatusCode::BAD_REQUEST,
        title: "Sign-in request refused",
        message,
        retry_after: None,
    }
}

pub async fn authorize(
    State(o): State<OAuth>,
    ClientIp(ip): ClientIp,
    RawQuery(q): RawQuery,
) -> Response {
    let from = AddrKey::of(ip);
    let req = match validate(&o, from, q.as_deref().unwrap_or("")).await {
        Ok(r) => r,
        Err(refusal) => return refuse(&o, refusal),
    };
    match o.app.config.auth.approval {
        Approval::Auto => grant(&o, req, None, StatusCode::FOUND).await,
        Approval::Passphrase => {
            let csrf = secrets::new_secret(secrets::SecretKind::FormToken);
            let id = match grants::insert_pending(
                o.store(),
                req.pending(),
                secrets::hash_secret(&csrf),
                from,
                ms(PENDING_TTL),
                o.limits.config(),
            )
            .await
            {
                Ok(id) => id,
                Err(e) => {
                    tracing::error!(error = %e, "storing a sign-in for approval failed");
                    return server_error_page();
                }
            };
            tracing::info!(client_id = ?req.client.client_id, request = %id, %from, "sign-in waiting for approval");
            let mut resp = approval_page(StatusCode::OK, &id, &req, None);
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

/// The approval form's POST: approve with the passphrase, deny, or continue
/// a sign-in the operator approved on the server.
pub async fn approve(
    State(o): State<OAuth>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let from = AddrKey::of(ip);
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
            "This approval request is unknown, was already answered, or has expired (they last 10 minutes).",
        )
    };
    let Some(id) = request_id else {
        return expired();
    };
    let pending = match grants::pending(o.store(), &id).await {
        Ok(Some(p)) => p,
        Ok(None) => return expired(),
        Err(e) => {
            tracing::error!(error = %e, "reading a waiting sign-in failed");
            return server_error_page();
        }
    };
    let cookie = cookie_value(&headers, &format!("{CSRF_COOKIE}{id}"));
    if !cookie.is_some_and(|c| secrets::hashes_equal(&secrets::hash_secret(&c), &pending.csrf_hash))
    {
        tracing::warn!(%from, "approval form posted without its cookie");
        return page::error(
            StatusCode::FORBIDDEN,
            "Approval refused",
            "This form was not submitted from the approval page this browser opened. Open the sign-in link again.",
        );
    }
    let client = match grants::client(o.store(), &pending.request.client_id).await {
        Ok(Some(c)) => c,
        Ok(None) => return expired(),
        Err(e) => {
            tracing::error!(error = %e, "client lookup failed");
            return server_error_page();
        }
    };
    let p = pending.request;
    let req = AuthRequest {
        client,
        redirect_uri: p.redirect_uri,
        redirect_uri_given: p.redirect_uri_given,
        state: p.state,
        code_challenge: p.code_challenge,
        resource: p.resource,
    };
    match decision.as_deref() {
        Some("deny") => {
            if let Err(e) = grants::remove_pending(o.store(), &id).await {
                tracing::error!(error = %e, "forgetting a denied sign-in failed");
            }
            tracing::info!(client_id = ?req.client.client_id, %from, "authorization denied by the user");
            // The user saw where this goes and chose it: redirect.
            return refuse(
                &o,
                Refusal::Redirect {
                    redirect_uri: req.redirect_uri,
                    state: req.state,
                    error: "access_denied",
                    description: "the operator denied the request".into(),
                },
            );
        }
        Some("continue") if pending.approved => {
            tracing::info!(client_id = ?req.client.client_id, request = %id, "continuing a sign-in approved on the server");
            return grant(&o, req, Some(id), StatusCode::SEE_OTHER).await;
        }
        Some("continue") => {
            let message = format!(
                "Not approved on the server yet. Run mcp-multiplayer approve {id} there first, or enter the passphrase."
            );
            return approval_page(StatusCode::CONFLICT, &id, &req, Some(&message));
        }
        Some("approve") if pending.approved => {
            return grant(&o, req, Some(id), StatusCode::SEE_OTHER).await;
        }
        Some("approve") => {}
        _ => {
            return approval_page(
                StatusCode::BAD_REQUEST,
                &id,
                &req,
                Some("Choose Approve or Deny."),
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
    match o.limits.passphrase(from, || expected.matches(&passphrase)) {
        Attempt::Accepted => {
            tracing::info!(client_id = ?req.client.client_id, %from, "passphrase accepted");
            // 303: the browser follows with a GET (RFC 9110 §15.4.4).
            grant(&o, req, Some(id), StatusCode::SEE_OTHER).await
        }
        Attempt::Wrong(wait) => {
            tracing::warn!(client_id = ?req.client.client_id, %from, next_try_in_secs = wait, "wrong approval passphrase");
            let message = if wait == 0 {
                "Wrong passphrase.".to_string()
            } else {
                format!(
                    "Wrong passphrase. Too many from your address: the next try is possible in {}.",
                    human_secs(wait)
                )
            };
            approval_page(StatusCode::FORBIDDEN, &id, &req, Some(&message))
        }
        Attempt::Wait(secs) => {
            tracing::warn!(%from, retry_after = secs, "approval passphrase tried during its backoff");
            let message = format!(
                "Too many wrong passphrases from your address: try again in {}, or approve on the server.",
                human_secs(secs)
            );
            let mut r = approval_page(StatusCode::TOO_MANY_REQUESTS, &id, &req, Some(&message));
            retry_after(&mut r, secs);
            r
        }
    }
}

/// The approval page for `req`, waiting as `id`, with an optional message.
fn approval_page(status: StatusCode, id: &str, req: &AuthRequest, error: Option<&str>) -> Response {
    let destination = redirect::destination(&req.redirect_uri);
    let published_by = published_by(&req.client.client_id);
    page::approval(
        status,
        &ApprovalForm {
            request_id: id,
            client_name: req
                .client
                .client_name
                .as_deref()
                .unwrap_or("An unnamed client"),
            client_id: &req.client.client_id,
            published_by: published_by.as_deref(),
            destination: &destination,
            resource: &req.resource,
            error,
        },
    )
}

/// The host publishing a client's metadata document, when its `client_id`
/// is one (registered clients have opaque ids).
fn published_by(client_id: &str) -> Option<String> {
    if !cimd::is_document_url(client_id) {
        return None;
    }
    url::Url::parse(client_id)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
}

/// Approves: creates the grant (a new principal), consuming the waiting
/// sign-in if there is one, and sends the code back.
async fn grant(
    o: &OAuth,
    req: AuthRequest,
    pending: Option<String>,
    status: StatusCode,
) -> Response {
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
        redirect_uri_given: req.redirect_uri_given,
        code_challenge: req.code_challenge.clone(),
        pending,
    };
    let cap = o.limits.config().pending_approvals_total;
    match grants::approve(o.store(), approval, o.lifetimes(), cap).await {
        Ok(Some(code)) => {
            let mut pairs = vec![("code", code.as_str())];
            if let Some(s) = &req.state {
                pairs.push(("state", s));
            }
            redirect(o, &req.redirect_uri, &pairs, status)
        }
        Ok(None) => page::error(
            StatusCode::BAD_REQUEST,
            "Approval expired",
            "This sign-in was already answered. Start it again from your MCP client if it did not finish.",
        ),
        Err(e) => {
            tracing::error!(error = %e, "storing an approval failed");
            refuse(
                o,
                Refusal::Redirect {
                    redirect_uri: req.redirect_uri,
                    state: req.state,
                    error: "server_error",
                    description: "internal error".into(),
                },
            )
        }
    }
}

fn refuse(o: &OAuth, r: Refusal) -> Response {
    match r {
        Refusal::Page {
            status,
            title,
            message,
            retry_after: wait,
        } => {
            tracing::warn!(?message, "authorization request refused (shown as a page)");
            let mut resp = page::error(status, title, &message);
            if let Some(secs) = wait {
                retry_after(&mut resp, secs);
            }
            resp
        }
        Refusal::Redirect {
            redirect_uri,
            state,
            error,
            description,
        } => {
            tracing::warn!(error, ?description, "authorization request refused");
            let mut pairs = vec![
                ("error", error),
                ("error_description", description.as_str()),
            ];
            if let Some(s) = &state {
                pairs.push(("state", s));
            }
            redirect(o, &redirect_uri, &pairs, StatusCode::FOUND)
        }
    }
}

/// A redirect to a registered URI with `pairs` and `iss` appended to its
/// query.
fn redirect(o: &OAuth, uri: &str, pairs: &[(&str, &str)], status: StatusCode) -> Response {
    let Ok(mut u) = url::Url::parse(uri) else {
        // Redirect URIs were parsed before they were stored.
        return page::error(
            StatusCode::BAD_REQUEST,
            "Bad redirect URI",
            "The client's redirect URI is not a URL.",
        );
    };
    let issuer = o.app.config.public_origin();
    u.query_pairs_mut()
        .extend_pairs(pairs)
        // RFC 9207 §2: the issuer identifier exactly as in the metadata.
        .append_pair("iss", &issuer);
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

async fn validate(o: &OAuth, from: AddrKey, query: &str) -> Result<AuthRequest, Refusal> {
    let p = Params::parse(query.as_bytes());
    let client_id = p
        .one("client_id")
        .map_err(bad_page)?
        .ok_or_else(|| bad_page("The request has no client_id.".into()))?;
    let auth = &o.app.config.auth;
    let client = if auth.client_metadata_documents && cimd::is_document_url(client_id) {
        document_client(o, from, client_id).await?
    } else {
        match grants::client(o.store(), client_id).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                return Err(bad_page(
                    "Unknown client. Unused registrations expire; reconnect from your MCP client so it registers again.".into(),
                ));
            }
            Err(e) => {
                tracing::error!(error = %e, "client lookup failed");
                return Err(server_error());
            }
        }
    };
    // A registered redirect URI, exactly or with any port on loopback
    // (RFC 8252 §7.3). Omitted only when exactly one is registered.
    let (redirect_uri, redirect_uri_given) = match p.one("redirect_uri").map_err(bad_page)? {
        Some(r) => {
            let requested = redirect::check(r, &auth.custom_redirect_schemes)
                .map(|(u, _)| u)
                .ok()
                .filter(|u| {
                    client
                        .redirect_uris
                        .iter()
                        .any(|reg| redirect::matches(reg, u))
                });
            match requested {
                Some(u) => (u.to_string(), true),
                None => {
                    return Err(bad_page(
                        "The redirect_uri is not one this client registered, so the server will not send you there.".into(),
                    ));
                }
            }
        }
        None => match client.redirect_uris.as_slice() {
            [only] => (only.clone(), false),
            _ => {
                return Err(bad_page(
                    "The request has no redirect_uri and the client registered several.".into(),
                ));
            }
        },
    };
    // From here on, errors go back to the client if the operator approved
    // it before (or approves everyone); otherwise they are shown here. A
    // repeated state cannot be echoed: send none.
    let trusted = auth.approval == Approval::Auto || client.approved;
    let state = p.one("state").ok().flatten().map(str::to_string);
    let back = |error: &'static str, description: String| {
        if trusted {
            Refusal::Redirect {
                redirect_uri: redirect_uri.clone(),
                state: state.clone(),
                error,
                description,
            }
        } else {
            bad_page(format!(
                "The sign-in request is not valid ({error}): {description}. Tell the makers of your MCP client."
            ))
        }
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
                // Quoted and cut short: the value is the request's, and goes
                // into the log as well as back to the client.
                format!(
                    "this server grants access only to {canonical}, not {:?}",
                    redirect::shorten(r)
                ),
            ));
        }
    };
    Ok(AuthRequest {
        client,
        redirect_uri,
        redirect_uri_given,
        state,
        code_challenge: code_challenge.to_string(),
        resource,
    })
}

/// The client whose `client_id` is the URL of its metadata document: kept
/// from an earlier fetch while fresh, else fetched now (throttled per
/// address like a registration, since it makes the server fetch and store).
async fn document_client(o: &OAuth, from: AddrKey, client_id: &str) -> Result<Client, Refusal> {
    let auth = &o.app.config.auth;
    let reach = if auth.test_only_loopback_client_metadata {
        Reach::AlsoLoopbackHttp
    } else {
        Reach::Public
    };
    let url = cimd::check_url(client_id, reach).map_err(|m| {
        bad_page(format!(
            "The client_id is not a usable metadata document URL: {m}."
        ))
    })?;
    let now = secrets::now_ms();
    let known = grants::document_client(o.store(), client_id)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "client lookup failed");
            server_error()
        })?;
    if let Some(k) = &known
        && k.expires_at > now
    {
        return Ok(k.client.clone());
    }
    o.limits.register(from).map_err(|secs| Refusal::Page {
        status: StatusCode::TOO_MANY_REQUESTS,
        title: "Too many sign-ins",
        message: format!(
            "Too many new clients from your address; try again in {}.",
            human_secs(secs)
        ),
        retry_after: Some(secs),
    })?;
    let fetched = cimd::fetch(&url, client_id, reach, &auth.custom_redirect_schemes)
        .await
        .map_err(|e| {
            tracing::warn!(?client_id, %from, detail = ?e.description, "client metadata document refused");
            bad_page(format!(
                "This client is known by its metadata document at {client_id}, which the server could not use: {}.",
                e.description.trim_start_matches("client metadata document: ")
            ))
        })?;
    let reg = fetched.registration;
    let client = Client {
        client_id: client_id.to_string(),
        secret_hash: None,
        auth_method: reg.auth_method,
        redirect_uris: reg.redirect_uris,
        client_name: reg.client_name,
        refresh: reg.refresh,
        approved: known.as_ref().is_some_and(|k| k.client.approved),
    };
    let mut metadata = reg.metadata;
    metadata.insert("client_id".into(), client_id.into());
    grants::store_document_client(
        o.store(),
        NewClient {
            client: client.clone(),
            metadata: serde_json::Value::Object(metadata),
            created_at: now,
            from,
            metadata_expires_at: Some(now.saturating_add(ms(fetched.fresh_for))),
        },
        o.limits.config(),
    )
    .await
    .map_err(|e| {
        tracing::error!(error = %e.description, "storing a client metadata document failed");
        server_error()
    })?;
    tracing::info!(?client_id, %from, fresh_for_secs = fetched.fresh_for.as_secs(), "client metadata document fetched");
    Ok(client)
}

fn server_error() -> Refusal {
    Refusal::Page {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        title: "Server error",
        message: "The server could not handle the sign-in; its log has the details.".into(),
        retry_after: None,
    }
}

fn server_error_page() -> Response {
    page::error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Server error",
        "The server could not handle the sign-in; its log has the details.",
    )
}

fn retry_after(r: &mut Response, secs: u64) {
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
}

/// Seconds in words: "40 seconds", "3 minutes".
fn human_secs(s: u64) -> String {
    match s {
        1 => "1 second".into(),
        s if s < 120 => format!("{s} seconds"),
        s => format!("{} minutes", s.div_ceil(60)),
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
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
