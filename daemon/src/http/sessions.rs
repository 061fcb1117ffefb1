//! MCP sessions bound to the principal that opened them, capped per
//! principal, put to sleep when idle, and closed when idle for long.
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
//! A live session costs about 70 KB, almost all of it the message buffers of
//! its two tasks (rmcp's session worker and its service loop: six channels
//! whose first block holds 32 messages of ~370 bytes each, allocated at
//! creation). Most sessions of a model-driven client are idle most of the
//! time, so a session with no request for `session_sleep`, no response
//! stream open and no resource subscription is put to *sleep*: its worker
//! and service end, and only its owner and the client's `initialize`
//! parameters (as compact JSON, a few hundred bytes) stay. The next request
//! carrying its id wakes it: rmcp asks this module's [`SessionStore`] for the
//! parameters, a fresh worker is spawned under the same id and the handshake
//! is replayed to it, then the request is served as if nothing happened.
//! Nothing a client sees depends on a session being awake (seats and
//! identity belong to the principal, never to the session); a woken session
//! costs one handshake replay, well under a millisecond.
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
use rmcp::model::{ClientJsonRpcMessage, InitializeRequestParams, ServerJsonRpcMessage};
use rmcp::transport::streamable_http_server::session::local::{
    LocalSessionManager, LocalSessionManagerError,
};
use rmcp::transport::streamable_http_server::session::{
    RestoreOutcome, ServerSseMessage, SessionId, SessionManager, SessionState, SessionStore,
    SessionStoreError,
};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

pub(crate) const SESSION_HEADER: &str = "mcp-session-id";

/// How long a sleeping session's next request waits for its old worker to
/// finish ending before it gives up (404, as for a closed session). The
/// worker ends within a scheduler tick; this only bounds a bug.
const WAKE_WAIT: Duration = Duration::from_secs(5);

/// Sessions and their owners.
pub struct Sessions {
    inner: LocalSessionManager,
    owners: Arc<Mutex<HashMap<SessionId, Owner>>>,
    /// Signalled whenever a session finishes falling asleep.
    slept: Notify,
    max_per_principal: usize,
    idle: Duration,
    sleep_after: Duration,
    metrics: Arc<Metrics>,
}

