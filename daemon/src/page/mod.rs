//! The channel page: a read-only window onto one channel for people, at
//! `/c/<channel_id>`, that a browser verifies by itself.
//!
//! - [`links`] owns who may open it (spectator links, one-time member
//!   links, member sessions) and the `share_channel`/`revoke_shares`
//!   operations.
//! - [`html`] renders the page server-side (the transcript in words, the
//!   bots with their exact source), so it reads without JavaScript.
//! - `assets/page.js` (served by the daemon, no framework, nothing from
//!   another site) recomputes the hash chain with WebCrypto over RFC 8785
//!   canonical JSON, checks the daemon's signed heads, checks the builtin
//!   games' commitments, and follows the event stream.
//! - `/c/<id>/events` is a Server-Sent Events stream of the entries as the
//!   viewer may see them, from `Last-Event-ID` on, each batch followed by
//!   the daemon's signed head at its last entry, woken by the store's
//!   commit bus like a waiting `sync_messages`; the link is checked again
//!   at every wake-up and every keep-alive, so a revoked or expired link
//!   ends the stream and gets nothing committed after it.
//! - `/c/<id>/export` is the signed export of `docs/transcripts.md` as the
//!   viewer sees it, made by the same code as `export_transcript`.
//!
//! A link arrives as `?key=` once: the page answers with a cookie scoped to
//! the channel's path (`HttpOnly`, `SameSite=Lax`, `Secure` behind https)
//! and a redirect to the bare URL, so the secret leaves the address bar and
//! the history at once. `docs/page.md` says why these choices.

mod highlight;
mod html;
pub(crate) mod links;

use crate::app::AppState;
use crate::channels::{Code, Reader, ToolError, rules};
use crate::http::transcripts::{self, NextPage};
use crate::model::{BotCode, MessageView, Seq, TranscriptExport};
use crate::secrets;
use crate::store::{ReadTx, StoreError};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use links::{Access, Denied, Viewer};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;

/// The page's cookie (one per channel: its path is the channel's page).
pub const COOKIE: &str = "mcpmp_page";

/// Content-Security-Policy of every page response: nothing but this
/// daemon's own script, stylesheet and event stream; no inline script or
/// style, no frames, no forms, no plugins.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// How often an idle event stream sends a keep-alive (and checks its link).
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Most messages one read of the event stream sends before reading again.
const STREAM_BATCH: usize = 500;

/// Most event streams open at once, and per link: each is a connection and
/// a subscriber; a leaked link cannot hold every one of them.
pub const MAX_STREAMS: usize = 512;
pub const MAX_STREAMS_PER_LINK: usize = 16;

const JS: &str = include_str!("assets/page.js");
const CSS: &str = include_str!("assets/page.css");

/// Open event streams (shared by the router's handlers).
#[derive(Default)]
pub struct Streams {
    open: AtomicUsize,
    per_link: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

/// Counts one open stream while alive.
struct StreamGuard {
    streams: Arc<Streams>,
    link: String,
}

impl Streams {
    /// Event streams open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    fn admit(self: &Arc<Self>, link: &str) -> Option<StreamGuard> {
        let mut per = self.per_link.lock().unwrap_or_else(|p| p.into_inner());
        let n = per.entry(link.to_string()).or_default();
        if *n >= MAX_STREAMS_PER_LINK || self.open.load(Ordering::Relaxed) >= MAX_STREAMS {
            return None;
        }
        *n += 1;
        self.open.fetch_add(1, Ordering::Relaxed);
        Some(StreamGuard {
            streams: self.clone(),
            link: link.to_string(),
        })
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let mut per = self
            .streams
            .per_link
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = per.get_mut(&self.link) {
            *n -= 1;
            if *n == 0 {
                per.remove(&self.link);
            }
        }
        self.streams.open.fetch_sub(1, Ordering::Relaxed);
    }
}

fn short_hash(s: &str) -> String {
    hex::encode(&Sha256::digest(s.as_bytes())[..8])
}

fn asset_paths() -> html::Assets {
    html::Assets {
        css: format!("/page/page.{}.css", short_hash(CSS)),
        js: format!("/page/page.{}.js", short_hash(JS)),
    }
}

