//! The direct long-poll path: a plain `tools/call` of `sync_messages`, in an
//! MCP session or sessionless, answered here instead of through rmcp.
//!
//! When one post wakes a thousand waiters, what a wake-up costs is the
//! per-request machinery around the answer, not the answer: the waiters that
//! woke together share one read and one encoded result already
//! (`channels::shared`, `mcp::SharedResult`), but each rmcp call still runs
//! through the session's worker, its channels and an SSE stream of its own
//! (and a sessionless one through a service and a task made for it).
//! Here a call answered by its first read writes the shared encoding as one
//! SSE event, with the response head in the same write; a call that has to
//! wait sends its head at once and waits in the response body, so that its
//! wake-up is answered by the body alone, not by another pass through the
//! middlewares and the router.
//!
//! **Herds.** When the woken call was one of a herd (a commit woke at least
//! [`HERD_MIN`] waiters of its channel that are not answered yet, see
//! `channels::watch::Herd`), the connection's next read waits until the
//! rest of the herd is answered, or [`MAX_DEFER`] at most
//! (`conn::Conn::defer_next_read`): the woken clients' next long-polls are
//! not read, parsed, routed or served while the herd's answers are still
//! being written, so they do not compete with them for the cores. Nothing
//! of such a request is done before it is read, so its answer is what it
//! would have been had it arrived that much later (a message posted
//! meanwhile is in it); any request a client sends on that connection right
//! after its answer is held the same way.
//!
//! Only requests whose every part is known to mean the same to rmcp come
//! here; everything else goes to rmcp unchanged, which stays the one
//! implementation of the protocol. A request is taken only if, after the
//! bearer and session middlewares (it has a principal; a session id of
//! another principal was already refused with 404):
//!
//! - it is a `POST`, and either
//!   - in a session: `MCP-Protocol-Version` is a known version before
//!     2026-07-28 and `Mcp-Session-Id` names a session that is this
//!     principal's, awake, and done with its handshake (a session asleep,
//!     closed or unknown goes to rmcp, which wakes it or answers 404), and
//!     the body has no `_meta` (so no progress token); or
//!   - without one: `MCP-Protocol-Version` is 2026-07-28, there is no
//!     `Mcp-Session-Id`, `Mcp-Method` is `tools/call` and `Mcp-Name` is
//!     `sync_messages` (the standard headers, matched to the body as rmcp
//!     matches them), and the body's `_meta` holds the same protocol version,
//!     the client's capabilities and optionally its name, nothing else;
//! - the checks rmcp makes first would pass: the `Host` is one rmcp allows
//!   (the DNS-rebinding check), `Accept` names both `application/json` and
//!   `text/event-stream` (without parameters), `Content-Type` is
//!   `application/json`;
//! - it carries no `Origin` (rmcp checks it against the allowlist), no
//!   `Last-Event-ID`, no other `Mcp-*` header (`Mcp-Param-*`), and a
//!   `Content-Length` of at most [`MAX_BODY`];
//! - the body is one JSON-RPC request, `{"jsonrpc": "2.0", "id", "method":
//!   "tools/call", "params": {"name": "sync_messages", "arguments"}}` (with
//!   `_meta` as above) and nothing else: no batch, no unknown member; an
//!   integer or string id;
//! - its arguments are valid and nothing in them is clamped (the tool's
//!   answer would then carry an error or a note).
//!
//! The call is then judged like any `sync_messages` call: the same
//! `Channels::sync_shared` (credential, channel, seats and redaction in the
//! snapshot of every read), the same result, the same `tool_calls` metrics;
//! `sync_direct_total` counts the calls this path answered.
//!
//! Departures from rmcp's answer, all invisible to a conforming client: in
//! a session, the SSE stream has no priming event (no event id, no
//! `retry`), so the call cannot be resumed with `Last-Event-ID` (a
//! sessionless call cannot be either, through rmcp too);
//! `notifications/cancelled` does not end the wait (a client that gives up
//! closes the connection, and that ends it); a session closed while the call
//! waits does not cut it short; a call answered by its first read has a
//! `Content-Length`, one that waits is a chunked stream opened at once, with
//! a `:` comment every [`KEEP_ALIVE`] of silence, as rmcp's are (and, as for
//! rmcp's, the HTTP request latency metric of such a call ends at its head;
//! `tool_calls` times the whole call).

