//! The bearer tokens recently found valid, so that a request is
//! authenticated without a database read, and the signal that empties that
//! memory the moment any token is revoked.
//!
//! Every `/mcp` request carries a token. Looking it up meant a read on the
//! blocking pool: two thread switches and a transaction per request, about a
//! quarter of the daemon's CPU under `post_message` load. Here a token found
//! valid is remembered with its principal, audience and expiry; a request
//! that presents it again is served from memory while nothing has revoked
//! any token since.
//!
//! Revocation takes effect at once, whoever revokes and from whichever
//! process. The writer connection of every `Store` (the daemon's, and the
//! one a CLI command opens on the same file) carries temporary triggers on
//! `access_tokens`: any UPDATE or DELETE of a token row (revocation, a
//! grant's family revoked, an expiry moved) marks the transaction, and after
//! its COMMIT, before anyone is answered, the writer bumps this process's
//! revocation count and replaces the file `<database>-revocations` next to
//! the database. A lookup compares both the count and that file's identity
//! (inode, change time) with what they were when its memory was filled; if
//! either moved, the memory is dropped and the token read from the database
//! again. A CLI `token revoke` therefore stops the token for the running
//! daemon as soon as the command has committed, at the cost of one `stat`
//! per request. Expiry is checked against the remembered `expires_at` on
//! every use. Only valid tokens are remembered; an unknown token is always
//! a database read.
//!
//! (The triggers are TEMP: they live on the connection, not in the schema,
//! so no migration is involved. A revocation made outside the daemon's own
//! code, with the `sqlite3` shell say, bypasses them: revoke with
//! `mcp-multiplayer token revoke`, `grant revoke` or `client revoke`.)
//!
//! On PostgreSQL the daemons and CLI commands sharing the database may be on
//! other machines, so the signal travels with the commits instead: a
//! trigger in the schema marks the transaction (a transaction-local
//! setting), the writer reads the mark before COMMIT and puts it in the
//! batch's commit notification, and every other daemon's listener forgets
//! its remembered tokens when it hears it (`pg`). A revocation therefore
//! stops the token on the other daemons as soon as they hear of the commit,
//! as a post wakes their long-polls. While a daemon's listener has lost its
//! connection it could miss a revocation: it remembers no token until it
//! listens again.

use crate::model::Principal;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Most tokens remembered; past it the memory starts over.
const MAX_REMEMBERED: usize = 10_000;

/// What changes whenever a token is revoked: this process's count, and the
/// identity of the signal file (another process's revocations).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Epoch {
    local: u64,
    file: Option<(u64, i64, i64)>,
}

struct Remembered {
    principal: Principal,
    audience: Option<String>,
    expires_at: Option<i64>,
}

/// Valid tokens by hash, as of one [`Epoch`].
pub(crate) struct TokenCache {
    /// The signal file (SQLite); `None` on PostgreSQL, where the commit
    /// notifications carry the signal.
    signal: Option<PathBuf>,
    local: AtomicU64,
    /// Set by the writer connection's triggers during a transaction.
    pub(super) touched: std::sync::Arc<AtomicBool>,
    /// Set while revocations by other daemons might go unheard (PostgreSQL,
    /// the listener reconnecting): nothing is remembered meanwhile.
    deaf: AtomicBool,
    /// Counts what made this memory forget on PostgreSQL: other daemons'
    /// token changes heard, the listener's connection lost and regained.
    heard: tokio::sync::watch::Sender<u64>,
    inner: Mutex<(Epoch, HashMap<Vec<u8>, Remembered>)>,
}

impl TokenCache {
    /// The memory of the store whose SQLite database is `db`.
    pub(super) fn new(db: &Path) -> TokenCache {
        let mut signal = db.as_os_str().to_owned();
        signal.push("-revocations");
        TokenCache::with_signal(Some(PathBuf::from(signal)))
    }

    /// The memory of a PostgreSQL store: no signal file.
    pub(super) fn without_signal_file() -> TokenCache {
        TokenCache::with_signal(None)
    }

