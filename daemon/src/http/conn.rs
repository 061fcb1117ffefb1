//! Connections: the accept loop, each connection's timeouts, the caps on
//! how many are open, and their drain at shutdown.
//!
//! The daemon drives hyper itself (instead of `axum::serve`) because the
//! open internet needs what that loop does not offer:
//!
//! - **Timeouts.** A request's head must arrive within `header_timeout` of
//!   its first byte (one byte every few seconds no longer holds a
//!   connection); a connection with no request in flight closes after
//!   `idle_timeout`; a request body that sends nothing for `body_timeout`
//!   is answered `408`; a response write that makes no progress for
//!   `write_timeout` (a client that stopped reading) closes the connection.
//!   A parked long-poll is a request in flight, so none of these cut it.
//! - **Caps, with room for authenticated traffic.** Every connection starts
//!   *unauthenticated* and becomes *authenticated* when it carries a valid
//!   bearer token. Unauthenticated connections are capped per peer address
//!   and in total; past a cap, a new connection closes the oldest
//!   unauthenticated one that has had time to authenticate (an idle one
//!   first) instead of being refused, so an address cannot fill the table
//!   with idle sockets, a burst of new connections is not cut before its
//!   requests arrive, and a legitimate client always gets in. At the total
//!   cap the oldest unauthenticated connection goes whatever its age.
//!   Authenticated connections are never closed to make room; only when
//!   every slot is taken by them is a new one refused.
//!   The total stays below the open-file limit (raised to its hard limit at
//!   start), so `accept` never fails with `EMFILE`.
//! - **Drain.** At shutdown the loop stops accepting and every connection is
//!   told to finish its request in flight and close.
//!
//! Each request also records its route, status and latency in the metrics
//! here, at the one place every request passes.

use crate::channels::Herd;
use crate::metrics::{Metrics, route_of};
use axum::Router;
use axum::body::Bytes;
use axum::extract::ConnectInfo;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// File descriptors kept free for everything but client connections: the
/// database (writer, readers, WAL), bot runners' pipes, the log.
pub const FD_RESERVE: u64 = 128;

/// How many unauthenticated connections eviction looks at for an idle one
/// before it takes the oldest.
const EVICTION_SCAN: usize = 32;

/// How long a new connection has to show a token before the soft caps may
/// close it: a client's request arrives in milliseconds; an idle or slow
/// flood's never does.
pub const EVICT_AFTER: Duration = Duration::from_secs(2);

/// The limits one connection and the table live by.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
    pub body_timeout: Duration,
    pub max_total: usize,
    pub max_unauthenticated: usize,
    pub max_unauthenticated_per_peer: usize,
    /// See [`EVICT_AFTER`].
    pub evict_after: Duration,
}

impl ConnLimits {
    /// The configured limits, with the totals bounded by `open_files` (the
    /// soft `RLIMIT_NOFILE` in force).
    pub fn new(cfg: &crate::config::HttpConfig, open_files: u64) -> ConnLimits {
        let available = usize::try_from(open_files.saturating_sub(FD_RESERVE))
            .unwrap_or(usize::MAX)
            .max(16);
        let max_total = match cfg.max_connections {
            Some(n) if n > available => {
                tracing::warn!(
                    configured = n,
                    available,
                    "http.max_connections is more than the open-file limit allows; using the lower figure"
                );
                available
            }
            Some(n) => n,
            None => available,
        };
        let max_unauthenticated = cfg
            .max_unauthenticated_connections
            .unwrap_or(max_total / 2)
            .clamp(1, max_total);
        ConnLimits {
            header_timeout: cfg.header_timeout,
            idle_timeout: cfg.idle_timeout,
            write_timeout: cfg.write_timeout,
            body_timeout: cfg.body_timeout,
            max_total,
            max_unauthenticated,
            max_unauthenticated_per_peer: cfg.max_unauthenticated_per_peer.min(max_unauthenticated),
            evict_after: EVICT_AFTER,
        }
    }
}

/// Raises the soft open-file limit to the hard limit; returns the soft limit
/// in force afterwards.
pub fn raise_open_file_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => {
                tracing::info!(from = soft, to = hard, "raised the open-file limit");
                hard
            }
            Err(e) => {
                tracing::warn!(soft, hard, error = %e, "cannot raise the open-file limit");
                soft
            }
        },
        Ok((soft, _)) => soft,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-file limit; assuming 1024");
            1024
        }
    }
}