use super::MAX_REQUEST_BYTES;
use super::conn::ConnHandle;
use super::sessions::{SESSION_HEADER, StreamGuard};
use crate::app::AppState;
use crate::channels::Woken;
use crate::mcp::ResultShape;
use crate::model::Principal;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::Frame;
use rmcp::model::{JsonObject, ProtocolVersion};
use serde::Deserialize;
use serde_json::Value;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

/// The largest body this path reads; a longer one goes to rmcp. A
/// `sync_messages` call is a few hundred bytes.
pub const MAX_BODY: usize = 16 * 1024;

/// How long a waiting call's stream may go without a byte: then it sends an
/// SSE comment (rmcp's keep-alive).
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The fewest wake-ups of a channel still unanswered (this one included)
/// for which a woken waiter's next request waits for the rest: below it,
/// the answers are out within a millisecond or two anyway.
pub const HERD_MIN: usize = 32;

/// The longest a woken waiter's next request waits for the rest of its
/// herd to be answered.
pub const MAX_DEFER: Duration = Duration::from_millis(250);

const JSON: &str = "application/json";
const EVENT_STREAM: &str = "text/event-stream";

/// What the path needs besides the app: the hosts rmcp allows, parsed once.
pub struct Direct {
    app: Arc<AppState>,
    hosts: Hosts,
}

/// The `Host`s rmcp allows (any, when its list is empty).
struct Hosts {
    list: Vec<Authority>,
    any: bool,
}

/// A host and, when it names one, a port (as rmcp compares them).
#[derive(Debug, PartialEq, Eq)]
struct Authority {
    host: String,
    port: Option<u16>,
}

impl Authority {
    fn parse(s: &str) -> Option<Authority> {
        let s = s.trim();
        if s.is_empty() {
            return None;
        }
        Some(match http::uri::Authority::try_from(s) {
            Ok(a) => Authority::new(a.host(), a.port_u16()),
            Err(_) => Authority::new(s, None),
        })
    }

    fn new(host: &str, port: Option<u16>) -> Authority {
        Authority {
            host: host
                .trim_matches('[')
                .trim_matches(']')
                .to_ascii_lowercase(),
            port,
        }
    }
}

impl Direct {
    /// The path for `app`, allowing the `Host`s rmcp is configured with.
    pub fn new(app: Arc<AppState>, allowed_hosts: &[String]) -> Arc<Direct> {
        Arc::new(Direct {
            app,
            hosts: Hosts::new(allowed_hosts),
        })
    }
}

impl Hosts {
    fn new(allowed: &[String]) -> Hosts {
        Hosts {
            list: allowed.iter().filter_map(|h| Authority::parse(h)).collect(),
            any: allowed.is_empty(),
        }
    }

    /// rmcp's DNS-rebinding check of the `Host` header, passed.
    fn allow(&self, headers: &HeaderMap) -> bool {
        let mut hosts = headers.get_all(header::HOST).iter();
        let (Some(host), None) = (hosts.next(), hosts.next()) else {
            return false;
        };
        let Some(a) = host
            .to_str()
            .ok()
            .and_then(|h| http::uri::Authority::try_from(h).ok())
        else {
            return false;
        };
        let a = Authority::new(a.host(), a.port_u16());
        self.any
            || self
                .list
                .iter()
                .any(|h| h.host == a.host && h.port.is_none_or(|p| a.port == Some(p)))
    }
}

/// The one header value named `name`, as text; `None` when absent, repeated
/// or not text.
fn single<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut all = headers.get_all(name).iter();
    match (all.next(), all.next()) {
        (Some(v), None) => v.to_str().ok(),
        _ => None,
    }
}

/// Which kind of call a head admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// In a session (a protocol version before 2026-07-28), named by its
    /// one `Mcp-Session-Id`.
    Session,
    /// 2026-07-28, without a session: the body's `_meta` must name the
    /// same version.
    Sessionless,
}