    fn with_signal(signal: Option<PathBuf>) -> TokenCache {
        let epoch = Epoch {
            local: 0,
            file: signal.as_deref().and_then(stamp),
        };
        TokenCache {
            signal,
            local: AtomicU64::new(0),
            touched: std::sync::Arc::default(),
            deaf: AtomicBool::new(false),
            heard: tokio::sync::watch::Sender::new(0),
            inner: Mutex::new((epoch, HashMap::new())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Epoch, HashMap<Vec<u8>, Remembered>)> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The revocation epoch now.
    pub(crate) fn epoch(&self) -> Epoch {
        Epoch {
            local: self.local.load(Ordering::Acquire),
            file: self.signal.as_deref().and_then(stamp),
        }
    }

    /// The principal of a remembered token still valid for `resource` at
    /// `now_ms`, if nothing was revoked since it was remembered.
    pub(crate) fn get(&self, hash: &[u8], resource: &str, now_ms: i64) -> Option<Principal> {
        if self.deaf.load(Ordering::Acquire) {
            return None;
        }
        let epoch = self.epoch();
        let mut g = self.lock();
        if g.0 != epoch {
            g.0 = epoch;
            g.1.clear();
            return None;
        }
        let r = g.1.get(hash)?;
        let valid = r.expires_at.is_none_or(|e| e > now_ms)
            && r.audience.as_deref().is_none_or(|a| a == resource);
        valid.then(|| r.principal.clone())
    }

    /// Remembers a token found valid by a read that began at `as_of`;
    /// nothing if a revocation happened since (the read may predate it).
    pub(crate) fn put(
        &self,
        hash: Vec<u8>,
        principal: &Principal,
        audience: Option<String>,
        expires_at: Option<i64>,
        as_of: Epoch,
    ) {
        let mut g = self.lock();
        if g.0 != as_of || self.epoch() != as_of || self.deaf.load(Ordering::Acquire) {
            return;
        }
        if g.1.len() >= MAX_REMEMBERED {
            g.1.clear();
        }
        g.1.insert(
            hash,
            Remembered {
                principal: principal.clone(),
                audience,
                expires_at,
            },
        );
    }

    /// After a COMMIT: if the transaction changed a token row, every
    /// remembered token is forgotten, here and (through the signal file) in
    /// every other process on this database.
    pub(super) fn committed(&self) {
        if !self.touched.swap(false, Ordering::AcqRel) {
            return;
        }
        self.local.fetch_add(1, Ordering::AcqRel);
        let Some(signal) = &self.signal else {
            return;
        };
        let mut tmp = signal.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        // A new file each time (a new inode), so that the change shows
        // whatever the filesystem's timestamp resolution.
        let done = std::fs::write(&tmp, format!("{}\n", crate::secrets::now_ms()))
            .and_then(|()| std::fs::rename(&tmp, signal));
        if let Err(e) = done {
            tracing::error!(error = %e, path = %signal.display(), "cannot signal a token revocation to other processes");
        }
    }

    /// Another daemon committed a change to a token row: forget every
    /// remembered token.
    pub(super) fn revoked_elsewhere(&self) {
        self.local.fetch_add(1, Ordering::AcqRel);
        self.heard.send_modify(|n| *n += 1);
    }

    /// Follows [`TokenCache::revoked_elsewhere`] and
    /// [`TokenCache::set_deaf`].
    #[cfg(test)]
    pub(crate) fn heard(&self) -> tokio::sync::watch::Receiver<u64> {
        self.heard.subscribe()
    }

    /// Whether other daemons' revocations may go unheard now (`true` while
    /// the PostgreSQL listener reconnects). Either way, what was remembered
    /// is forgotten.
    pub(super) fn set_deaf(&self, deaf: bool) {
        self.deaf.store(deaf, Ordering::Release);
        self.local.fetch_add(1, Ordering::AcqRel);
        self.heard.send_modify(|n| *n += 1);
    }

    /// A transaction was rolled back: its token changes did not happen.
    pub(super) fn rolled_back(&self) {
        self.touched.store(false, Ordering::Release);
    }
}

/// The signal file's identity: inode and change time (seconds, nanoseconds).
fn stamp(path: &Path) -> Option<(u64, i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.ino(), m.ctime(), m.ctime_nsec()))
}

/// Installs, on the writer connection, the temporary triggers that mark a
/// transaction that changed or deleted a token row.
pub(super) fn watch_revocations(
    conn: &rusqlite::Connection,
    touched: std::sync::Arc<AtomicBool>,
) -> Result<(), rusqlite::Error> {
    use rusqlite::functions::FunctionFlags;
    conn.create_scalar_function(
        "mcpmp_token_changed",
        0,
        FunctionFlags::SQLITE_UTF8,
        move |_| {
            touched.store(true, Ordering::Release);
            Ok(0i64)
        },
    )?;
    conn.execute_batch(
        "CREATE TEMP TRIGGER IF NOT EXISTS mcpmp_token_updated AFTER UPDATE ON main.access_tokens
           BEGIN SELECT mcpmp_token_changed(); END;
         CREATE TEMP TRIGGER IF NOT EXISTS mcpmp_token_deleted AFTER DELETE ON main.access_tokens
           BEGIN SELECT mcpmp_token_changed(); END;",
    )
}