/// The table of open connections.
pub struct Conns {
    limits: ConnLimits,
    metrics: Arc<Metrics>,
    epoch: Instant,
    table: Mutex<Table>,
    /// Signalled when the last connection closes.
    empty: Notify,
    /// Requests in flight other than `GET`s (which hold event streams open
    /// until their session ends): what shutdown waits for.
    calls: AtomicUsize,
    /// Signalled when `calls` drops to zero.
    calls_done: Notify,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    all: BTreeMap<u64, Arc<Conn>>,
    unauthenticated: BTreeSet<u64>,
    by_peer: HashMap<IpAddr, BTreeSet<u64>>,
}

/// One connection's state, shared by its task, its I/O and its requests.
pub struct Conn {
    id: u64,
    peer: IpAddr,
    table: Weak<Conns>,
    authenticated: AtomicBool,
    in_flight: AtomicUsize,
    /// When the head of the next request started arriving (ms since the
    /// table's epoch, plus one; 0: not started).
    head_started: AtomicU64,
    /// When the connection last became idle (ms since the epoch).
    idle_since: AtomicU64,
    /// When it was accepted (ms since the epoch).
    admitted: u64,
    /// Told when a deadline may have moved.
    wake: Notify,
    evicted: CancellationToken,
    /// Set while the next read waits for a herd (see
    /// [`Conn::defer_next_read`]).
    deferring: AtomicBool,
    defer: Mutex<Option<(Arc<Herd>, Duration)>>,
}

/// The request extension naming the connection a request came on.
#[derive(Clone)]
pub struct ConnHandle(pub Arc<Conn>);

impl Conn {
    /// Marks the connection as one that showed a valid token: it no longer
    /// counts against the unauthenticated caps and is never evicted.
    pub fn authenticated(&self) {
        if !self.authenticated.swap(true, Ordering::Relaxed)
            && let Some(t) = self.table.upgrade()
        {
            t.promote(self.id, self.peer);
        }
    }

    /// Holds the connection's next read (its next request) until every
    /// wake-up of `herd` is resolved, or for `at_most`. The direct
    /// long-poll path asks this of a waiter it answered as one of a herd:
    /// the request is read later, and then served as it would have been.
    pub fn defer_next_read(&self, herd: Arc<Herd>, at_most: Duration) {
        *self.defer.lock().unwrap_or_else(|p| p.into_inner()) = Some((herd, at_most));
        self.deferring.store(true, Ordering::Release);
    }

    /// What the next read waits for, once.
    fn take_deferral(&self) -> Option<(Arc<Herd>, Duration)> {
        if !self.deferring.swap(false, Ordering::AcqRel) {
            return None;
        }
        self.defer.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    fn now_ms(&self) -> u64 {
        self.table
            .upgrade()
            .map_or(0, |t| t.epoch.elapsed().as_millis() as u64)
    }

    fn bytes_read(&self) {
        if self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_started.load(Ordering::Relaxed) == 0
        {
            self.head_started
                .store(self.now_ms() + 1, Ordering::Relaxed);
            self.wake.notify_one();
        }
    }

    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_started.store(0, Ordering::Relaxed);
    }

    fn request_finished(&self) {
        if self.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.head_started.store(0, Ordering::Relaxed);
            self.idle_since.store(self.now_ms(), Ordering::Relaxed);
            self.wake.notify_one();
        }
    }

    /// When the connection must close unless something happens first, and
    /// why: `None` while a request is in flight.
    fn deadline(&self, limits: &ConnLimits) -> Option<(u64, &'static str)> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let head = self.head_started.load(Ordering::Relaxed);
        if head > 0 {
            Some((
                head - 1 + limits.header_timeout.as_millis() as u64,
                "header_timeout",
            ))
        } else {
            Some((
                self.idle_since.load(Ordering::Relaxed) + limits.idle_timeout.as_millis() as u64,
                "idle_timeout",
            ))
        }
    }
}

impl Conns {
    pub fn new(limits: ConnLimits, metrics: Arc<Metrics>) -> Arc<Conns> {
        Arc::new(Conns {
            limits,
            metrics,
            epoch: Instant::now(),
            table: Mutex::default(),
            empty: Notify::new(),
            calls: AtomicUsize::new(0),
            calls_done: Notify::new(),
        })
    }