/// Whether the head is one this path may answer, and as which kind of call.
fn eligible(hosts: &Hosts, method: &Method, headers: &HeaderMap) -> Option<Route> {
    if method != Method::POST || !hosts.allow(headers) {
        return None;
    }
    let version = single(headers, "mcp-protocol-version")?;
    let legacy = ProtocolVersion::KNOWN_VERSIONS
        .iter()
        .any(|v| v.as_str() == version && v.as_str() < ProtocolVersion::STANDARD_HEADERS.as_str());
    let current = version == ProtocolVersion::V_2026_07_28.as_str();
    for name in headers.keys() {
        let n = name.as_str();
        let mcp_allowed = match n {
            SESSION_HEADER => legacy,
            "mcp-protocol-version" => true,
            // Checked against the body below (SEP-2243); any other `Mcp-*`
            // header (`Mcp-Param-*`) is rmcp's to judge.
            "mcp-method" | "mcp-name" => current,
            _ => false,
        };
        if (n.starts_with("mcp-") && !mcp_allowed)
            || matches!(n, "origin" | "last-event-id" | "transfer-encoding")
        {
            return None;
        }
    }
    let mut json = false;
    let mut sse = false;
    for v in headers.get_all("accept") {
        for t in v.to_str().ok()?.split(',') {
            let t = t.trim();
            if t.contains(';') {
                // A weight or parameter: rmcp's reading of it decides.
                return None;
            }
            json |= t.eq_ignore_ascii_case(JSON);
            sse |= t.eq_ignore_ascii_case(EVENT_STREAM);
        }
    }
    let content_type = single(headers, "content-type")?;
    let essence = content_type.split(';').next().unwrap_or("").trim();
    let length: usize = single(headers, "content-length")?.parse().ok()?;
    (json && sse && essence.eq_ignore_ascii_case(JSON) && length <= MAX_BODY).then_some(())?;
    if legacy {
        single(headers, SESSION_HEADER).map(|_| Route::Session)
    } else if current {
        // The header values must be the body's exactly (a Base64-encoded
        // `Mcp-Name` is rmcp's to decode).
        (single(headers, "mcp-method")? == "tools/call"
            && single(headers, "mcp-name")? == "sync_messages")
            .then_some(Route::Sessionless)
    } else {
        None
    }
}

/// The only JSON-RPC request this path answers.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Call {
    jsonrpc: String,
    id: Value,
    method: String,
    params: Params,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    name: String,
    arguments: JsonObject,
    #[serde(rename = "_meta", default)]
    meta: Option<Meta>,
}

/// The request `_meta` of a 2026-07-28 call: what the protocol requires and
/// the client's name, nothing else (a progress token is rmcp's).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    #[serde(rename = "io.modelcontextprotocol/protocolVersion")]
    protocol_version: String,
    #[serde(rename = "io.modelcontextprotocol/clientCapabilities")]
    _client_capabilities: rmcp::model::ClientCapabilities,
    #[serde(rename = "io.modelcontextprotocol/clientInfo", default)]
    _client_info: Option<rmcp::model::Implementation>,
}

impl Call {
    /// The call's id as JSON, when it is one rmcp reads the same (an
    /// integer that fits an `i64`, or a string) and the call is a plain
    /// `sync_messages` of the route's kind: no `_meta` in a session, the
    /// header's version in `_meta` without one.
    fn id_json(&self, route: Route, version: &str) -> Option<String> {
        let id_ok = match &self.id {
            Value::Number(n) => n.as_i64().is_some(),
            Value::String(_) => true,
            _ => false,
        };
        let meta_ok = match (route, &self.params.meta) {
            (Route::Session, None) => true,
            (Route::Sessionless, Some(m)) => m.protocol_version == version,
            _ => false,
        };
        (self.jsonrpc == "2.0"
            && id_ok
            && meta_ok
            && self.method == "tools/call"
            && self.params.name == "sync_messages")
            .then(|| serde_json::to_string(&self.id).ok())?
    }
}

