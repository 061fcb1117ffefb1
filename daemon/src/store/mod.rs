//! SQLite state: one writer thread with group commit, a pool of readers.
//!
//! Durability is the point (DESIGN §8): WAL with `synchronous=FULL`, so a
//! transaction that returned from COMMIT survives `kill -9` and power loss.
//! To keep throughput with one fsync per commit, the writer drains every write
//! queued while the previous commit was in flight and runs them in one
//! transaction, each in its own SAVEPOINT so that one failing write (a refused
//! post, say) rolls back alone. Callers get their result only after the
//! COMMIT that contains it has returned: an acknowledged write is on disk.
//!
//! Reads run on a small pool of read-only connections through
//! `spawn_blocking`; WAL lets them proceed while the writer commits. At most
//! [`MAX_READERS`] reads run at once and the others wait their turn, so a
//! burst (a thousand long-polls woken by one post) reuses the pooled
//! connections instead of opening one per read (each open parses the schema)
//! and parking hundreds of blocking threads. Handlers never hold a connection.

use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use thiserror::Error;
use tokio::sync::oneshot;

/// Migrations embedded in the binary, applied in order; `PRAGMA user_version`
/// records how many ran.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_core.sql"),
    include_str!("../../migrations/0002_oauth.sql"),
];

/// Most writes one transaction takes.
const MAX_BATCH: usize = 512;

/// Read connections kept open, and reads that run at once.
const MAX_READERS: usize = 16;

/// A storage failure. Never shown to clients in detail.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot create state directory {path}: {source}")]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the database writer has stopped")]
    WriterGone,
    #[error("database task failed: {0}")]
    Join(String),
}

/// What a write closure may fail with: either the caller's own error type
/// (which rolls back just that write) or a storage failure.
pub trait FromStoreError: Send + 'static {
    fn from_store(e: StoreError) -> Self;
}

impl FromStoreError for StoreError {
    fn from_store(e: StoreError) -> Self {
        e
    }
}

type Job = Box<dyn FnOnce(&Connection) -> Completion + Send>;

/// Hands a write's result to its caller, given the batch's commit error.
type Deliver = Box<dyn FnOnce(Option<&rusqlite::Error>) + Send>;

/// What the writer does after the batch's COMMIT: `ok` tells whether the job's
/// own savepoint was kept; `deliver` hands the result (or the commit error) to
/// the caller.
struct Completion {
    ok: bool,
    deliver: Deliver,
}