    /// Waits until no call (a request other than a `GET` stream) is in flight.
    pub async fn calls_done(&self) {
        loop {
            let done = self.calls_done.notified();
            if self.calls.load(Ordering::Acquire) == 0 {
                return;
            }
            done.await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a new connection from `peer`, closing older unauthenticated
    /// ones to make room; `None` when every slot holds an authenticated
    /// connection.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<Arc<Conn>> {
        let mut evict = Vec::new();
        let now = self.epoch.elapsed().as_millis() as u64;
        // Soft caps: only connections that had time to authenticate.
        // (None: nobody is that old yet.)
        let old = now.checked_sub(self.limits.evict_after.as_millis() as u64);
        let conn = {
            let mut t = self.lock();
            let per_peer = t.by_peer.get(&peer).map_or(0, BTreeSet::len);
            if per_peer >= self.limits.max_unauthenticated_per_peer
                && let Some(by) = old
                && let Some(id) = pick(&t, t.by_peer.get(&peer), Some(by))
            {
                evict.extend(t.remove(id));
            }
            if t.unauthenticated.len() >= self.limits.max_unauthenticated
                && let Some(by) = old
                && let Some(id) = pick(&t, Some(&t.unauthenticated), Some(by))
            {
                evict.extend(t.remove(id));
            }
            if t.all.len() >= self.limits.max_total {
                match pick(&t, Some(&t.unauthenticated), None) {
                    Some(id) => evict.extend(t.remove(id)),
                    None => {
                        drop(t);
                        self.metrics.conn_closed("refused");
                        return None;
                    }
                }
            }
            t.next_id += 1;
            let conn = Arc::new(Conn {
                id: t.next_id,
                peer,
                table: Arc::downgrade(self),
                authenticated: AtomicBool::new(false),
                in_flight: AtomicUsize::new(0),
                head_started: AtomicU64::new(0),
                idle_since: AtomicU64::new(now),
                admitted: now,
                wake: Notify::new(),
                evicted: CancellationToken::new(),
                deferring: AtomicBool::new(false),
                defer: Mutex::new(None),
            });
            t.all.insert(conn.id, conn.clone());
            t.unauthenticated.insert(conn.id);
            t.by_peer.entry(peer).or_default().insert(conn.id);
            conn
        };
        for c in evict {
            self.metrics.conn_closed("evicted");
            self.metrics
                .connections_open
                .fetch_sub(1, Ordering::Relaxed);
            c.evicted.cancel();
        }
        self.metrics
            .connections_open
            .fetch_add(1, Ordering::Relaxed);
        self.metrics
            .connections_accepted
            .fetch_add(1, Ordering::Relaxed);
        Some(conn)
    }

    fn promote(&self, id: u64, peer: IpAddr) {
        let mut t = self.lock();
        t.unauthenticated.remove(&id);
        t.unpeer(peer, id);
    }

    /// Forgets a closed connection (a no-op for an evicted one, which was
    /// removed when it was chosen).
    fn closed(&self, id: u64) {
        let mut t = self.lock();
        if t.remove(id).is_some() {
            self.metrics
                .connections_open
                .fetch_sub(1, Ordering::Relaxed);
        }
        if t.all.is_empty() {
            self.empty.notify_waiters();
        }
    }

    /// Open connections now.
    pub fn open(&self) -> usize {
        self.lock().all.len()
    }

    /// Waits until every connection has closed.
    pub async fn closed_all(&self) {
        loop {
            let empty = self.empty.notified();
            if self.lock().all.is_empty() {
                return;
            }
            empty.await;
        }
    }
}

impl Table {
    fn remove(&mut self, id: u64) -> Option<Arc<Conn>> {
        let c = self.all.remove(&id)?;
        self.unauthenticated.remove(&id);
        self.unpeer(c.peer, id);
        Some(c)
    }