/// Middleware on `/mcp`, inside the bearer and session middlewares: answers
/// a plain `sync_messages` call directly; hands everything else to rmcp.
pub async fn serve(State(d): State<Arc<Direct>>, req: Request, next: Next) -> Response {
    if req.extensions().get::<Principal>().is_none() {
        return next.run(req).await;
    }
    let Some(route) = eligible(&d.hosts, req.method(), req.headers()) else {
        return next.run(req).await;
    };
    let shape = match route {
        Route::Session => ResultShape::Legacy,
        Route::Sessionless => ResultShape::Current,
    };
    let version = single(req.headers(), "mcp-protocol-version")
        .unwrap_or_default()
        .to_string();
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY.min(MAX_REQUEST_BYTES)).await {
        Ok(b) => b,
        // The body stopped or broke off (a stalled one is answered 408 by
        // the connection loop).
        Err(_) => return (StatusCode::BAD_REQUEST, "Bad Request: unreadable body").into_response(),
    };
    // Every other call of a session passes here too (posts above all): one
    // scan for the tool's name spares them the parse.
    let direct = contains(&bytes, br#""sync_messages""#)
        .then(|| serde_json::from_slice::<Call>(&bytes).ok())
        .flatten()
        .and_then(|c| Some((c.id_json(route, &version)?, c.params.arguments)))
        .and_then(|(id, args)| Some((id, crate::mcp::direct_sync_request(args)?)));
    let Some((id, sync)) = direct else {
        return next
            .run(Request::from_parts(parts, Body::from(bytes)))
            .await;
    };
    let Some(who) = parts.extensions.get::<Principal>().cloned() else {
        return next
            .run(Request::from_parts(parts, Body::from(bytes)))
            .await;
    };
    let stream = match route {
        Route::Session => {
            let sid = single(&parts.headers, SESSION_HEADER).unwrap_or_default();
            match d.app.sessions.direct_stream(sid, &who.id) {
                Some(s) => Some(s),
                None => {
                    return next
                        .run(Request::from_parts(parts, Body::from(bytes)))
                        .await;
                }
            }
        }
        Route::Sessionless => None,
    };
    d.app.metrics.sync_direct.fetch_add(1, Ordering::Relaxed);
    let app = d.app.clone();
    let conn = parts.extensions.get::<ConnHandle>().cloned();
    let (parked_tx, parked) = tokio::sync::oneshot::channel();
    let mut answer: Pin<Box<dyn Future<Output = Bytes> + Send>> = Box::pin(async move {
        let mut woken = None;
        let result =
            crate::mcp::direct_sync(&app, &who, sync, shape, &mut woken, Some(parked_tx)).await;
        let bytes = event(&id, result);
        if let Some(w) = woken {
            // A herd is being answered: this waiter's next request (its
            // next long-poll, most likely) waits until the rest of the herd
            // has its answer, instead of competing with it for the cores.
            if w.herd().pending() >= HERD_MIN
                && let Some(c) = &conn
            {
                c.0.defer_next_read(w.herd().clone(), MAX_DEFER);
            }
            // The wake-up is resolved when the connection is done with the
            // answer's bytes (written, or copied into its buffer).
            return Bytes::from_owner(Answer { bytes, _woken: w });
        }
        bytes
    });
    // A call answered by its first read sends the head and the event in
    // one write. A call that has to wait sends its head now, and the wait
    // goes on in the body: a wake-up is then answered by the body alone,
    // without passing through the request's middlewares and router again
    // (and the head's cost is paid at the re-arm, not in the herd).
    tokio::select! {
        biased;
        bytes = &mut answer => {
            drop(stream);
            return sse(Body::from(bytes));
        }
        // Sent when the call parks; dropped unsent only when `answer` is
        // done, which the branch above sees first.
        _ = parked => {}
    }
    sse(Body::new(Waiting {
        answer: Some(answer),
        tick: Box::pin(tokio::time::sleep(KEEP_ALIVE)),
        _stream: stream,
    }))
}

/// A woken waiter's answer, holding its wake-up until the bytes are done.
struct Answer {
    bytes: Bytes,
    _woken: Woken,
}