/// Handle to the database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Option<mpsc::Sender<Job>>>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    readers: Mutex<Vec<Connection>>,
    /// One permit per read that may run now (see the module doc).
    read_permits: Arc<tokio::sync::Semaphore>,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and migrates it.
    ///
    /// # Errors
    /// The directory or file cannot be created, or a migration fails.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::StateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let mut conn = Connection::open(path)?;
        configure(&conn)?;
        migrate(&mut conn)?;
        let (tx, rx) = mpsc::channel::<Job>();
        let handle = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx))
            .map_err(|e| StoreError::Join(e.to_string()))?;
        Ok(Store {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                writer: Mutex::new(Some(tx)),
                writer_thread: Mutex::new(Some(handle)),
                readers: Mutex::new(Vec::new()),
                read_permits: Arc::new(tokio::sync::Semaphore::new(MAX_READERS)),
            }),
        })
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` in the writer's next transaction and returns once that
    /// transaction has committed. An `Err` from `f` rolls back only `f`'s own
    /// changes.
    pub async fn write<R, E, F>(&self, f: F) -> Result<R, E>
    where
        R: Send + 'static,
        E: FromStoreError,
        F: FnOnce(&Connection) -> Result<R, E> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<Result<R, E>>();
        let job: Job = Box::new(move |conn: &Connection| {
            let result = f(conn);
            let ok = result.is_ok();
            Completion {
                ok,
                deliver: Box::new(move |commit_err| {
                    let out = match commit_err {
                        Some(e) => Err(E::from_store(StoreError::Sqlite(clone_err(e)))),
                        None => result,
                    };
                    let _ = tx.send(out);
                }),
            }
        });
        {
            let guard = self
                .inner
                .writer
                .lock()
                .map_err(|_| E::from_store(StoreError::WriterGone))?;
            let sender = guard
                .as_ref()
                .ok_or_else(|| E::from_store(StoreError::WriterGone))?;
            sender
                .send(job)
                .map_err(|_| E::from_store(StoreError::WriterGone))?;
        }
        rx.await
            .unwrap_or_else(|_| Err(E::from_store(StoreError::WriterGone)))
    }

    /// Runs `f` on a read connection (a consistent snapshot) off the async
    /// threads.
    pub async fn read<R, E, F>(&self, f: F) -> Result<R, E>
    where
        R: Send + 'static,
        E: FromStoreError,
        F: FnOnce(&Connection) -> Result<R, E> + Send + 'static,
    {
        let inner = self.inner.clone();
        let permit = inner
            .read_permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| E::from_store(StoreError::Join(e.to_string())))?;
        tokio::task::spawn_blocking(move || {
            // Held until the read is done, even if the caller went away.
            let _permit = permit;
            let conn = match inner.take_reader() {
                Ok(c) => c,
                Err(e) => return Err(E::from_store(e)),
            };
            let out = f(&conn);
            inner.put_reader(conn);
            out
        })
        .await
        .unwrap_or_else(|e| Err(E::from_store(StoreError::Join(e.to_string()))))
    }

    /// Stops the writer after it has committed everything queued.
    pub fn close(&self) {
        if let Ok(mut w) = self.inner.writer.lock() {
            w.take();
        }
        if let Ok(mut t) = self.inner.writer_thread.lock()
            && let Some(handle) = t.take()
        {
            let _ = handle.join();
        }
    }
}

impl Inner {
    fn take_reader(&self) -> Result<Connection, StoreError> {
        if let Some(c) = self.readers.lock().ok().and_then(|mut r| r.pop()) {
            return Ok(c);
        }
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        keep_statements_prepared(&conn)?;
        Ok(conn)
    }

    fn put_reader(&self, conn: Connection) {
        if let Ok(mut r) = self.readers.lock()
            && r.len() < MAX_READERS
        {
            r.push(conn);
        }
    }
}

/// Statements each connection keeps prepared (rusqlite's default is 16,
/// fewer than the distinct statements the tools use).
const STATEMENT_CACHE: usize = 128;

/// Makes `prepare_cached` statements stay prepared between uses.
///
/// Without the query planner stability guarantee (QPSG), SQLite marks a
/// statement for re-preparation whenever a bound value might change its plan
/// (the bundled 3.54 does so even for `col = ?` filter terms), and rusqlite
/// clears the bindings of every statement it puts back in its cache, which
/// expires such a statement: each use then parsed and planned the SQL again.
/// That was ~16% of the daemon's CPU under `post_message` load
/// (BENCHMARKS.md). With QPSG a plan never depends on bound values; we have
/// no `ANALYZE` statistics for it to use anyway.
fn keep_statements_prepared(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(())
}

fn configure(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    keep_statements_prepared(conn)?;
    // WAL: readers never block the writer. FULL: the WAL is fsynced at every
    // commit, so an acknowledged write survives power loss, not only a crash.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let done: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done.max(0) as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
        tracing::info!(migration = i + 1, "applied database migration");
    }
    Ok(())
}

fn writer_loop(conn: Connection, rx: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        run_batch(&conn, &mut batch);
    }
}

fn run_batch(conn: &Connection, batch: &mut Vec<Job>) {
    let mut done: Vec<Completion> = Vec::with_capacity(batch.len());
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        tracing::error!(error = %e, "cannot begin write transaction");
        for job in batch.drain(..) {
            // Run nothing: report the failure to every caller.
            let c = job_failed();
            (c.deliver)(Some(&e));
            drop(job);
        }
        return;
    }
    for job in batch.drain(..) {
        if let Err(e) = conn.execute_batch("SAVEPOINT job") {
            let c = job_failed();
            (c.deliver)(Some(&e));
            drop(job);
            continue;
        }
        let completion = job(conn);
        let end = if completion.ok {
            "RELEASE job"
        } else {
            "ROLLBACK TO job; RELEASE job"
        };
        if let Err(e) = conn.execute_batch(end) {
            tracing::error!(error = %e, "savepoint end failed");
        }
        done.push(completion);
    }
    match conn.execute_batch("COMMIT") {
        Ok(()) => {
            for c in done {
                (c.deliver)(None);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "commit failed; every write of the batch is refused");
            let _ = conn.execute_batch("ROLLBACK");
            for c in done {
                (c.deliver)(Some(&e));
            }
        }
    }
}

fn job_failed() -> Completion {
    Completion {
        ok: false,
        deliver: Box::new(|_| {}),
    }
}

fn clone_err(e: &rusqlite::Error) -> rusqlite::Error {
    match e {
        rusqlite::Error::SqliteFailure(code, msg) => {
            rusqlite::Error::SqliteFailure(*code, msg.clone())
        }
        other => rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(other.to_string()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp_db() -> (PathBuf, Store) {
        let dir = std::env::temp_dir().join(format!(
            "mcpmp-store-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let path = dir.join("t.db");
        let store = Store::open(&path).unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn a_failed_write_rolls_back_alone() {
        let (_dir, store) = tmp_db();
        let ok = store.write(|c| {
            c.execute("INSERT INTO principals VALUES ('p1','a','cli',0)", [])?;
            Ok::<_, StoreError>(())
        });
        let bad = store.write(|c| {
            c.execute("INSERT INTO principals VALUES ('p2','b','cli',0)", [])?;
            // Fails: duplicate key. p2 must not survive either.
            c.execute("INSERT INTO principals VALUES ('p1','dup','cli',0)", [])?;
            Ok::<_, StoreError>(())
        });
        let (a, b) = tokio::join!(ok, bad);
        assert!(a.is_ok());
        assert!(b.is_err());
        let names: Vec<String> = store
            .read(|c| {
                let mut st = c.prepare("SELECT id FROM principals ORDER BY id")?;
                let rows = st
                    .query_map([], |r| r.get(0))?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok::<_, StoreError>(rows)
            })
            .await
            .unwrap();
        assert_eq!(names, vec!["p1".to_string()]);
    }

    #[tokio::test]
    async fn pragmas_make_commits_durable() {
        let (_dir, store) = tmp_db();
        let (mode, sync): (String, i64) = store
            .write(|c| {
                let m: String = c.pragma_query_value(None, "journal_mode", |r| r.get(0))?;
                let s: i64 = c.pragma_query_value(None, "synchronous", |r| r.get(0))?;
                Ok::<_, StoreError>((m, s))
            })
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        assert_eq!(sync, 2, "synchronous must be FULL (2)");
    }
}