/// The page's routes.
pub fn router() -> Router<AppState> {
    let a = asset_paths();
    Router::new()
        .route("/c/{channel_id}", get(page))
        .route("/c/{channel_id}/events", get(events))
        .route("/c/{channel_id}/export", get(export))
        .route(
            &a.js,
            get(|| async { asset(JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            &a.css,
            get(|| async { asset(CSS, "text/css; charset=utf-8") }),
        )
}

/// Headers every page response carries.
fn harden(mut resp: Response, cache: &'static str) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    resp
}

fn asset(text: &'static str, mime: &'static str) -> Response {
    // Named by their content's hash: a new daemon serves new names.
    harden(
        ([(header::CONTENT_TYPE, mime)], text).into_response(),
        "public, max-age=31536000, immutable",
    )
}

fn denied_response(status: StatusCode) -> Response {
    let mut resp = (status, html::denied(&asset_paths())).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    harden(resp, "no-store")
}

fn unavailable() -> Response {
    harden(
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "The server cannot read this channel right now; try again shortly.",
        )
            .into_response(),
        "no-store",
    )
}

/// The page's cookie from the request, if any.
fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty())
}

fn set_cookie(state: &AppState, channel_id: &str, secret: &str, access: &Access) -> String {
    let secure = if state.config.public_url.scheme() == "https" {
        "; Secure"
    } else {
        ""
    };
    let max_age = access
        .expires_at
        .map(|e| format!("; Max-Age={}", ((e - secrets::now_ms()) / 1000).max(1)))
        .unwrap_or_default();
    format!("{COOKIE}={secret}; Path=/c/{channel_id}; HttpOnly; SameSite=Lax{secure}{max_age}")
}

/// Marks the connection as carrying a valid credential, so the connection
/// caps treat it like an authenticated MCP client's (never evicted to make
/// room for unauthenticated ones).
fn connection_authenticated(req: &Request) {
    if let Some(c) = req.extensions().get::<crate::http::conn::ConnHandle>() {
        c.0.authenticated();
    }
}

#[derive(Deserialize)]
struct PageQuery {
    key: Option<String>,
}

/// What the page reads in one snapshot.
struct Loaded {
    access: Access,
    name: String,
    closed: bool,
    slots: Vec<(String, bool)>,
    messages: Vec<MessageView>,
    more: bool,
    bots: Vec<BotCode>,
}

/// Who reads the page, as far as private bodies go, given the channel's
/// slots read in the same snapshot as the messages. A spectator reads what
/// a member who is neither sender nor recipient reads; a member reads as
/// their seat, whose private history before its last kick is sealed.
fn reader_for(viewer: &Viewer, slots: &[crate::store::SlotRecord]) -> rules::SeatReader {
    match viewer {
        Viewer::Spectator => rules::SeatReader::spectator(),
        Viewer::Member { seat } => rules::SeatReader::of(slots, seat),
    }
}

fn bots_of(tx: &dyn ReadTx, cid: &str) -> Result<Vec<BotCode>, StoreError> {
    let mut out = Vec::new();
    for b in tx.bots(cid)? {
        if let Some(rt) = tx.bot_runtime(cid, &b.bot_id)? {
            out.push(BotCode {
                channel_id: cid.to_string(),
                bot_id: b.bot_id.clone(),
                name: b.name.clone(),
                preset: b.preset.as_deref().map(crate::bots::presets::canonical),
                source: rt.source,
                code_hash: b.code_hash.clone(),
                manifest: b.manifest.clone(),
                manifest_hash: b.manifest_hash.clone(),
                network: b.network,
                params: rt.params,
            });
        }
    }
    Ok(out)
}