impl AsRef<[u8]> for Answer {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The JSON-RPC response to call `id` as one SSE event.
fn event(id: &str, result: Result<Arc<str>, rmcp::ErrorData>) -> Bytes {
    let error;
    let (member, value): (&str, &str) = match &result {
        Ok(json) => ("result", json),
        Err(e) => {
            error = serde_json::to_string(e).unwrap_or_else(|_| {
                r#"{"code":-32603,"message":"cannot encode the error"}"#.to_string()
            });
            ("error", &error)
        }
    };
    let mut out = String::with_capacity(value.len() + id.len() + 48);
    out.push_str(r#"data: {"jsonrpc":"2.0","id":"#);
    out.push_str(id);
    out.push_str(",\"");
    out.push_str(member);
    out.push_str("\":");
    out.push_str(value);
    out.push_str("}\n\n");
    Bytes::from(out)
}

/// A response with rmcp's SSE headers.
fn sse(body: Body) -> Response {
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(EVENT_STREAM));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

/// The body of a call that waits: a comment every [`KEEP_ALIVE`], then the
/// answer.
struct Waiting {
    answer: Option<Pin<Box<dyn Future<Output = Bytes> + Send>>>,
    tick: Pin<Box<tokio::time::Sleep>>,
    _stream: Option<StreamGuard>,
}

impl http_body::Body for Waiting {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let Some(answer) = self.answer.as_mut() else {
            return Poll::Ready(None);
        };
        if let Poll::Ready(bytes) = answer.as_mut().poll(cx) {
            self.answer = None;
            return Poll::Ready(Some(Ok(Frame::data(bytes))));
        }
        if self.tick.as_mut().poll(cx).is_ready() {
            let next = tokio::time::Instant::now() + KEEP_ALIVE;
            self.tick.as_mut().reset(next);
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b":\n\n")))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.answer.is_none()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn only_a_plain_sync_messages_call_is_taken() {
        let call = |s: &str| {
            serde_json::from_str::<Call>(s)
                .ok()
                .and_then(|c| c.id_json(Route::Session, "2025-06-18"))
        };
        let args = r#""arguments":{"channel_id":"c"}"#;
        assert_eq!(
            call(&format!(
                r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"sync_messages",{args}}}}}"#
            ))
            .as_deref(),
            Some("7")
        );
        assert_eq!(
            call(&format!(
                r#"{{"jsonrpc":"2.0","id":"a\"b","method":"tools/call","params":{{"name":"sync_messages",{args}}}}}"#
            ))
            .as_deref(),
            Some(r#""a\"b""#)
        );
        for refused in [
            // A progress token (or any _meta) is rmcp's.
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"sync_messages",{args},"_meta":{{"progressToken":1}}}}}}"#
            ),
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"post_message",{args}}}}}"#
            ),
            format!(
                r#"{{"jsonrpc":"2.0","id":1.5,"method":"tools/call","params":{{"name":"sync_messages",{args}}}}}"#
            ),
            format!(
                r#"{{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{{"name":"sync_messages",{args}}}}}"#
            ),
            format!(
                r#"{{"jsonrpc":"1.0","id":1,"method":"tools/call","params":{{"name":"sync_messages",{args}}}}}"#
            ),
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"sync_messages",{args}}},"extra":1}}"#
            ),
            format!(
                r#"[{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"sync_messages",{args}}}}}]"#
            ),
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"sync_messages"}}"#
                .to_string(),
        ] {
            assert_eq!(call(&refused), None, "{refused}");
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    const GOOD: [(&str, &str); 6] = [
        ("host", "127.0.0.1:8080"),
        ("accept", "application/json, text/event-stream"),
        ("content-type", "application/json"),
        ("mcp-protocol-version", "2025-06-18"),
        ("mcp-session-id", "s1"),
        ("content-length", "120"),
    ];

    fn direct(hosts: &[&str]) -> Hosts {
        Hosts::new(&hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn a_head_is_taken_only_when_rmcp_would_read_it_the_same() {
        let d = direct(&["localhost", "127.0.0.1"]);
        assert_eq!(
            eligible(&d, &Method::POST, &headers(&GOOD)),
            Some(Route::Session)
        );
        assert_eq!(eligible(&d, &Method::GET, &headers(&GOOD)), None);
        let with = |k: &'static str, v: &str| {
            let mut h = headers(&GOOD);
            h.insert(k, HeaderValue::from_str(v).unwrap());
            eligible(&d, &Method::POST, &h)
        };
        let without = |k: &str| {
            let mut h = headers(&GOOD);
            h.remove(k);
            eligible(&d, &Method::POST, &h)
        };
        assert_eq!(with("host", "evil.example"), None, "DNS rebinding");
        assert_eq!(with("origin", "http://127.0.0.1:8080"), None);
        assert_eq!(with("last-event-id", "1"), None);
        assert_eq!(with("mcp-method", "tools/call"), None);
        assert_eq!(with("mcp-param-channel", "c"), None);
        assert_eq!(with("accept", "application/json"), None);
        assert_eq!(
            with("accept", "application/json, text/event-stream;q=0"),
            None
        );
        assert_eq!(with("content-type", "text/plain"), None);
        assert_eq!(
            with("content-type", "application/json; charset=utf-8"),
            Some(Route::Session)
        );
        assert_eq!(with("mcp-protocol-version", "2026-07-28"), None);
        assert_eq!(with("mcp-protocol-version", "1999-01-01"), None);
        assert_eq!(with("content-length", "100000"), None);
        assert_eq!(with("transfer-encoding", "chunked"), None);
        for k in [
            "host",
            "accept",
            "content-type",
            "mcp-protocol-version",
            "mcp-session-id",
            "content-length",
        ] {
            assert_eq!(without(k), None, "{k}");
        }
        let d = direct(&["example.org:443"]);
        assert_eq!(eligible(&d, &Method::POST, &headers(&GOOD)), None);
        let mut h = headers(&GOOD);
        h.insert("host", HeaderValue::from_static("EXAMPLE.org:443"));
        assert_eq!(eligible(&d, &Method::POST, &h), Some(Route::Session));
        h.insert("host", HeaderValue::from_static("example.org:444"));
        assert_eq!(eligible(&d, &Method::POST, &h), None);
    }

    #[test]
    fn a_sessionless_call_names_its_method_tool_and_version_and_nothing_else() {
        let d = direct(&["127.0.0.1"]);
        let good = [
            ("host", "127.0.0.1:8080"),
            ("accept", "application/json, text/event-stream"),
            ("content-type", "application/json"),
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "sync_messages"),
            ("content-length", "300"),
        ];
        assert_eq!(
            eligible(&d, &Method::POST, &headers(&good)),
            Some(Route::Sessionless)
        );
        let with = |k: &'static str, v: &str| {
            let mut h = headers(&good);
            h.insert(k, HeaderValue::from_str(v).unwrap());
            eligible(&d, &Method::POST, &h)
        };
        assert_eq!(with("mcp-name", "post_message"), None);
        assert_eq!(with("mcp-name", "=?base64?c3luY19tZXNzYWdlcw==?="), None);
        assert_eq!(with("mcp-method", "tools/list"), None);
        assert_eq!(with("mcp-session-id", "s1"), None);
        assert_eq!(with("mcp-param-channel_id", "c"), None);
        let mut h = headers(&good);
        h.remove("mcp-name");
        assert_eq!(eligible(&d, &Method::POST, &h), None);

        let call = |meta: &str, route: Route| {
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{{"name":"sync_messages","arguments":{{"channel_id":"c"}}{meta}}}}}"#
            );
            serde_json::from_str::<Call>(&body)
                .ok()
                .and_then(|c| c.id_json(route, "2026-07-28"))
        };
        let meta = r#","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}"#;
        assert_eq!(call(meta, Route::Sessionless).as_deref(), Some("3"));
        assert_eq!(call(meta, Route::Session), None, "no _meta in a session");
        assert_eq!(call("", Route::Sessionless), None, "_meta is required");
        let with_info = r#","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"c","version":"1"}}"#;
        assert_eq!(call(with_info, Route::Sessionless).as_deref(), Some("3"));
        for refused in [
            r#","_meta":{"io.modelcontextprotocol/protocolVersion":"2025-06-18","io.modelcontextprotocol/clientCapabilities":{}}"#,
            r#","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}"#,
            r#","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"progressToken":1}"#,
            r#","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":5}"#,
        ] {
            assert_eq!(call(refused, Route::Sessionless), None, "{refused}");
        }
    }
}
