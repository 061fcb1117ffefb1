//! `/token` (OAuth 2.1 §3.2: authorization_code and refresh_token grants) and
//! `/revoke` (RFC 7009).
//!
//! Clients authenticate as they registered: public clients (`none`) by
//! `client_id` alone (PKCE is their proof), confidential ones with their
//! secret in the body (`client_secret_post`) or HTTP Basic
//! (`client_secret_basic`); either secret method is accepted from a
//! confidential client. Using two methods at once is refused (RFC 6749 §2.3).

use super::grants::{self, Client, CodeExchange, Issued, RefreshExchange, Revocation};
use super::{OAuth, OAuthError, Params};
use crate::secrets;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

pub async fn token(State(o): State<OAuth>, headers: HeaderMap, body: Bytes) -> Response {
    let result = async {
        let form = Form::parse(&body);
        let client = authenticate_client(&o, &headers, &form).await?;
        let grant_type = form.required("grant_type")?;
        let issued = match grant_type {
            "authorization_code" => {
                let x = CodeExchange {
                    code: form.required("code")?.to_string(),
                    code_verifier: form
                        .one("code_verifier")?
                        .ok_or_else(|| {
                            OAuthError::invalid_request(
                                "code_verifier is required (PKCE, RFC 7636)",
                            )
                        })?
                        .to_string(),
                    // Compared with the normalised URI the code was issued
                    // for, so normalised the same way.
                    redirect_uri: form
                        .one("redirect_uri")?
                        .map(|r| url::Url::parse(r).map_or_else(|_| r.to_string(), String::from)),
                    resource: form.resource()?,
                    client: client.clone(),
                };
                grants::exchange_code(o.store(), x, o.lifetimes()).await?
            }
            "refresh_token" => {
                if !client.refresh {
                    return Err(OAuthError::unauthorized_client(
                        "this client did not register the refresh_token grant",
                    ));
                }
                let x = RefreshExchange {
                    refresh_token: form.required("refresh_token")?.to_string(),
                    resource: form.resource()?,
                    client: client.clone(),
                };
                grants::refresh(o.store(), x, o.lifetimes()).await?
            }
            other => {
                return Err(OAuthError::unsupported_grant_type(format!(
                    "grant_type {other:?} is not supported; use authorization_code or refresh_token"
                )));
            }
        };
        tracing::info!(client_id = ?client.client_id, grant_type, "tokens issued");
        Ok::<_, OAuthError>(token_response(issued))
    }
    .await;
    result.unwrap_or_else(|e| {
        tracing::warn!(error = e.code, detail = ?e.description, "token request refused");
        e.into_response()
    })
}

/// RFC 7009 §2: always 200 once the client is authenticated, whether or not
/// the token was known (so the answer tells an attacker nothing).
pub async fn revoke(State(o): State<OAuth>, headers: HeaderMap, body: Bytes) -> Response {
    let result = async {
        let form = Form::parse(&body);
        let client = authenticate_client(&o, &headers, &form).await?;
        let token = form.required("token")?;
        let what = grants::revoke(o.store(), &client.client_id, token).await?;
        let what = match what {
            Revocation::Family => "grant",
            Revocation::AccessToken => "access token",
            Revocation::Nothing => "nothing",
        };
        tracing::info!(client_id = ?client.client_id, revoked = what, "revocation request");
        let mut r = StatusCode::OK.into_response();
        super::error::no_store(r.headers_mut());
        Ok::<_, OAuthError>(r)
    }
    .await;
    result.unwrap_or_else(|e| {
        tracing::warn!(error = e.code, detail = ?e.description, "revocation request refused");
        e.into_response()
    })
}

fn token_response(t: Issued) -> Response {
    let mut body = json!({
        "access_token": t.access_token,
        "token_type": "Bearer",
        "expires_in": t.expires_in,
    });
    if let Some(rt) = t.refresh_token {
        body["refresh_token"] = json!(rt);
    }
    let mut r = axum::Json(body).into_response();
    super::error::no_store(r.headers_mut());
    r
}

