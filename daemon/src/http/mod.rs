//! The HTTP surface: `/mcp` behind bearer authentication, the OAuth
//! endpoints (`crate::oauth`), `/healthz`, `/metrics`. [`app`] is pure (no
//! socket), so tests drive it with `oneshot`.

use crate::app::AppState;
use crate::mcp::McpServer;
use crate::store::principals::{self, TokenRejection};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Largest JSON-RPC request body (bot sources are up to 256 KiB).
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// Builds the router.
pub fn app(state: AppState) -> Router {
    let cfg = &state.config;
    let mcp_config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(cfg.host_allowlist())
        .with_allowed_origins(cfg.origin_allowlist())
        .enforce_origin_validation()
        .with_sse_keep_alive(Some(Duration::from_secs(15)))
        .with_max_request_body_bytes(MAX_REQUEST_BYTES)
        .with_cancellation_token(state.shutdown.child_token());
    let for_factory = state.clone();
    let mcp = StreamableHttpService::new(
        move || Ok(McpServer::new(for_factory.clone())),
        LocalSessionManager::default().into(),
        mcp_config,
    );
    let mcp_routes =
        Router::new()
            .route_service("/mcp", mcp)
            .layer(middleware::from_fn_with_state(
                state.clone(),
                require_bearer,
            ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .merge(mcp_routes)
        .merge(crate::mcp::icon::router())
        .merge(crate::oauth::router(state.clone()))
        .with_state(state)
        .layer(
            tower_http::trace::TraceLayer::new_for_http()
                // Path only: query strings may carry OAuth state or codes.
                .make_span_with(|req: &Request| {
                    tracing::info_span!("http", method = %req.method(), path = %req.uri().path())
                }),
        )
}

/// `401` as RFC 6750 §3 and RFC 9728 §5.1 want it: always point at the
/// protected-resource metadata; say `invalid_token` only when one was sent.
fn unauthorized(state: &AppState, token_sent: bool) -> Response {
    state.metrics.auth_failures.fetch_add(1, Ordering::Relaxed);
    let meta = format!(
        "{}/.well-known/oauth-protected-resource/mcp",
        state.config.public_origin()
    );
    let challenge = if token_sent {
        format!(
            "Bearer resource_metadata=\"{meta}\", error=\"invalid_token\", error_description=\"The access token is unknown, expired, revoked, or for another resource\""
        )
    } else {
        format!("Bearer resource_metadata=\"{meta}\"")
    };
    let mut resp = (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({
            "error": if token_sent { "invalid_token" } else { "unauthorized" },
            "error_description": "Send Authorization: Bearer <token>. Create one with `mcp-multiplayer token create NAME` or sign in with OAuth."
        })),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    // The request body is left unread, so hyper may close the connection
    // after this response without saying so; a client that pools it (the
    // Python SDK, mid OAuth discovery) then fails its next request. Say it.
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

async fn require_bearer(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if let Some(anon) = &state.anonymous {
        req.extensions_mut().insert(anon.clone());
        return next.run(req).await;
    }
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| {
            let (scheme, rest) = h.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| rest.trim().to_string())
        })
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return unauthorized(&state, false);
    };
    match principals::authenticate(state.channels.store(), &token, &state.config.resource()).await {
        Ok(Ok(principal)) => {
            tracing::Span::current().record("principal", principal.id.as_str());
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
        Ok(Err(TokenRejection::Invalid)) => {
            tracing::warn!("refused a bearer token");
            unauthorized(&state, true)
        }
        Err(e) => {
            tracing::error!(error = %e, "token lookup failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"error": "temporarily_unavailable"})),
            )
                .into_response()
        }
    }
}

async fn healthz(State(state): State<AppState>) -> Response {
    let db_ok = principals::ping(state.channels.store()).await.is_ok();
    let sandbox = match state.sandbox.get() {
        None => json!("checking"),
        Some(Ok(())) => json!("ok"),
        Some(Err(e)) => json!({"error": e}),
    };
    // The runner inherits the daemon's uid: as root it switches each hook to a
    // sandbox uid; otherwise it confines with an unprivileged user namespace.
    let sandbox_mode = if nix::unistd::geteuid().is_root() {
        "root: per-hook sandbox uid"
    } else {
        "user namespace"
    };
    let body = json!({
        "status": if db_ok { "ok" } else { "degraded" },
        "version": env!("CARGO_PKG_VERSION"),
        "database": if db_ok { "ok" } else { "error" },
        "sandbox": sandbox,
        "sandbox_mode": sandbox_mode,
    });
    let code = if db_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body)).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    let hooks = state.dispatcher.hooks_run();
    let text = format!(
        "# HELP mcp_multiplayer_posts_total User messages posted.\n# TYPE mcp_multiplayer_posts_total counter\nmcp_multiplayer_posts_total {}\n\
         # HELP mcp_multiplayer_hooks_total Bot hooks run.\n# TYPE mcp_multiplayer_hooks_total counter\nmcp_multiplayer_hooks_total {}\n\
         # HELP mcp_multiplayer_auth_failures_total Requests refused for a missing or invalid token.\n# TYPE mcp_multiplayer_auth_failures_total counter\nmcp_multiplayer_auth_failures_total {}\n\
         # HELP mcp_multiplayer_sync_waiting sync_messages calls waiting for a message.\n# TYPE mcp_multiplayer_sync_waiting gauge\nmcp_multiplayer_sync_waiting {}\n",
        state.metrics.posts.load(Ordering::Relaxed),
        hooks,
        state.metrics.auth_failures.load(Ordering::Relaxed),
        state.channels.waiting(),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