/// What the daemon keeps of one session.
struct Owner {
    principal: String,
    last_used: Instant,
    /// The client's `initialize` parameters as JSON: what waking needs.
    init: Option<Box<str>>,
    /// Response streams open now (requests in flight, a GET stream).
    streams: u32,
    /// A resource subscription notifies through the live session: it must
    /// not sleep.
    pinned: bool,
    state: Life,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Life {
    Awake,
    /// Its worker was told to end and has not finished yet.
    FallingAsleep,
    Asleep,
}

/// Whether a session id may be used by a principal.
#[derive(Debug, PartialEq, Eq)]
enum Access {
    Owner,
    Foreign,
    Unknown,
}

impl Sessions {
    pub fn new(
        max_per_principal: usize,
        idle: Duration,
        sleep_after: Duration,
        metrics: Arc<Metrics>,
    ) -> Arc<Sessions> {
        let mut inner = LocalSessionManager::default();
        // rmcp's own idle timer is the safety net behind ours.
        inner.session_config.keep_alive = Some(idle + Duration::from_secs(60));
        Arc::new(Sessions {
            inner,
            owners: Arc::default(),
            slept: Notify::new(),
            max_per_principal: max_per_principal.max(1),
            idle,
            sleep_after,
            metrics,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Owner>> {
        lock(&self.owners)
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
            let o = owners.entry(id.clone()).or_insert_with(|| Owner {
                principal: String::new(),
                last_used: Instant::now(),
                init: None,
                streams: 0,
                pinned: false,
                state: Life::Awake,
            });
            o.principal = principal.to_string();
            o.last_used = Instant::now();
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
            self.end(&old).await;
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
            self.end(id).await;
        }
        stale.len()
    }

    /// Puts to sleep every awake session with no request since
    /// `now - session_sleep`, no response stream open, no resource
    /// subscription, and a known `initialize`; returns how many.
    pub async fn sleep_idle(&self, now: Instant) -> usize {
        let sleepy: Vec<SessionId> = {
            let mut owners = self.lock();
            owners
                .iter_mut()
                .filter(|(_, o)| {
                    o.state == Life::Awake
                        && o.streams == 0
                        && !o.pinned
                        && o.init.is_some()
                        && now.saturating_duration_since(o.last_used) >= self.sleep_after
                })
                .map(|(k, o)| {
                    o.state = Life::FallingAsleep;
                    k.clone()
                })
                .collect()
        };
        for id in &sleepy {
            // Ends the worker; its service loop then calls `close_session`,
            // which completes the fall (see there).
            let _ = self.inner.close_session(id).await;
        }
        sleepy.len()
    }

    /// Closes a session for good, awake or asleep.
    async fn end(&self, id: &SessionId) {
        self.forget(id);
        let _ = self.inner.close_session(id).await;
    }

    /// Puts idle sessions to sleep and expires old ones, until `stop`.
    pub fn spawn_expiry(self: &Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let me = self.clone();
        let every = (self.idle / 4)
            .min(self.sleep_after / 2)
            .max(Duration::from_secs(1));
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(every) => {
                        let now = Instant::now();
                        me.expire_idle(now).await;
                        me.sleep_idle(now).await;
                    }
                }
            }
        });
    }

    /// Keeps session `id` awake for as long as it lives (it holds a
    /// resource subscription, which notifies through the live session).
    pub fn pin(&self, id: &str) {
        if let Some(o) = self.lock().get_mut(id) {
            o.pinned = true;
        }
    }

    /// For the direct long-poll path: a stream of session `id` counted open
    /// (it keeps the session awake) if the session is `principal`'s, awake
    /// and done with its handshake; `None` otherwise (rmcp then answers, as
    /// it does for a session that is asleep, closed or unknown).
    pub(crate) fn direct_stream(&self, id: &str, principal: &str) -> Option<StreamGuard> {
        let mut owners = self.lock();
        let key = owners.get_key_value(id)?.0.clone();
        let o = owners.get_mut(id)?;
        if o.principal != principal || o.state != Life::Awake || o.init.is_none() {
            return None;
        }
        o.streams += 1;
        o.last_used = Instant::now();
        Some(StreamGuard {
            owners: self.owners.clone(),
            id: key,
        })
    }

    /// Counts a response stream of `id` open until the guard drops.
    fn stream_opened(&self, id: &SessionId) -> StreamGuard {
        if let Some(o) = self.lock().get_mut(id) {
            o.streams += 1;
            o.last_used = Instant::now();
        }
        StreamGuard {
            owners: self.owners.clone(),
            id: id.clone(),
        }
    }

    fn forget(&self, id: &str) -> bool {
        let gone = self.lock().remove(id);
        if let Some(o) = &gone {
            self.metrics.sessions_open.fetch_sub(1, Ordering::Relaxed);
            if o.state != Life::Awake {
                self.metrics.sessions_asleep.fetch_sub(1, Ordering::Relaxed);
            }
        }
        gone.is_some()
    }

    /// The `initialize` parameters of a session that is asleep, once it has
    /// finished falling asleep; `None` for a session that is awake, closed
    /// or unknown.
    async fn wake_params(&self, id: &str) -> Option<Box<str>> {
        let deadline = tokio::time::Instant::now() + WAKE_WAIT;
        loop {
            let slept = self.slept.notified();
            tokio::pin!(slept);
            // Registered before the state is read: a fall completed in
            // between still wakes this wait.
            slept.as_mut().enable();
            match self.lock().get(id) {
                Some(o) if o.state == Life::Asleep => return o.init.clone(),
                Some(o) if o.state == Life::FallingAsleep => {}
                _ => return None,
            }
            if tokio::time::timeout_at(deadline, slept).await.is_err() {
                tracing::warn!("a session's worker did not end in time; it cannot be woken");
                return None;
            }
        }
    }
}

/// Counts one open response stream of a session (see [`Sessions::stream_opened`]).
pub(crate) struct StreamGuard {
    owners: Arc<Mutex<HashMap<SessionId, Owner>>>,
    id: SessionId,
}

fn lock(
    owners: &Mutex<HashMap<SessionId, Owner>>,
) -> std::sync::MutexGuard<'_, HashMap<SessionId, Owner>> {
    owners.lock().unwrap_or_else(|p| p.into_inner())
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if let Some(o) = lock(&self.owners).get_mut(&self.id) {
            o.streams = o.streams.saturating_sub(1);
            o.last_used = Instant::now();
        }
    }
}