/// A token or revocation request's form body (RFC 6749 §3.2: each
/// parameter at most once).
struct Form(Params);

impl Form {
    fn parse(body: &[u8]) -> Form {
        Form(Params::parse(body))
    }

    fn one(&self, k: &str) -> Result<Option<&str>, OAuthError> {
        self.0.one(k).map_err(OAuthError::invalid_request)
    }

    fn required(&self, k: &str) -> Result<&str, OAuthError> {
        self.one(k)?
            .ok_or_else(|| OAuthError::invalid_request(format!("{k} is missing")))
    }

    /// RFC 8707 `resource`: at most one here (this server has one resource).
    fn resource(&self) -> Result<Option<String>, OAuthError> {
        match self.0.one("resource") {
            Ok(r) => Ok(r.map(str::to_string)),
            Err(_) => Err(OAuthError::invalid_target(
                "only one resource may be requested",
            )),
        }
    }
}

/// `Authorization: Basic` credentials, form-urlencoded inside as RFC 6749
/// §2.3.1 requires.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthError> {
    let Some(h) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = || OAuthError::invalid_client("malformed Basic credentials").with_basic_challenge();
    let h = h.to_str().map_err(|_| bad())?;
    let Some((scheme, rest)) = h.split_once(' ') else {
        return Err(bad());
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthError::invalid_client(
            "client authentication uses HTTP Basic or the request body",
        )
        .with_basic_challenge());
    }
    let raw = STANDARD.decode(rest.trim()).map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let (id, secret) = raw.split_once(':').ok_or_else(bad)?;
    let decode = |s: &str| -> Result<String, OAuthError> {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .ok_or_else(bad)
    };
    Ok(Some((decode(id)?, decode(secret)?)))
}

/// Authenticates the client of a token or revocation request.
async fn authenticate_client(
    o: &OAuth,
    headers: &HeaderMap,
    form: &Form,
) -> Result<Client, OAuthError> {
    let basic = basic_credentials(headers)?;
    let via_basic = basic.is_some();
    let form_id = form.one("client_id")?;
    let form_secret = form.one("client_secret")?;
    let (client_id, secret) = match basic {
        Some((id, secret)) => {
            if form_secret.is_some() {
                return Err(OAuthError::invalid_request(
                    "send the client secret once: in HTTP Basic or in the body, not both",
                ));
            }
            if form_id.is_some_and(|f| f != id) {
                return Err(OAuthError::invalid_request(
                    "client_id in the body differs from HTTP Basic",
                ));
            }
            (id, Some(secret).filter(|s| !s.is_empty()))
        }
        None => {
            let id = form_id.ok_or_else(|| {
                OAuthError::invalid_client(
                    "client_id is missing (send it in the body or HTTP Basic)",
                )
            })?;
            (id.to_string(), form_secret.map(str::to_string))
        }
    };
    let challenge = |e: OAuthError| {
        if via_basic {
            e.with_basic_challenge()
        } else {
            e
        }
    };
    let client = grants::client(o.store(), &client_id)
        .await?
        .ok_or_else(|| challenge(OAuthError::invalid_client("unknown client")))?;
    match (&client.secret_hash, secret) {
        (None, None) => Ok(client),
        (None, Some(_)) => Err(challenge(OAuthError::invalid_client(
            "this client registered as public (token_endpoint_auth_method none) and has no secret",
        ))),
        (Some(_), None) => Err(challenge(OAuthError::invalid_client(
            "client authentication is required for this client",
        ))),
        (Some(stored), Some(s)) => {
            if secrets::hashes_equal(stored, &secrets::hash_secret(&s)) {
                Ok(client)
            } else {
                Err(challenge(OAuthError::invalid_client("wrong client secret")))
            }
        }
    }
}