    fn unpeer(&mut self, peer: IpAddr, id: u64) {
        if let Some(set) = self.by_peer.get_mut(&peer) {
            set.remove(&id);
            if set.is_empty() {
                self.by_peer.remove(&peer);
            }
        }
    }
}

/// The unauthenticated connection to close: among those admitted at or
/// before `admitted_by` (any, if `None`), the oldest idle one of the first
/// few, else the oldest.
fn pick(t: &Table, among: Option<&BTreeSet<u64>>, admitted_by: Option<u64>) -> Option<u64> {
    let among = among?;
    let eligible = |id: &u64| {
        t.all
            .get(id)
            .is_some_and(|c| admitted_by.is_none_or(|by| c.admitted <= by))
    };
    // Ids grow with admission time: the eligible ones come first.
    let idle = among
        .iter()
        .take(EVICTION_SCAN)
        .copied()
        .take_while(eligible)
        .find(|id| {
            t.all
                .get(id)
                .is_some_and(|c| c.in_flight.load(Ordering::Relaxed) == 0)
        });
    idle.or_else(|| among.iter().next().copied().filter(eligible))
}

/// Accepts connections until `stop` fires, serving each with `app`; then
/// tells every connection to finish its request in flight and close
/// (`drain`), and returns once the listener is closed.
pub async fn accept_loop(
    listener: TcpListener,
    app: Router,
    conns: Arc<Conns>,
    stop: CancellationToken,
) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Per-connection failures (a peer that reset) and running
                    // out of descriptors alike: never spin on them.
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let Some(conn) = conns.admit(peer.ip()) else {
            drop(stream);
            continue;
        };
        // TCP_NODELAY: a response goes out in several small writes (headers,
        // then SSE events); with Nagle's algorithm the later ones wait for
        // the peer's delayed ACK, ~40 ms a request (BENCHMARKS.md).
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        tokio::spawn(serve_conn(
            stream,
            peer,
            conn,
            conns.clone(),
            app.clone(),
            stop.clone(),
        ));
    }
}

/// Serves one connection until it closes, times out, is evicted, or drains.
async fn serve_conn(
    stream: TcpStream,
    peer: SocketAddr,
    conn: Arc<Conn>,
    conns: Arc<Conns>,
    app: Router,
    drain: CancellationToken,
) {
    let limits = conns.limits.clone();
    let metrics = conns.metrics.clone();
    let io = TimedIo {
        inner: stream,
        conn: conn.clone(),
        write_timeout: limits.write_timeout,
        stall: None,
        gate: None,
        metrics: metrics.clone(),
    };
    let svc_conn = conn.clone();
    let svc_metrics = metrics.clone();
    let svc_conns = conns.clone();
    let body_timeout = limits.body_timeout;
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        svc_conn.request_started();
        let call = (req.method() != hyper::Method::GET).then(|| {
            svc_conns.calls.fetch_add(1, Ordering::AcqRel);
            svc_conns.clone()
        });
        let guard = InFlight {
            conn: svc_conn.clone(),
            call,
        };
        let route = route_of(req.uri().path());
        let started = Instant::now();
        let metrics = svc_metrics.clone();
        let stalled = Arc::new(AtomicBool::new(false));
        let mut req = req.map(|body| {
            axum::body::Body::new(TimedBody {
                body,
                timeout: body_timeout,
                timer: None,
                stalled: stalled.clone(),
            })
        });
        req.extensions_mut().insert(ConnectInfo(peer));
        req.extensions_mut().insert(ConnHandle(svc_conn.clone()));
        let response = app.clone().oneshot(req);
        async move {
            let mut resp = match response.await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            if stalled.load(Ordering::Relaxed) {
                // The client stopped sending its body: its fault, not a
                // server error, whatever the handler made of the cut body.
                resp = body_timed_out();
            }
            metrics.http_request(route, resp.status().as_u16(), started.elapsed());
            Ok::<_, Infallible>(resp.map(|body| Guarded {
                body,
                _guard: guard,
            }))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The header timeout is kept here (from the first byte of a head, not
    // from when the connection went idle); hyper's own would also cut idle
    // keep-alive connections at the same, short, time.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(None::<Duration>)
        .keep_alive(true);
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    // Made once: each wake-up of the connection's task polls them (a
    // thousand long-polls waking at once showed their making in the profile).
    let evicted = conn.evicted.cancelled();
    tokio::pin!(evicted);
    let drained = drain.cancelled();
    tokio::pin!(drained);
    let mut draining = false;
    loop {
        let woken = conn.wake.notified();
        let deadline = conn.deadline(&limits);
        let sleep = async {
            match deadline {
                Some((at_ms, _)) => {
                    let at = conns.epoch + Duration::from_millis(at_ms);
                    tokio::time::sleep_until(at.into()).await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            r = connection.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                break;
            }
            _ = &mut evicted => break,
            _ = &mut drained, if !draining => {
                connection.as_mut().graceful_shutdown();
                draining = true;
            }
            _ = sleep => {
                // Still due? (A request may have started meanwhile.)
                let now = conns.epoch.elapsed().as_millis() as u64;
                if let Some((at, why)) = conn.deadline(&limits)
                    && now >= at
                {
                    metrics.conn_closed(why);
                    break;
                }
            }
            _ = woken => {}
        }
    }
    conns.closed(conn.id);
}

/// The answer to a request whose body stopped arriving.
fn body_timed_out() -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        axum::http::StatusCode::REQUEST_TIMEOUT,
        [(axum::http::header::CONNECTION, "close")],
        "Request Timeout: the request body stopped arriving",
    )
        .into_response()
}

/// A request body that ends when no frame arrives for `timeout`, and says
/// so in `stalled`.
struct TimedBody {
    body: Incoming,
    timeout: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    stalled: Arc<AtomicBool>,
}

impl HttpBody for TimedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(r) => {
                this.timer = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let timeout = this.timeout;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if timer.as_mut().poll(cx).is_ready() {
                    this.stalled.store(true, Ordering::Relaxed);
                    // Ends the body: the handler sees a short body, and its
                    // response is replaced by a 408.
                    return Poll::Ready(None);
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.stalled.load(Ordering::Relaxed) || self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Counts a request in flight until its response body is done (or dropped).
struct InFlight {
    conn: Arc<Conn>,
    /// The table, for a request that counts as a call.
    call: Option<Arc<Conns>>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.conn.request_finished();
        if let Some(t) = &self.call
            && t.calls.fetch_sub(1, Ordering::AcqRel) == 1
        {
            t.calls_done.notify_waiters();
        }
    }
}

/// A response body that keeps its request counted in flight.
struct Guarded {
    body: axum::body::Body,
    _guard: InFlight,
}

impl HttpBody for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The socket, noting when a request head starts and cutting writes that
/// stall.
struct TimedIo {
    inner: TcpStream,
    conn: Arc<Conn>,
    write_timeout: Duration,
    /// Running while a write waits for the peer to read.
    stall: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Running while the next read waits for a herd
    /// ([`Conn::defer_next_read`]).
    gate: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    metrics: Arc<Metrics>,
}

impl TimedIo {
    /// Turns a pending write into a timeout once it has waited too long.
    fn pending_write<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let timeout = self.write_timeout;
        let stall = self
            .stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if stall.as_mut().poll(cx).is_ready() {
            self.metrics.conn_closed("write_timeout");
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading",
            )));
        }
        Poll::Pending
    }

    fn wrote<T>(&mut self, r: Poll<io::Result<T>>, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        match r {
            Poll::Ready(r) => {
                self.stall = None;
                Poll::Ready(r)
            }
            Poll::Pending => self.pending_write(cx),
        }
    }
}