/// A response stream that keeps its session awake while it is open.
pub struct Tracked<S> {
    inner: Pin<Box<S>>,
    _guard: StreamGuard,
}

impl<S: Stream> Stream for Tracked<S> {
    type Item = S::Item;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// The answer to a session id that is not the caller's: the same as rmcp's
/// for an unknown one, so it tells nothing.
fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "Not Found: Session not found").into_response()
}

/// Middleware on `/mcp`, after authentication: binds new sessions to the
/// caller and refuses other principals' session ids.
pub async fn bind_sessions(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let sessions = &state.sessions;
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
            // rmcp says 202 Accepted, but the session is closed by now (its
            // next request gets 404): 204 says so, and the Python SDK takes
            // anything but 200 and 204 for a failed termination.
            if resp.status() == StatusCode::ACCEPTED {
                return StatusCode::NO_CONTENT.into_response();
            }
        }
        Some(_) => {}
    }
    resp
}

/// The session store rmcp consults to wake a sleeping session: what
/// `initialize` said, kept only for sessions this daemon opened.
pub struct WakeStore(pub Arc<Sessions>);

type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, SessionStoreError>> + Send + 'a>>;

impl SessionStore for WakeStore {
    fn load<'a, 'b, 'c>(&'a self, session_id: &'b str) -> StoreFuture<'c, Option<SessionState>>
    where
        'a: 'c,
        'b: 'c,
        Self: 'c,
    {
        Box::pin(async move {
            let Some(json) = self.0.wake_params(session_id).await else {
                return Ok(None);
            };
            let params: InitializeRequestParams = serde_json::from_str(&json)?;
            Ok(Some(SessionState::new(params)))
        })
    }

    fn store<'a, 'b, 'c, 'd>(
        &'a self,
        session_id: &'b str,
        state: &'c SessionState,
    ) -> StoreFuture<'d, ()>
    where
        'a: 'd,
        'b: 'd,
        'c: 'd,
        Self: 'd,
    {
        let json = serde_json::to_string(&state.initialize_params).map(String::into_boxed_str);
        Box::pin(async move {
            let json = json?;
            let mut owners = self.0.lock();
            // Called before the middleware binds the session's owner: the
            // entry starts here, ownerless until then (an ownerless entry
            // serves no one: `access` matches no principal's id to "").
            let o = owners
                .entry(SessionId::from(session_id))
                .or_insert_with(|| Owner {
                    principal: String::new(),
                    last_used: Instant::now(),
                    init: None,
                    streams: 0,
                    pinned: false,
                    state: Life::Awake,
                });
            o.init = Some(json);
            Ok(())
        })
    }

    fn delete<'a, 'b, 'c>(&'a self, session_id: &'b str) -> StoreFuture<'c, ()>
    where
        'a: 'c,
        'b: 'c,
        Self: 'c,
    {
        self.0.forget(session_id);
        Box::pin(std::future::ready(Ok(())))
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
        // A session falling asleep: its service loop ended and says so
        // here. It stays known, asleep, and can be woken.
        {
            let mut owners = self.lock();
            if let Some(o) = owners.get_mut(id)
                && o.state == Life::FallingAsleep
            {
                o.state = Life::Asleep;
                self.metrics.sessions_asleep.fetch_add(1, Ordering::Relaxed);
                drop(owners);
                self.slept.notify_waiters();
                return Ok(());
            }
        }
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
        let guard = self.stream_opened(id);
        let s = self.inner.create_stream(id, message).await?;
        Ok(Tracked {
            inner: Box::pin(s),
            _guard: guard,
        })
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
        let guard = self.stream_opened(id);
        let s = self.inner.create_standalone_stream(id).await?;
        Ok(Tracked {
            inner: Box::pin(s),
            _guard: guard,
        })
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        let guard = self.stream_opened(id);
        let s = self.inner.resume(id, last_event_id).await?;
        Ok(Tracked {
            inner: Box::pin(s),
            _guard: guard,
        })
    }

