//! Transcripts over plain HTTP: the daemon's public keys at a well-known
//! URL (no authentication: anyone checking a transcript needs them), and a
//! channel's export for a bearer-token holder, streamed a page at a time so
//! that a big channel costs one page of memory (`docs/transcripts.md`).

use crate::app::AppState;
use crate::channels::{Code, ToolError, ToolFailure};
use crate::model::{Principal, Seq, SignedHead, TranscriptExport};
use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Where the key list is published.
pub const KEYS_PATH: &str = "/.well-known/mcp-multiplayer/keys.json";

/// `GET /.well-known/mcp-multiplayer/keys.json`: every public key of the
/// daemon, oldest first, with the period each signed.
pub async fn keys(State(state): State<AppState>) -> Response {
    let mut r = axum::Json(state.signer.keys().clone()).into_response();
    let h = r.headers_mut();
    // Public and the same for everyone: any page may read it.
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    r
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// Which of the caller's seats exports, when it holds several.
    slot: Option<String>,
}

fn status(code: Code) -> StatusCode {
    match code {
        Code::ChannelNotFound => StatusCode::NOT_FOUND,
        Code::NotMember | Code::NotAdmin => StatusCode::FORBIDDEN,
        Code::TokenInvalid => StatusCode::UNAUTHORIZED,
        Code::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

fn error(e: &ToolError) -> Response {
    if e.code == Code::Internal {
        // The detail was logged where it happened.
        let generic = ToolError::new(Code::Internal, "the export failed; try again");
        return (status(e.code), axum::Json(ToolFailure { error: &generic })).into_response();
    }
    (status(e.code), axum::Json(ToolFailure { error: e })).into_response()
}

/// A stream of body chunks fed by a task.
struct Chunks(tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl futures_core::Stream for Chunks {
    type Item = Result<Bytes, std::io::Error>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

/// The document without its last `}`, `entries` and `signed_heads`: the
/// head of a streamed export, to which those two arrays are appended.
fn opening(doc: &TranscriptExport) -> Result<String, serde_json::Error> {
    let mut v = serde_json::to_value(doc)?;
    if let Some(o) = v.as_object_mut() {
        o.remove("entries");
        o.remove("signed_heads");
        o.remove("page");
    }
    let mut s = serde_json::to_string(&v)?;
    s.pop();
    Ok(s)
}

fn json_list<T: serde::Serialize>(items: &[T], first: bool) -> Result<String, serde_json::Error> {
    let mut s = String::new();
    for (i, it) in items.iter().enumerate() {
        if !(first && i == 0) {
            s.push(',');
        }
        s.push_str(&serde_json::to_string(it)?);
    }
    Ok(s)
}

/// `GET /channels/{channel_id}/export[?slot=SEAT]`: the whole export. The
/// first page is read before the answer starts, so a caller who may not
/// export gets a 4xx with the tool's error; later pages are read (and the
/// caller's token and seat checked again) as the body is sent, and a
/// failure then cuts the body short, which no JSON parser accepts.
pub async fn export(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(channel_id): Path<String>,
    Query(q): Query<ExportQuery>,
) -> Response {
    let channels = state.channels.clone();
    let first = match channels
        .export_page(&who, &channel_id, q.slot.clone(), 0)
        .await
    {
        Ok(d) => d,
        Err(e) => return error(&e),
    };
    let next: NextPage = Box::new(move |after| {
        let (channels, who, cid, slot) = (
            channels.clone(),
            who.clone(),
            channel_id.clone(),
            q.slot.clone(),
        );
        Box::pin(async move { channels.export_page(&who, &cid, slot, after).await })
    });
    streamed(first, next)
}

/// Reads the page of an export that follows the cursor it is given.
pub(crate) type NextPage = Box<
    dyn Fn(Seq) -> Pin<Box<dyn Future<Output = Result<TranscriptExport, ToolError>> + Send>>
        + Send
        + Sync,
>;

/// The file name an export is saved under: `<channel_id>.transcript.json`.
pub(crate) fn file_name(channel_id: &str) -> String {
    format!(
        "{}.transcript.json",
        channel_id.replace(|c: char| !c.is_ascii_alphanumeric() && c != '_', "")
    )
}

/// The whole export as one JSON document, from its `first` page: sent at
/// once when that is the whole channel, otherwise streamed, each later page
/// read by `next` as the body is sent (a failure then cuts the body short).
pub(crate) fn streamed(first: TranscriptExport, next: NextPage) -> Response {
    let json = HeaderValue::from_static("application/json");
    let disposition = HeaderValue::from_str(&format!(
        "attachment; filename=\"{}\"",
        file_name(&first.channel.channel_id)
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    let headers = [
        (header::CONTENT_TYPE, json),
        (header::CONTENT_DISPOSITION, disposition),
    ];
    let Some(page) = first.page.clone() else {
        return match serde_json::to_vec(&first) {
            Ok(body) => (headers, body).into_response(),
            Err(e) => {
                tracing::error!(error = %e, "cannot encode an export");
                error(&ToolError::new(Code::Internal, ""))
            }
        };
    };
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    tokio::spawn(async move {
        let send = |s: String| {
            let tx = tx.clone();
            async move { tx.send(Ok(Bytes::from(s))).await.is_ok() }
        };
        let fail = |why: String| {
            let tx = tx.clone();
            async move {
                tracing::warn!(reason = ?why, "an export stream stopped early");
                let _ = tx.send(Err(std::io::Error::other(why))).await;
            }
        };
        let mut heads: Vec<SignedHead> = first.signed_heads.clone();
        let start = match (opening(&first), json_list(&first.entries, true)) {
            (Ok(o), Ok(e)) => format!("{o},\"entries\":[{e}"),
            (Err(e), _) | (_, Err(e)) => return fail(e.to_string()).await,
        };
        if !send(start).await {
            return;
        }
        let mut cursor = page.cursor;
        let mut more = page.more;
        while more {
            let next = match next(cursor).await {
                Ok(d) => d,
                Err(e) => return fail(e.message).await,
            };
            let Some(p) = next.page else {
                return fail("a page without its position".into()).await;
            };
            // Each page ends with a head at its last entry; the heads of
            // the pages before stay (they are valid heads, earlier ones).
            heads.extend(next.signed_heads.into_iter().filter(|h| h.seq > cursor));
            match json_list(&next.entries, false) {
                Ok(e) => {
                    if !send(e).await {
                        return;
                    }
                }
                Err(e) => return fail(e.to_string()).await,
            }
            cursor = p.cursor;
            more = p.more;
        }
        match json_list(&heads, true) {
            Ok(h) => {
                let _ = send(format!("],\"signed_heads\":[{h}]}}")).await;
            }
            Err(e) => fail(e.to_string()).await,
        }
    });
    (headers, Body::from_stream(Chunks(rx))).into_response()
}
