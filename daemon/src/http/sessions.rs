//! MCP sessions bound to the principal that opened them, capped per
//! principal, and closed when idle.
//!
//! rmcp's session manager keeps sessions by id alone: whoever holds an id
//! could use or DELETE the session. Here each session records the principal
//! whose `initialize` created it; a request with another principal's token
//! and that id is answered exactly like an unknown session (404), so an id
//! seen in a log or a proxy is useless to anyone else. A principal has at
//! most `max_sessions_per_principal` sessions (opening one more closes its
//! least recently used), and a session with no request for `session_idle`
//! is closed, so clients that never send DELETE cannot pile sessions up.
//!
//! Seats never depend on sessions (they belong to the principal), so a
//! closed session costs a client one new `initialize`, nothing else.

use crate::app::AppState;
use crate::metrics::Metrics;
use crate::model::Principal;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_core::Stream;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::streamable_http_server::session::SessionManager;
use rmcp::transport::streamable_http_server::session::local::{
    LocalSessionManager, LocalSessionManagerError,
};
use rmcp::transport::streamable_http_server::session::{ServerSseMessage, SessionId};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SESSION_HEADER: &str = "mcp-session-id";

/// Sessions and their owners.
pub struct Sessions {
    inner: LocalSessionManager,
    owners: Mutex<HashMap<SessionId, Owner>>,
    max_per_principal: usize,
    idle: Duration,
    metrics: Arc<Metrics>,
}

struct Owner {
    principal: String,
    last_used: Instant,
}

/// Whether a session id may be used by a principal.
#[derive(Debug, PartialEq, Eq)]
enum Access {
    Owner,
    Foreign,
    Unknown,
}

impl Sessions {
    pub fn new(max_per_principal: usize, idle: Duration, metrics: Arc<Metrics>) -> Arc<Sessions> {
        let mut inner = LocalSessionManager::default();
        // rmcp's own idle timer is the safety net behind ours.
        inner.session_config.keep_alive = Some(idle + Duration::from_secs(60));
        Arc::new(Sessions {
            inner,
            owners: Mutex::default(),
            max_per_principal: max_per_principal.max(1),
            idle,
            metrics,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Owner>> {
        self.owners.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `principal` may use session `id`; marks it used if so.
    fn access(&self, id: &str, principal: &str) -> Access {
        let mut owners = self.lock();
        match owners.get_mut(id) {
            Some(o) if o.principal == principal => {
                o.last_used = Instant::now();
                Access::Owner
            }
            Some(_) => Access::Foreign,
            None => Access::Unknown,
        }
    }

    /// Records `principal` as the owner of the new session `id`, and closes
    /// that principal's least recently used session when it has too many.
    async fn bind(&self, id: SessionId, principal: &str) {
        let displaced = {
            let mut owners = self.lock();
            owners.insert(
                id.clone(),
                Owner {
                    principal: principal.to_string(),
                    last_used: Instant::now(),
                },
            );
            let mut mine: Vec<(&SessionId, Instant)> = owners
                .iter()
                .filter(|(k, o)| o.principal == principal && **k != id)
                .map(|(k, o)| (k, o.last_used))
                .collect();
            if mine.len() >= self.max_per_principal {
                mine.sort_by_key(|(_, t)| *t);
                let n = mine.len() + 1 - self.max_per_principal;
                mine.into_iter()
                    .take(n)
                    .map(|(k, _)| k.clone())
                    .collect::<Vec<_>>()
            } else {
                Vec::new()
            }
        };
        for old in displaced {
            self.metrics
                .sessions_displaced
                .fetch_add(1, Ordering::Relaxed);
            let _ = self.close_session(&old).await;
        }
    }

    /// Closes every session idle at `now` for longer than the limit;
    /// returns how many.
    pub async fn expire_idle(&self, now: Instant) -> usize {
        let stale: Vec<SessionId> = {
            self.lock()
                .iter()
                .filter(|(_, o)| now.saturating_duration_since(o.last_used) > self.idle)
                .map(|(k, _)| k.clone())
                .collect()
        };
        for id in &stale {
            self.metrics
                .sessions_expired
                .fetch_add(1, Ordering::Relaxed);
            let _ = self.close_session(id).await;
        }
        stale.len()
    }

    /// Expires idle sessions every quarter of the idle limit, until `stop`.
    pub fn spawn_expiry(self: &Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let me = self.clone();
        let every = (self.idle / 4).max(Duration::from_secs(1));
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(every) => { me.expire_idle(Instant::now()).await; }
                }
            }
        });
    }
}