    async fn restore_session(
        &self,
        id: SessionId,
    ) -> Result<RestoreOutcome<Self::Transport>, Self::Error> {
        {
            let mut owners = self.lock();
            match owners.get_mut(&id) {
                Some(o) if o.state == Life::Asleep => {
                    o.state = Life::Awake;
                    o.last_used = Instant::now();
                    self.metrics.sessions_asleep.fetch_sub(1, Ordering::Relaxed);
                }
                // Only sessions this module put to sleep are woken.
                _ => return Ok(RestoreOutcome::NotSupported),
            }
        }
        self.inner.restore_session(id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_session_serves_its_owner_only_and_the_cap_closes_the_least_recently_used() {
        let s = Sessions::new(
            2,
            Duration::from_secs(600),
            Duration::from_secs(30),
            Arc::new(Metrics::default()),
        );
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
        let s = Sessions::new(
            8,
            Duration::from_secs(600),
            Duration::from_secs(30),
            Arc::new(Metrics::default()),
        );
        let (a, _t) = s.create_session().await.unwrap();
        s.bind(a.clone(), "alice").await;
        assert_eq!(s.expire_idle(Instant::now()).await, 0);
        let later = Instant::now() + Duration::from_secs(601);
        assert_eq!(s.expire_idle(later).await, 1);
        assert!(!s.inner.has_session(&a).await.unwrap());
        assert_eq!(s.metrics.sessions_open.load(Ordering::Relaxed), 0);
    }

    fn init_state() -> SessionState {
        SessionState::new(
            serde_json::from_value(serde_json::json!({
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "sleeper", "version": "1"}
            }))
            .unwrap(),
        )
    }

    #[tokio::test]
    async fn only_idle_sessions_without_streams_or_subscriptions_sleep_and_only_sleepers_wake() {
        let s = Sessions::new(
            8,
            Duration::from_secs(600),
            Duration::from_secs(30),
            Arc::new(Metrics::default()),
        );
        let store = WakeStore(s.clone());
        let mut ids = Vec::new();
        let mut transports = Vec::new();
        for _ in 0..3 {
            let (id, t) = s.create_session().await.unwrap();
            store.store(&id, &init_state()).await.unwrap();
            s.bind(id.clone(), "alice").await;
            ids.push(id);
            transports.push(t);
        }
        let (idle, streaming, subscribed) = (&ids[0], &ids[1], &ids[2]);
        let _stream = s.stream_opened(streaming);
        s.pin(subscribed);

        assert_eq!(
            s.sleep_idle(Instant::now()).await,
            0,
            "not idle long enough"
        );
        let later = Instant::now() + Duration::from_secs(31);
        assert_eq!(s.sleep_idle(later).await, 1);
        assert!(!s.inner.has_session(idle).await.unwrap(), "worker ended");
        assert!(s.inner.has_session(streaming).await.unwrap());
        assert!(s.inner.has_session(subscribed).await.unwrap());
        // Not wakeable until its service loop has ended (rmcp then calls
        // close_session, as the transport below this module would).
        s.close_session(idle).await.unwrap();
        assert_eq!(s.metrics.sessions_asleep.load(Ordering::Relaxed), 1);
        assert_eq!(s.metrics.sessions_open.load(Ordering::Relaxed), 3);
        assert_eq!(s.access(idle, "mallory"), Access::Foreign);

        let state = store.load(idle).await.unwrap().expect("asleep: wakeable");
        assert_eq!(state.initialize_params.client_info.name, "sleeper");
        assert!(store.load(streaming).await.unwrap().is_none(), "awake");
        assert!(store.load("unknown").await.unwrap().is_none());
        assert!(matches!(
            s.restore_session(streaming.clone()).await.unwrap(),
            RestoreOutcome::NotSupported
        ));
        assert!(matches!(
            s.restore_session(idle.clone()).await.unwrap(),
            RestoreOutcome::Restored(_)
        ));
        assert!(s.inner.has_session(idle).await.unwrap());
        assert_eq!(s.metrics.sessions_asleep.load(Ordering::Relaxed), 0);

        // Asleep again, then closed for good (a DELETE): forgotten.
        s.sleep_idle(Instant::now() + Duration::from_secs(31)).await;
        s.close_session(idle).await.unwrap();
        assert_eq!(s.metrics.sessions_asleep.load(Ordering::Relaxed), 1);
        s.close_session(idle).await.unwrap();
        assert_eq!(s.access(idle, "alice"), Access::Unknown);
        assert_eq!(s.metrics.sessions_asleep.load(Ordering::Relaxed), 0);
        assert_eq!(s.metrics.sessions_open.load(Ordering::Relaxed), 2);
        assert!(store.load(idle).await.unwrap().is_none());
    }
}