async fn load(
    state: &AppState,
    cid: String,
    secret: String,
    max_bytes: usize,
) -> Result<Result<Loaded, Denied>, StoreError> {
    state
        .channels
        .store()
        .read(move |tx: &dyn ReadTx| {
            let access = match links::check(tx, &cid, &secret, secrets::now_ms())? {
                Ok((a, _)) => a,
                Err(d) => return Ok(Err(d)),
            };
            let Some(ch) = tx.channel(&cid)? else {
                return Ok(Err(Denied::NoChannel));
            };
            let records = tx.slots(&cid)?;
            let reader = reader_for(&access.viewer, &records);
            let slots = records
                .into_iter()
                .map(|s| {
                    let filled = s.holder.is_some() || s.has_bot;
                    (s.label, filled)
                })
                .collect();
            let msgs = tx.messages_page(&cid, 0, usize::MAX, max_bytes, &|m| {
                rules::shown_to(m, &reader)
            })?;
            let last = msgs.last().map_or(0, |m| m.seq);
            Ok(Ok(Loaded {
                messages: msgs
                    .iter()
                    .map(|m| rules::message_view(m, &reader))
                    .collect(),
                more: last < ch.last_seq,
                access,
                name: ch.name,
                closed: ch.closed,
                slots,
                bots: bots_of(tx, &cid)?,
            }))
        })
        .await
}

/// `GET /c/<id>`: with `?key=`, exchange the link for the page's cookie and
/// redirect to the bare URL; otherwise render the page for the cookie.
async fn page(
    State(state): State<AppState>,
    Path(cid): Path<String>,
    Query(q): Query<PageQuery>,
    req: Request,
) -> Response {
    if let Some(key) = q.key {
        return match links::redeem(state.channels.store(), &cid, &key).await {
            Ok(Ok((secret, access))) => {
                tracing::info!(channel = ?cid, link = %access.link_id, "page link opened");
                let mut resp = (StatusCode::SEE_OTHER, "").into_response();
                let h = resp.headers_mut();
                if let Ok(v) = HeaderValue::from_str(&format!("/c/{cid}")) {
                    h.insert(header::LOCATION, v);
                }
                if let Ok(v) = HeaderValue::from_str(&set_cookie(&state, &cid, &secret, &access)) {
                    h.insert(header::SET_COOKIE, v);
                }
                harden(resp, "no-store")
            }
            Ok(Err(d)) => {
                tracing::warn!(channel = ?cid, reason = d.as_str(), "refused a page link");
                denied_response(StatusCode::FORBIDDEN)
            }
            Err(e) => {
                tracing::error!(error = %e, "page link check failed");
                unavailable()
            }
        };
    }
    let Some(secret) = cookie(req.headers()) else {
        return denied_response(StatusCode::UNAUTHORIZED);
    };
    match load(&state, cid.clone(), secret, state.channels.max_sync_bytes()).await {
        Ok(Ok(l)) => {
            connection_authenticated(&req);
            let assets = asset_paths();
            let head = l
                .messages
                .last()
                .map(|m| state.signer.head(&cid, m.seq, &m.hash));
            let model = html::PageModel {
                channel_id: &cid,
                name: &l.name,
                closed: l.closed,
                viewer: &l.access.viewer,
                slots: l.slots.clone(),
                messages: &l.messages,
                truncated: l.more,
                head: head.as_ref(),
                bots: &l.bots,
                assets: &assets,
            };
            let mut resp = html::page(&model).into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            harden(resp, "no-store")
        }
        Ok(Err(d)) => {
            tracing::warn!(channel = ?cid, reason = d.as_str(), "refused a page cookie");
            denied_response(StatusCode::FORBIDDEN)
        }
        Err(e) => {
            tracing::error!(error = %e, "page read failed");
            unavailable()
        }
    }
}

/// `GET /c/<id>/export`: the signed export (`docs/transcripts.md`) as the
/// viewer sees it, made by the same code as `export_transcript` and
/// `GET /channels/<id>/export`: a member's as their seat, a spectator's
/// with every private entry redacted. Streamed a page at a time; each page
/// checks the link again.
async fn export(State(state): State<AppState>, Path(cid): Path<String>, req: Request) -> Response {
    let Some(secret) = cookie(req.headers()) else {
        return denied_response(StatusCode::UNAUTHORIZED);
    };
    let first = match export_page(&state, &cid, secret.clone(), 0).await {
        Ok(d) => d,
        Err(e) if e.code == Code::Internal => {
            tracing::error!(error = %e.message, "page export failed");
            return unavailable();
        }
        Err(e) => {
            tracing::warn!(channel = ?cid, reason = ?e.message, "refused a page export");
            return denied_response(StatusCode::FORBIDDEN);
        }
    };
    connection_authenticated(&req);
    let next: NextPage = Box::new(move |after| {
        let (state, cid, secret) = (state.clone(), cid.clone(), secret.clone());
        Box::pin(async move { export_page(&state, &cid, secret, after).await })
    });
    harden(transcripts::streamed(first, next), "no-store")
}

