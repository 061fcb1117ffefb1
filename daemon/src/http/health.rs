//! `/healthz`: whether this daemon can do its job now.
//!
//! "The database answers a read" is not enough: a full disk or a database
//! that turned read-only (a filesystem remounted after an error) still
//! answers reads while every post fails. So the check is a real write
//! through the writer (one row, committed like any post) plus the free
//! space of the state directory's filesystem. The result is cached for a
//! second and computed by one caller at a time, so a flood of health checks
//! costs at most one write a second.

use crate::app::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::path::Path;
use std::time::{Duration, Instant};

/// Below this much free space the disk counts as full: SQLite needs room
/// for its WAL to grow before it can commit anything.
pub const DISK_FULL_BELOW: u64 = 1024 * 1024;

/// How long one reading is reused.
const FRESH: Duration = Duration::from_secs(1);

/// How long the write probe may take before the database counts as not
/// answering.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The last reading, shared by concurrent callers.
#[derive(Default)]
pub struct Health {
    last: tokio::sync::Mutex<Option<(Instant, Reading)>>,
}

#[derive(Debug, Clone, Serialize)]
struct Reading {
    /// `ok`, `disk full`, `read-only`, `not answering` or `error`.
    database: &'static str,
    disk: Disk,
}

#[derive(Debug, Clone, Serialize)]
struct Disk {
    /// `ok`, `full` or `unknown`.
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    free_bytes: Option<u64>,
}

impl Reading {
    fn healthy(&self) -> bool {
        self.database == "ok" && self.disk.status != "full"
    }
}

/// Free bytes for an unprivileged writer on the filesystem holding `dir`.
// `fsblkcnt_t` and `c_ulong` are 32 bits on some targets.
#[allow(clippy::useless_conversion)]
fn free_bytes(dir: &Path) -> Option<u64> {
    let s = nix::sys::statvfs::statvfs(dir).ok()?;
    Some(u64::from(s.blocks_available()).saturating_mul(u64::from(s.fragment_size())))
}

/// Whether the filesystem holding `dir` refuses writes: mounted read-only,
/// or turned read-only by the kernel after an error (ext4's `emergency_ro`
/// shows in no mount flag, only in the answer to a write).
fn mounted_read_only(dir: &Path) -> bool {
    if nix::sys::statvfs::statvfs(dir)
        .is_ok_and(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
    {
        return true;
    }
    let probe = dir.join(".mcp-multiplayer-health");
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            false
        }
        Err(e) => e.kind() == std::io::ErrorKind::ReadOnlyFilesystem,
    }
}

async fn read(state: &AppState) -> Reading {
    let store = state.channels.store();
    let database = match tokio::time::timeout(PROBE_TIMEOUT, store.probe_write()).await {
        Ok(Ok(())) => "ok",
        Ok(Err(e)) if e.is_disk_full() => "disk full",
        Ok(Err(e)) if e.is_read_only() => "read-only",
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "health probe write failed");
            "error"
        }
        Err(_) => "not answering",
    };
    let dir = store.path().parent().unwrap_or(Path::new("."));
    // A filesystem the kernel remounted read-only (after an I/O error) fails
    // writes with EIO/EROFS, which SQLite reports as an I/O error: name it.
    let database = if database != "ok" && mounted_read_only(dir) {
        "read-only"
    } else {
        database
    };
    let free = free_bytes(dir);
    let status = match free {
        Some(f) if f < DISK_FULL_BELOW => "full",
        Some(_) => "ok",
        None => "unknown",
    };
    Reading {
        database,
        disk: Disk {
            status,
            free_bytes: free,
        },
    }
}

pub async fn healthz(State(state): State<AppState>) -> Response {
    let reading = {
        let mut last = state.health.last.lock().await;
        match &*last {
            Some((at, r)) if at.elapsed() < FRESH => r.clone(),
            _ => {
                let r = read(&state).await;
                *last = Some((Instant::now(), r.clone()));
                r
            }
        }
    };
    let sandbox = match state.sandbox.get() {
        None => serde_json::json!("checking"),
        Some(Ok(())) => serde_json::json!("ok"),
        Some(Err(e)) => serde_json::json!({"error": e}),
    };
    // The runner inherits the daemon's uid: as root it switches each hook to a
    // sandbox uid; otherwise it confines with an unprivileged user namespace.
    let sandbox_mode = if nix::unistd::geteuid().is_root() {
        "root: per-hook sandbox uid"
    } else {
        "user namespace"
    };
    let healthy = reading.healthy();
    let body = serde_json::json!({
        "status": if healthy { "ok" } else { "unhealthy" },
        "version": env!("CARGO_PKG_VERSION"),
        "database": reading.database,
        "disk": reading.disk,
        "sandbox": sandbox,
        "sandbox_mode": sandbox_mode,
    });
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body)).into_response()
}