/// The answer to a session id that is not the caller's: the same as rmcp's
/// for an unknown one, so it tells nothing.
fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "Not Found: Session not found").into_response()
}

/// Middleware on `/mcp`, after authentication: binds new sessions to the
/// caller and refuses other principals' session ids.
pub async fn bind_sessions(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let sessions = state.sessions.clone();
    let Some(principal) = req.extensions().get::<Principal>().cloned() else {
        return next.run(req).await;
    };
    let sid = req
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(id) = &sid
        && sessions.access(id, &principal.id) == Access::Foreign
    {
        sessions
            .metrics
            .sessions_foreign
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(principal = %principal.id, "refused a request carrying another principal's session id");
        return not_found();
    }
    let delete = req.method() == Method::DELETE;
    let resp = next.run(req).await;
    match &sid {
        None => {
            if let Some(new) = resp
                .headers()
                .get(SESSION_HEADER)
                .and_then(|v: &HeaderValue| v.to_str().ok())
            {
                sessions.bind(SessionId::from(new), &principal.id).await;
            }
        }
        Some(id) if delete && resp.status().is_success() => {
            sessions.forget(id);
        }
        Some(_) => {}
    }
    resp
}

impl Sessions {
    fn forget(&self, id: &str) -> bool {
        let gone = self.lock().remove(id).is_some();
        if gone {
            self.metrics.sessions_open.fetch_sub(1, Ordering::Relaxed);
        }
        gone
    }
}

impl SessionManager for Sessions {
    type Error = LocalSessionManagerError;
    type Transport = <LocalSessionManager as SessionManager>::Transport;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport), Self::Error> {
        let r = self.inner.create_session().await?;
        self.metrics.sessions_open.fetch_add(1, Ordering::Relaxed);
        Ok(r)
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        self.inner.initialize_session(id, message).await
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        self.inner.has_session(id).await
    }

    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        // Counted once, whether the owner was recorded yet or not.
        if !self.forget(id) && self.inner.has_session(id).await.unwrap_or(false) {
            self.metrics.sessions_open.fetch_sub(1, Ordering::Relaxed);
        }
        self.inner.close_session(id).await
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.inner.create_stream(id, message).await
    }

    async fn accept_message(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<(), Self::Error> {
        self.inner.accept_message(id, message).await
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.inner.create_standalone_stream(id).await
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.inner.resume(id, last_event_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_session_serves_its_owner_only_and_the_cap_closes_the_least_recently_used() {
        let s = Sessions::new(2, Duration::from_secs(600), Arc::new(Metrics::default()));
        let (a1, _t1) = s.create_session().await.unwrap();
        s.bind(a1.clone(), "alice").await;
        assert_eq!(s.access(&a1, "alice"), Access::Owner);
        assert_eq!(s.access(&a1, "mallory"), Access::Foreign);
        assert_eq!(s.access("nope", "alice"), Access::Unknown);
        let (a2, _t2) = s.create_session().await.unwrap();
        s.bind(a2.clone(), "alice").await;
        let (b1, _t3) = s.create_session().await.unwrap();
        s.bind(b1.clone(), "bob").await;
        // Touch a1, so that a2 is alice's least recently used session.
        assert_eq!(s.access(&a1, "alice"), Access::Owner);
        let (a3, _t4) = s.create_session().await.unwrap();
        s.bind(a3.clone(), "alice").await;
        assert!(s.inner.has_session(&a1).await.unwrap());
        assert!(
            !s.inner.has_session(&a2).await.unwrap(),
            "least recently used closed"
        );
        assert!(s.inner.has_session(&a3).await.unwrap());
        assert!(
            s.inner.has_session(&b1).await.unwrap(),
            "another principal's are untouched"
        );
        assert_eq!(s.access(&a2, "alice"), Access::Unknown);
    }

    #[tokio::test]
    async fn idle_sessions_are_closed() {
        let s = Sessions::new(8, Duration::from_secs(600), Arc::new(Metrics::default()));
        let (a, _t) = s.create_session().await.unwrap();
        s.bind(a.clone(), "alice").await;
        assert_eq!(s.expire_idle(Instant::now()).await, 0);
        let later = Instant::now() + Duration::from_secs(601);
        assert_eq!(s.expire_idle(later).await, 1);
        assert!(!s.inner.has_session(&a).await.unwrap());
        assert_eq!(s.metrics.sessions_open.load(Ordering::Relaxed), 0);
    }
}