/// What a spectator's export names as its reader (`exported_as`); no seat
/// may take this label.
pub const SPECTATOR: &str = crate::channels::rules::RESERVED_SEAT;

/// One page of the export for the page's cookie `secret`, checked in the
/// snapshot it reads.
async fn export_page(
    state: &AppState,
    cid: &str,
    secret: String,
    after: Seq,
) -> Result<TranscriptExport, ToolError> {
    state
        .channels
        .export_page_as(cid, after, move |tx: &dyn ReadTx, cid: &str| {
            let access = match links::check(tx, cid, &secret, secrets::now_ms())? {
                Ok((a, _)) => a,
                Err(d) => {
                    return Err(ToolError::new(
                        Code::NotMember,
                        format!("the page's link does not work: {}", d.as_str()),
                    ));
                }
            };
            let Some(ch) = tx.channel(cid)? else {
                return Err(ToolError::new(Code::ChannelNotFound, "the channel is gone"));
            };
            let reader = match access.viewer {
                // No sender or recipient has the empty label: a spectator
                // holds no private body.
                Viewer::Spectator => Reader {
                    exported_as: SPECTATOR.into(),
                    seat: String::new(),
                },
                Viewer::Member { seat } => Reader {
                    exported_as: seat.clone(),
                    seat,
                },
            };
            Ok((ch, reader))
        })
        .await
}

/// A response body fed by a channel: the event stream's frames.
struct Frames(mpsc::Receiver<Bytes>);

impl futures_core::Stream for Frames {
    type Item = Result<Bytes, Infallible>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|o| o.map(Ok))
    }
}

#[derive(Deserialize)]
struct EventsQuery {
    after: Option<i64>,
}

/// What one read of the stream found.
enum Batch {
    Denied(Denied),
    Messages { msgs: Vec<MessageView>, more: bool },
}

/// `GET /c/<id>/events`: Server-Sent Events, one `message` event per entry
/// (its `id` the `seq`, its data the entry as the viewer may see it), from
/// after `Last-Event-ID` (or `?after=`), and after each batch a `head` event
/// (the daemon's signed head at the batch's last entry); a `revoked` event
/// and the end of the stream when the link stops working.
async fn events(
    State(state): State<AppState>,
    Path(cid): Path<String>,
    Query(q): Query<EventsQuery>,
    req: Request,
) -> Response {
    let Some(secret) = cookie(req.headers()) else {
        return denied_response(StatusCode::UNAUTHORIZED);
    };
    let last_id = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    let cursor = last_id.or(q.after).unwrap_or(0).max(0);
    // The first check answers with a status a browser can see; later ones
    // end the stream.
    let store = state.channels.store().clone();
    let (c2, s2) = (cid.clone(), secret.clone());
    let access = match store
        .read(move |tx: &dyn ReadTx| links::check(tx, &c2, &s2, secrets::now_ms()))
        .await
    {
        Ok(Ok((a, _))) => a,
        Ok(Err(d)) => {
            tracing::warn!(channel = ?cid, reason = d.as_str(), "refused a page stream");
            return denied_response(StatusCode::FORBIDDEN);
        }
        Err(e) => {
            tracing::error!(error = %e, "page stream check failed");
            return unavailable();
        }
    };
    let Some(guard) = state.page_streams.admit(&access.link_id) else {
        return harden(
            (
                StatusCode::TOO_MANY_REQUESTS,
                "Too many pages of this channel are open with this link; close one and reload.",
            )
                .into_response(),
            "no-store",
        );
    };
    connection_authenticated(&req);
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    tokio::spawn(stream_task(state, cid, secret, cursor, tx, guard));
    let mut resp = Body::from_stream(Frames(rx)).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    // Reverse proxies must not buffer the stream.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    harden(resp, "no-store")
}

