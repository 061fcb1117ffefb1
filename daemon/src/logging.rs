//! Logging: what may be logged, and how a line reaches stderr without ever
//! holding up the daemon.
//!
//! **Never blocking, never failing.** Log lines go into a bounded queue that
//! one thread writes to stderr. When stderr is a pipe whose reader stopped
//! reading, that thread blocks and the queue fills: further lines are
//! dropped (and counted), but no request thread waits. When the reader is
//! gone (a closed pipe), writes fail with `EPIPE` and are ignored. Before
//! this, `tracing`'s writer wrote on the calling thread and reported a failed
//! write with `eprintln!`, which panics when stderr is closed: the task that
//! logged died, the signal task among them, and SIGTERM was ignored.
//!
//! **One event, one line.** Values a request controls reach log fields (a
//! client's name or metadata-document URL, a redirect URI, a `resource`, a
//! channel id from a path, an error description quoting any of them). The
//! daemon's own calls log those with `?` (Debug, quoted and escaped), but
//! the guarantee does not rest on every call site: each event's formatted
//! line is passed through [`one_line`] before it is queued, which escapes
//! every control character (C0, DEL, C1: newlines, carriage returns, ESC)
//! but the line's final newline. A request cannot forge a second log line
//! (each becomes its own journal entry under systemd) nor send terminal
//! escape sequences to whoever reads the log. JSON lines already escape
//! them; the pass changes nothing there.
//!
//! **No secrets at any level.** The daemon's own events never carry tokens,
//! codes, invite or rejoin secrets, message bodies or bot state. Other
//! crates are capped whatever `MCP_MULTIPLAYER_LOG` says: `rmcp` logs whole
//! JSON-RPC requests and results at `debug`/`trace` (and session ids at
//! `info`), so it is held at `warn`; every other dependency at `info`.
//! `daemon/tests/it/logs.rs` runs the daemon at `trace`, uses every tool and
//! the OAuth flow, and searches the log for each secret it handled.

use crate::config::LogFormat;
use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use tracing::{Level, Metadata};
use tracing_subscriber::filter::{EnvFilter, FilterExt, filter_fn};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

/// The filter used when `MCP_MULTIPLAYER_LOG` is unset.
pub const DEFAULT_FILTER: &str = "info";

/// Lines waiting for the stderr thread; beyond this they are dropped.
const QUEUE_LINES: usize = 8192;

static QUEUE: OnceLock<SyncSender<Vec<u8>>> = OnceLock::new();
static DROPPED: AtomicU64 = AtomicU64::new(0);
static QUEUED: AtomicU64 = AtomicU64::new(0);
static WRITTEN: AtomicU64 = AtomicU64::new(0);

/// Log lines dropped because stderr was not keeping up (for `/metrics`).
pub fn dropped_lines() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Installs the global subscriber: the operator's filter (an `EnvFilter`
/// string from `MCP_MULTIPLAYER_LOG`), the dependency caps, and the
/// non-blocking stderr writer.
pub fn init(format: LogFormat, filter: Option<&str>) {
    let env = filter
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(DEFAULT_FILTER));
    let filter = env.and(filter_fn(dependency_cap));
    let layer = fmt::layer()
        .with_writer(Stderr)
        .with_ansi(false)
        .log_internal_errors(false);
    let layer = match format {
        LogFormat::Json => layer.json().with_filter(filter).boxed(),
        LogFormat::Text => layer.with_filter(filter).boxed(),
    };
    let _ = tracing_subscriber::registry().with(layer).try_init();
    // A panic is logged like any event instead of the default hook's
    // direct (and possibly blocking) write to stderr.
    std::panic::set_hook(Box::new(|info| {
        tracing::error!(panic = %info, "a task panicked");
    }));
}

/// Whether an event or span of another crate may be logged at all.
fn dependency_cap(meta: &Metadata<'_>) -> bool {
    let target = meta.target();
    if target.starts_with("mcp_multiplayer") || target.starts_with("tower_http") {
        true
    } else if target.starts_with("rmcp") {
        *meta.level() <= Level::WARN
    } else {
        *meta.level() <= Level::INFO
    }
}

/// Writes one plain line to stderr in order with the log (a line scripts
/// wait for, like "listening on"). Never blocks on a stalled reader and
/// never fails.
pub fn print_line(line: &str) {
    let mut bytes = line.as_bytes().to_vec();
    bytes.push(b'\n');
    match queue() {
        Some(q) => enqueue(q, bytes),
        None => {
            let _ = std::io::stderr().write_all(&bytes);
        }
    }
}

