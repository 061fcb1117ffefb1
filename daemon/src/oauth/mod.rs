//! The OAuth 2.1 authorization server for the MCP resource `PUBLIC_URL/mcp`
//! (MCP authorization spec 2025-06-18 and later).
//!
//! No Rust crate provides an authorization server of the shape MCP clients
//! need, so this is a small, strict one: discovery (RFC 9728, RFC 8414),
//! dynamic client registration (RFC 7591) and Client ID Metadata Documents,
//! the authorization code grant with mandatory PKCE S256, resource indicators
//! and the `iss` response parameter (RFC 7636, RFC 8707, RFC 9207), refresh
//! token rotation with reuse detection, and revocation (RFC 7009).
//!
//! Every endpoint sits at the origin root, because claude.ai calls
//! `/authorize`, `/token` and `/register` there whatever the metadata says.
//!
//! An approved grant is a [`Principal`](crate::model::Principal): approval
//! creates the principal, and every token of the grant (its family) names it,
//! so seats survive refreshes and reconnects. Access tokens go into the
//! `access_tokens` table that `store::principals::authenticate` reads on every `/mcp`
//! request (one indexed read); codes, refresh tokens and client secrets live
//! in the tables of migration 0002. Secrets are stored hashed and never logged.
//!
//! Layout: [`metadata`] (discovery), [`register`], [`authorize`] (with the
//! passphrase page in [`page`]), [`token`] (`/token`, `/revoke`), [`redirect`]
//! (the redirect URI policy), [`cimd`] (fetching metadata documents),
//! [`grants`] (every SQL statement), [`limits`] (per-address throttles),
//! [`admin`] (what `mcp-multiplayer approve` does), [`error`] (RFC 6749 error
//! responses).

pub mod admin;
mod authorize;
mod cimd;
pub(crate) mod clients;
mod error;
mod grants;
mod limits;
mod metadata;
mod page;
mod redirect;
mod register;
mod token;

pub use error::OAuthError;

use crate::app::AppState;
use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::routing::{get, post};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

/// State of the OAuth endpoints: the application plus the in-memory
/// per-address throttles (a restart resets them).
#[derive(Clone)]
struct OAuth {
    app: AppState,
    limits: Arc<limits::Limits>,
}

/// The OAuth routes, to merge into the application router.
pub fn router<S: Clone + Send + Sync + 'static>(state: AppState) -> Router<S> {
    let limits = state.config.auth.limits;
    let cfg = &state.config;
    if cfg.trusted_proxies.is_empty()
        && cfg.listen.ip().is_loopback()
        && cfg.public_url_explicit
        && !cfg.public_url.host_str().is_some_and(|h| {
            h == "localhost" || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
        })
    {
        tracing::warn!(
            public_url = %cfg.public_url,
            "listening on loopback behind what looks like a reverse proxy, without trusted_proxies: every client counts as the proxy's address for per-address limits; set trusted_proxies = [\"127.0.0.1\", \"::1\"]"
        );
    }
    let oauth = OAuth {
        app: state,
        limits: Arc::new(limits::Limits::new(limits)),
    };
    Router::new()
        .route(
            "/.well-known/oauth-protected-resource",
            get(metadata::protected_resource),
        )
        .route(
            "/.well-known/oauth-protected-resource/mcp",
            get(metadata::protected_resource),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            get(metadata::authorization_server),
        )
        .route("/register", post(register::register))
        .route(
            "/authorize",
            get(authorize::authorize).post(authorize::approve),
        )
        .route("/token", post(token::token))
        .route("/revoke", post(token::revoke))
        .layer(axum::middleware::from_fn(metadata::cors))
        .with_state(oauth)
}

/// Lifetimes from the config, in milliseconds.
#[derive(Debug, Clone, Copy)]
struct Lifetimes {
    access_ms: i64,
    refresh_ms: i64,
    code_ms: i64,
    grace_ms: i64,
}

impl OAuth {
    fn lifetimes(&self) -> Lifetimes {
        let a = &self.app.config.auth;
        let ms = |s: u64| i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX);
        Lifetimes {
            access_ms: ms(a.access_token_ttl_secs),
            refresh_ms: ms(a.refresh_token_ttl_secs),
            code_ms: ms(a.code_ttl_secs),
            grace_ms: ms(a.refresh_grace_secs),
        }
    }

    fn store(&self) -> &crate::store::Store {
        self.app.channels.store()
    }
}

/// The client's IP address, for per-address limits: the TCP peer, or what
/// the configured `trusted_proxies` say in `X-Forwarded-For`
/// ([`crate::client_addr`]).
#[derive(Debug, Clone, Copy)]
struct ClientIp(IpAddr);

impl FromRequestParts<OAuth> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, o: &OAuth) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let forwarded = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok());
        Ok(ClientIp(crate::client_addr::client_addr(
            peer,
            forwarded,
            &o.app.config.trusted_proxies,
        )))
    }
}

/// Form-encoded parameters (a query string or a request body), each of which
/// may appear at most once (RFC 6749 §3.1, §3.2).
struct Params(HashMap<String, Vec<String>>);

impl Params {
    fn parse(encoded: &[u8]) -> Params {
        let mut m: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in url::form_urlencoded::parse(encoded) {
            m.entry(k.into_owned()).or_default().push(v.into_owned());
        }
        Params(m)
    }

    /// The single value of `k` (an empty value counts as absent); `Err`
    /// naming `k` if it is repeated.
    fn one(&self, k: &str) -> Result<Option<&str>, String> {
        match self.0.get(k).map(Vec::as_slice) {
            None | Some([]) => Ok(None),
            Some([v]) => Ok(Some(v.as_str()).filter(|v| !v.is_empty())),
            Some(_) => Err(format!("the parameter {k} is repeated")),
        }
    }
}