fn frame(event: &str, id: Option<i64>, data: &str) -> Bytes {
    let mut s = String::with_capacity(data.len() + 32);
    if let Some(id) = id {
        s.push_str(&format!("id: {id}\n"));
    }
    s.push_str(&format!("event: {event}\ndata: {data}\n\n"));
    Bytes::from(s)
}

/// Feeds one event stream until the client leaves, the link stops
/// working, or the daemon shuts down.
async fn stream_task(
    state: AppState,
    cid: String,
    secret: String,
    mut cursor: i64,
    tx: mpsc::Sender<Bytes>,
    _guard: StreamGuard,
) {
    // Subscribe before the first read: a commit between a read and the wait
    // still wakes the stream.
    let mut rx = state.channels.watch_commits(&cid);
    let store = state.channels.store().clone();
    let max_bytes = state.channels.max_sync_bytes();
    if tx
        .send(Bytes::from_static(b"retry: 2000\n\n"))
        .await
        .is_err()
    {
        return;
    }
    loop {
        let (c2, s2) = (cid.clone(), secret.clone());
        let batch = store
            .read(move |tx: &dyn ReadTx| {
                let access = match links::check(tx, &c2, &s2, secrets::now_ms())? {
                    Ok((a, _)) => a,
                    Err(d) => return Ok::<_, StoreError>((Batch::Denied(d), None)),
                };
                let reader = reader_for(&access.viewer, &tx.slots(&c2)?);
                let msgs = tx.messages_page(&c2, cursor, STREAM_BATCH, max_bytes, &|m| {
                    rules::shown_to(m, &reader)
                })?;
                // A batch ends at its count or its byte budget: more is
                // waiting while it ends before the channel's last message.
                let last_seq = tx.channel(&c2)?.map_or(0, |c| c.last_seq);
                let more = msgs.last().is_some_and(|m| m.seq < last_seq);
                let views = msgs
                    .iter()
                    .map(|m| rules::message_view(m, &reader))
                    .collect();
                Ok((Batch::Messages { msgs: views, more }, access.expires_at))
            })
            .await;
        let (batch, expires_at) = match batch {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "page stream read failed");
                return;
            }
        };
        let more = match batch {
            Batch::Denied(d) => {
                tracing::info!(channel = ?cid, reason = d.as_str(), "page stream ended: its link stopped working");
                let _ = tx
                    .send(frame(
                        "revoked",
                        None,
                        &json!({"reason": d.as_str()}).to_string(),
                    ))
                    .await;
                return;
            }
            Batch::Messages { msgs, more } => {
                for m in &msgs {
                    let data = serde_json::to_string(m).unwrap_or_default();
                    if tx.send(frame("message", Some(m.seq), &data)).await.is_err() {
                        return;
                    }
                    cursor = m.seq;
                }
                // Every batch ends with the daemon's signed head at its last
                // entry, so every entry the page shows is covered by a
                // signature it checks (signed outside the store's thread).
                if let Some(last) = msgs.last() {
                    let head = state.signer.head(&cid, last.seq, &last.hash);
                    let data = serde_json::to_string(&head).unwrap_or_default();
                    if tx.send(frame("head", None, &data)).await.is_err() {
                        return;
                    }
                }
                more
            }
        };
        if more {
            continue;
        }
        let expiry = expires_at
            .map(|e| Duration::from_millis(u64::try_from(e - secrets::now_ms()).unwrap_or(0)))
            .unwrap_or(Duration::MAX)
            .min(KEEP_ALIVE);
        tokio::select! {
            changed = rx.changed() => {
                if changed.is_err() {
                    rx = state.channels.watch_commits(&cid);
                } else {
                    rx.borrow_and_update();
                }
            }
            _ = tokio::time::sleep(expiry) => {
                if tx.send(Bytes::from_static(b": keep-alive\n\n")).await.is_err() {
                    return;
                }
            }
            _ = tx.closed() => return,
            _ = state.shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests;