fn queue() -> Option<&'static SyncSender<Vec<u8>>> {
    if let Some(q) = QUEUE.get() {
        return Some(q);
    }
    let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE_LINES);
    let spawned = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || {
            let stderr = std::io::stderr();
            for line in rx {
                // EPIPE (nobody reads any more) and every other error: the
                // line is lost, the daemon goes on.
                let _ = stderr.lock().write_all(&line);
                WRITTEN.fetch_add(1, Ordering::Release);
            }
        });
    if spawned.is_err() {
        return None;
    }
    Some(QUEUE.get_or_init(|| tx))
}

/// Waits (at most `limit`) until the lines queued so far are written: the
/// last lines before the process exits.
pub fn flush(limit: std::time::Duration) {
    let target = QUEUED.load(Ordering::Acquire);
    let until = std::time::Instant::now() + limit;
    while WRITTEN.load(Ordering::Acquire) < target && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

fn enqueue(q: &SyncSender<Vec<u8>>, line: Vec<u8>) {
    match q.try_send(line) {
        Ok(()) => {
            QUEUED.fetch_add(1, Ordering::Release);
        }
        Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The writer `tracing` formats each event into: one buffer per event,
/// queued whole when the formatter drops it.
struct Stderr;

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line(Vec::with_capacity(256))
    }
}

struct Line(Vec<u8>);

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let line = one_line(std::mem::take(&mut self.0));
        match queue() {
            Some(q) => enqueue(q, line),
            None => {
                DROPPED.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// `line` with every control character escaped (`\n`, `\r`, `\t`, else
/// `\u{..}`) except a final newline: one formatted event stays one line of
/// the log, without terminal escapes, whatever its fields hold. A line
/// without control characters is returned as it is.
fn one_line(line: Vec<u8>) -> Vec<u8> {
    let body = line.strip_suffix(b"\n").unwrap_or(&line);
    let text = String::from_utf8_lossy(body);
    if !text.chars().any(char::is_control) && !matches!(text, std::borrow::Cow::Owned(_)) {
        return line;
    }
    let mut out = String::with_capacity(line.len() + 16);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&c.escape_unicode().to_string()),
            c => out.push(c),
        }
    }
    if body.len() < line.len() {
        out.push('\n');
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Attack (red-team F2): a request value carrying a newline forges a
    /// second log line ("passphrase accepted ..."), and one carrying ESC
    /// writes terminal escape sequences into the log. Stopped by
    /// [`one_line`], which every event passes through before it is queued.
    #[test]
    fn a_logged_value_cannot_forge_a_line_or_write_an_escape_sequence() {
        let forged =
            "WARN refused x\n2026-12-05T12:00:00Z  INFO passphrase accepted\u{1b}[31m\u{9b}\r\n";
        let out = String::from_utf8(one_line(forged.as_bytes().to_vec())).unwrap();
        assert_eq!(out.matches('\n').count(), 1, "{out:?}");
        assert!(out.ends_with('\n'));
        assert!(!out.chars().any(|c| c.is_control() && c != '\n'), "{out:?}");
        assert_eq!(
            out,
            "WARN refused x\\n2026-12-05T12:00:00Z  INFO passphrase accepted\\u{1b}[31m\\u{9b}\\r\n"
        );
        // Ordinary lines pass untouched, non-ASCII text included.
        let plain = "INFO client registered client_id=\"é\"\n";
        assert_eq!(one_line(plain.as_bytes().to_vec()), plain.as_bytes());
    }

    fn meta_of(target: &'static str, level: Level) -> bool {
        // A callsite's metadata for an arbitrary target and level.
        struct Cs;
        impl tracing::callsite::Callsite for Cs {
            fn set_interest(&self, _: tracing::subscriber::Interest) {}
            fn metadata(&self) -> &Metadata<'_> {
                unreachable!()
            }
        }
        static CS: Cs = Cs;
        let meta = Metadata::new(
            "e",
            target,
            level,
            None,
            None,
            None,
            tracing::field::FieldSet::new(&[], tracing::callsite::Identifier(&CS)),
            tracing::metadata::Kind::EVENT,
        );
        dependency_cap(&meta)
    }

    #[test]
    fn rmcp_is_held_at_warn_and_other_crates_at_info_whatever_the_filter() {
        assert!(meta_of("mcp_multiplayer::mcp", Level::TRACE));
        assert!(meta_of("tower_http::trace::on_response", Level::DEBUG));
        assert!(
            !meta_of("rmcp::service", Level::DEBUG),
            "logs whole requests"
        );
        assert!(!meta_of(
            "rmcp::transport::streamable_http_server",
            Level::TRACE
        ));
        assert!(
            !meta_of(
                "rmcp::transport::streamable_http_server::session::local",
                Level::INFO
            ),
            "session ids"
        );
        assert!(meta_of("rmcp::service", Level::WARN));
        assert!(!meta_of("hyper::proto::h1", Level::DEBUG));
        assert!(meta_of("hyper::proto::h1", Level::INFO));
    }
}