impl AsyncRead for TimedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.gate.is_none()
            && let Some((herd, at_most)) = self.conn.take_deferral()
            && herd.pending() > 0
        {
            self.gate = Some(Box::pin(async move { herd.settled(at_most).await }));
        }
        if let Some(gate) = self.gate.as_mut() {
            if gate.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.gate = None;
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.conn.bytes_read();
        }
        r
    }
}

impl AsyncWrite for TimedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(r, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(r, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.wrote(r, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn table(total: usize, unauth: usize, per_peer: usize) -> Arc<Conns> {
        table_with_grace(total, unauth, per_peer, Duration::ZERO)
    }

    fn table_with_grace(
        total: usize,
        unauth: usize,
        per_peer: usize,
        grace: Duration,
    ) -> Arc<Conns> {
        Conns::new(
            ConnLimits {
                header_timeout: Duration::from_secs(1),
                idle_timeout: Duration::from_secs(1),
                write_timeout: Duration::from_secs(1),
                body_timeout: Duration::from_secs(1),
                max_total: total,
                max_unauthenticated: unauth,
                max_unauthenticated_per_peer: per_peer,
                evict_after: grace,
            },
            Arc::new(Metrics::default()),
        )
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, n))
    }

    #[test]
    fn a_peer_over_its_cap_loses_its_oldest_idle_unauthenticated_connection() {
        let t = table(100, 50, 3);
        let a: Vec<_> = (0..3).map(|_| t.admit(ip(1)).unwrap()).collect();
        a[0].request_started(); // busy: spared while an idle one exists
        let d = t.admit(ip(1)).unwrap();
        assert!(!a[0].evicted.is_cancelled());
        assert!(a[1].evicted.is_cancelled(), "the oldest idle one goes");
        assert!(!a[2].evicted.is_cancelled() && !d.evicted.is_cancelled());
        // Another peer is not affected.
        let b = t.admit(ip(2)).unwrap();
        assert!(!b.evicted.is_cancelled());
        assert_eq!(t.open(), 4);
    }

    #[test]
    fn authenticated_connections_are_never_evicted_and_keep_their_room() {
        let t = table(4, 2, 2);
        let auth: Vec<_> = (0..2).map(|_| t.admit(ip(1)).unwrap()).collect();
        for c in &auth {
            c.authenticated();
        }
        // A flood of unauthenticated connections from many peers churns
        // within the unauthenticated share.
        let flood: Vec<_> = (0..50).map(|i| t.admit(ip(10 + i)).unwrap()).collect();
        assert!(auth.iter().all(|c| !c.evicted.is_cancelled()));
        assert_eq!(
            flood.iter().filter(|c| !c.evicted.is_cancelled()).count(),
            2
        );
        assert_eq!(t.open(), 4);
        // With every slot authenticated, a newcomer is refused.
        for c in flood.iter().filter(|c| !c.evicted.is_cancelled()) {
            c.authenticated();
        }
        assert!(t.admit(ip(99)).is_none());
    }

    #[test]
    fn a_burst_of_new_connections_is_not_cut_by_the_soft_caps_only_by_the_total() {
        let t = table_with_grace(6, 3, 2, Duration::from_secs(3600));
        let burst: Vec<_> = (0..6).map(|_| t.admit(ip(1)).unwrap()).collect();
        assert!(
            burst.iter().all(|c| !c.evicted.is_cancelled()),
            "too young to evict"
        );
        // At the total cap the oldest unauthenticated one goes, young or not.
        let late = t.admit(ip(2)).unwrap();
        assert!(burst[0].evicted.is_cancelled());
        assert!(!late.evicted.is_cancelled());
        assert_eq!(t.open(), 6);
    }

    #[tokio::test]
    async fn a_deferred_read_waits_for_its_herd_then_reads_what_arrived() {
        use crate::channels::Woken;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, peer) = listener.accept().await.unwrap();
        let t = table(10, 10, 10);
        let conn = t.admit(peer.ip()).unwrap();
        let mut io = TimedIo {
            inner: server,
            conn: conn.clone(),
            write_timeout: Duration::from_secs(1),
            stall: None,
            gate: None,
            metrics: Arc::new(Metrics::default()),
        };
        let woken = Woken::alone();
        conn.defer_next_read(woken.herd().clone(), Duration::from_secs(3600));
        client.write_all(b"next request").await.unwrap();
        let mut buf = [0u8; 64];
        let first = std::future::poll_fn(|cx| {
            let mut rb = ReadBuf::new(&mut buf);
            Poll::Ready(Pin::new(&mut io).poll_read(cx, &mut rb).is_pending())
        })
        .await;
        assert!(first, "held while the herd is being answered");
        drop(woken);
        let n = io.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"next request", "then read as it arrived");
        // Once only: the next read is not held.
        client.write_all(b"more").await.unwrap();
        let n = io.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"more");
        // A herd already answered holds nothing.
        let done = Woken::alone();
        let herd = done.herd().clone();
        drop(done);
        conn.defer_next_read(herd, Duration::from_secs(3600));
        client.write_all(b"again").await.unwrap();
        let n = io.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"again");
    }

    #[test]
    fn deadlines_follow_the_head_the_request_and_idleness() {
        let t = table(10, 10, 10);
        let c = t.admit(ip(1)).unwrap();
        let limits = ConnLimits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(150),
            ..t.limits.clone()
        };
        assert_eq!(c.deadline(&limits).unwrap().1, "idle_timeout");
        c.bytes_read();
        let (at, why) = c.deadline(&limits).unwrap();
        assert_eq!(why, "header_timeout");
        assert!(at <= 10_000 + c.now_ms() + 1);
        c.request_started();
        assert!(
            c.deadline(&limits).is_none(),
            "a request in flight has no read deadline"
        );
        c.bytes_read(); // body bytes do not start a head
        c.request_finished();
        assert_eq!(c.deadline(&limits).unwrap().1, "idle_timeout");
    }
}
