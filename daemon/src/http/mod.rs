//! The HTTP surface: `/mcp` behind bearer authentication, the OAuth
//! endpoints (`crate::oauth`), `/healthz`, `/metrics`, and [`transcripts`]
//! (the signing keys, and a channel's export for a bearer-token holder). [`app`] is pure (no
//! socket), so tests drive it with `oneshot`; [`conn`] serves it on a socket
//! with the timeouts and connection caps, [`sessions`] binds MCP sessions
//! to their principal, [`health`] answers `/healthz`.

pub(crate) mod conn;
mod health;
pub(crate) mod longpoll;
pub(crate) mod sessions;
pub(crate) mod transcripts;

pub(crate) use health::Health;

use crate::app::AppState;
use crate::mcp::McpServer;
use crate::store::principals::{self, TokenRejection};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Largest JSON-RPC request body (bot sources are up to 256 KiB).
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// Builds the router.
pub fn app(state: AppState) -> Router {
    let cfg = &state.config;
    let mut mcp_config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(cfg.host_allowlist())
        .with_allowed_origins(cfg.origin_allowlist())
        .enforce_origin_validation()
        .with_sse_keep_alive(Some(Duration::from_secs(15)))
        .with_max_request_body_bytes(MAX_REQUEST_BYTES)
        // rmcp's token is not the shutdown signal: it ends sessions and their
        // streams, which would answer requests still in flight with 500.
        // Shutdown cancels it only after those requests were answered.
        .with_cancellation_token(state.mcp_stop.child_token());
    // Where rmcp finds what wakes a sleeping session (see `sessions`).
    mcp_config.session_store = Some(Arc::new(sessions::WakeStore(state.sessions.clone())));
    let for_factory = state.clone();
    let mcp = Mcp(Arc::new(StreamableHttpService::new(
        move || Ok(McpServer::new(for_factory.clone())),
        state.sessions.clone(),
        mcp_config,
    )));
    // The middlewares share one `Arc` of the state: axum hands a middleware
    // a clone of its state for every request, and a clone of `AppState`
    // (a dozen `Arc`s) per request showed in the profile of a thousand
    // long-polls waking at once.
    let shared = Arc::new(state.clone());
    let direct = longpoll::Direct::new(shared.clone(), &cfg.host_allowlist());
    let mcp_routes = Router::new()
        .route_service("/mcp", mcp)
        // Innermost: sees only authenticated requests whose session id is
        // not another principal's.
        .layer(middleware::from_fn_with_state(direct, longpoll::serve))
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            sessions::bind_sessions,
        ))
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            require_bearer,
        ));
    let export_routes = Router::new()
        .route("/channels/{channel_id}/export", get(transcripts::export))
        .layer(middleware::from_fn_with_state(shared, require_bearer));
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(metrics))
        .route(transcripts::KEYS_PATH, get(transcripts::keys))
        .merge(mcp_routes)
        .merge(export_routes)
        .merge(crate::mcp::icon::router())
        .merge(crate::oauth::router(state.clone()))
        .merge(crate::page::router())
        .with_state(state)
        .layer(
            tower_http::trace::TraceLayer::new_for_http()
                // Path only: query strings may carry OAuth state or codes.
                .make_span_with(|req: &Request| {
                    tracing::info_span!("http", method = %req.method(), path = %req.uri().path())
                }),
        )
}

/// rmcp's Streamable HTTP service, shared. The router clones its service
/// for every request, and rmcp's clones its whole config (the allowed hosts
/// and origins, a cancellation token); this serves each request from the
/// one instance instead.
#[derive(Clone)]
struct Mcp(Arc<StreamableHttpService<McpServer, sessions::Sessions>>);

impl tower::Service<Request> for Mcp {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response, Self::Error>> + Send>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let service = self.0.clone();
        Box::pin(async move { Ok(service.handle(req).await.into_response()) })
    }
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

/// Marks the request's connection as authenticated: it leaves the
/// unauthenticated caps (see [`conn`]).
fn connection_authenticated(req: &Request) {
    if let Some(c) = req.extensions().get::<conn::ConnHandle>() {
        c.0.authenticated();
    }
}

async fn require_bearer(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    if let Some(anon) = &state.anonymous {
        connection_authenticated(&req);
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
            connection_authenticated(&req);
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

async fn metrics(State(state): State<AppState>) -> Response {
    let gauges = crate::metrics::Gauges {
        schema_version: crate::store::SCHEMA_VERSION,
        uptime_secs: state.started.elapsed().as_secs(),
        sync_waiting: state.channels.waiting(),
        page_streams: state.page_streams.open(),
        sandbox_ready: matches!(state.sandbox.get(), Some(Ok(()))),
        hooks_prewarmed: state.bots.hooks_prewarmed(),
    };
    let text = state.metrics.render(&gauges);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
