//! The state: every SQL statement of the daemon lives under this module.
//!
//! The domain (`channels`, `bots`) never sees a database connection. It runs
//! each decision as a closure over a transaction of typed operations
//! ([`Tx`] for a write, [`ReadTx`] for a read) and gets the closure's result
//! back once that result is durable. The SQLite backend implements those
//! traits in one file per concern: [`seats`] (channels, slots and seats),
//! [`messages`] (the transcript), [`bots`] (attached bots, their cursors and
//! state) and [`principals`] (principals and bearer tokens). The OAuth server
//! keeps its own SQL in `oauth/grants.rs` and reaches its tables through
//! [`Store::sql_write`]/[`Store::sql_read`].
//!
//! Durability is the point: WAL with `synchronous=FULL`, so a transaction that
//! returned from COMMIT survives `kill -9` and power loss. To keep throughput
//! with one fsync per commit, one writer thread drains every write queued
//! while the previous commit was in flight and runs them in one transaction,
//! each in its own SAVEPOINT so that one failing write (a refused post, say)
//! rolls back alone. Callers get their result only after the COMMIT that
//! contains it has returned: an acknowledged write is on disk.
//!
//! A write records what it changed (see [`Commit`]). After COMMIT the writer
//! publishes one [`Commit`] per changed channel on the [`CommitBus`], for the
//! writes that kept their savepoint only: long-poll wake-ups, resource
//! notifications and the bot dispatcher all follow the bus, so no caller has
//! to remember to notify anyone.
//!
//! Reads run on a small pool of read-only connections through
//! `spawn_blocking`, each domain read in one read transaction (one snapshot);
//! WAL lets them proceed while the writer commits. At most
//! [`MAX_READERS`] reads run at once and the others wait their turn, so a
//! burst (a thousand long-polls woken by one post) reuses the pooled
//! connections instead of opening one per read (each open parses the schema)
//! and parking hundreds of blocking threads.
//!
//! The same code runs on PostgreSQL, for several daemons sharing one
//! database (docs/scale-out.md): every statement goes through [`db`], which
//! calls SQLite directly or translates for PostgreSQL, and the executor above
//! is shared. What only PostgreSQL needs (the lock every write batch takes so
//! that the daemons' writers take turns, commits carried to the other daemons
//! by NOTIFY/LISTEN, which daemon runs a channel's hooks) is in [`pg`].
//! [`migrate_store`] copies a SQLite database into PostgreSQL.

mod backup;
mod bots;
mod bus;
pub(crate) mod db;
pub(crate) mod links;
mod messages;
mod migrate;
mod pg;
pub(crate) mod principals;
mod seats;
mod tokens;
mod tx;
mod usage;

pub use backup::backup;
pub(crate) use bus::{Commit, CommitBus, Phase};
pub use migrate::migrate_store;
pub(crate) use tokens::TokenCache;
pub(crate) use tx::*;
pub(crate) use usage::DAY_MS;

use crate::metrics::Metrics;
use db::Connection;
use rusqlite::OpenFlags;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use thiserror::Error;
use tokio::sync::oneshot;

/// Migrations embedded in the binary, applied in order; `PRAGMA user_version`
/// records how many ran.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_core.sql"),
    include_str!("../../migrations/0002_oauth.sql"),
    include_str!("../../migrations/0003_oauth_approvals.sql"),
    include_str!("../../migrations/0004_causes.sql"),
    include_str!("../../migrations/0005_usage.sql"),
    include_str!("../../migrations/0006_bot_seeds.sql"),
    include_str!("../../migrations/0007_page_links.sql"),
    include_str!("../../migrations/0008_sealed_seats.sql"),
    include_str!("../../migrations/0009_grant_bound_credentials.sql"),
];

/// The schema version this binary writes: how many migrations it knows.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Most writes one transaction takes.
const MAX_BATCH: usize = 512;

/// Read connections kept open, and reads that run at once.
const MAX_READERS: usize = 16;

/// A storage failure. Never shown to clients in detail.
#[derive(Debug, Error)]
pub enum StoreError {
    /// A statement failed (on PostgreSQL too: its errors are translated to
    /// SQLite's of the same meaning, see `db`).
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The PostgreSQL server cannot be reached or refused the connection.
    #[error("{0}")]
    Postgres(String),
    #[error("cannot create state directory {path}: {source}")]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The store was closed (shutdown) or its writer thread died.
    #[error("the database writer has stopped")]
    WriterGone,
    #[error("database task failed: {0}")]
    Join(String),
    /// A stored value does not have the shape the daemon wrote.
    #[error("corrupt {what}: {detail}")]
    Corrupt { what: &'static str, detail: String },
    /// The database was migrated by a newer binary; opening it could
    /// misread or damage what that version wrote.
    #[error(
        "the database {path} has schema version {found}, newer than this mcp-multiplayer knows ({known}): it was written by a newer release. Run that release (or newer), or restore a backup taken before the upgrade"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    /// The database (or its directory, or its filesystem) does not take writes.
    #[error(
        "the database {path} cannot be written ({detail}). The daemon needs to write the file, its -wal and -shm files and their directory: check the owner and mode (run as the service's user), free disk space, and that the filesystem is not mounted read-only"
    )]
    ReadOnly { path: PathBuf, detail: String },
}

impl StoreError {
    /// Whether this failure means the disk is full.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::DiskFull)
    }

    /// Whether this failure is the disk's: an I/O error under the database
    /// (a failing disk, or a filesystem the kernel turned read-only).
    pub fn is_io_failure(&self) -> bool {
        matches!(self, StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::SystemIoFailure)
    }

    /// Whether this failure means the database takes no writes.
    pub fn is_read_only(&self) -> bool {
        match self {
            StoreError::ReadOnly { .. } => true,
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
                e.code == rusqlite::ErrorCode::ReadOnly
            }
            _ => false,
        }
    }
}

/// One write: given the writer's transaction (or the error that kept it
/// from starting), runs and says how it went.
type WriteJob = Box<dyn FnOnce(Result<&mut SqliteTx<'_>, &rusqlite::Error>) -> Completion + Send>;

/// Hands a write's result to its caller, given the batch's commit error.
type Deliver = Box<dyn FnOnce(Option<&rusqlite::Error>) + Send>;

/// What the writer does after the batch's COMMIT: `ok` tells whether the job's
/// own savepoint was kept, `commits` what it changed; `deliver` hands the
/// result (or the commit error) to the caller.
struct Completion {
    ok: bool,
    commits: Vec<Commit>,
    deliver: Deliver,
}

/// Handle to the database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Option<mpsc::Sender<WriteJob>>>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    readers: Mutex<Vec<Connection>>,
    /// One permit per read that may run now (see the module doc).
    read_permits: Arc<tokio::sync::Semaphore>,
    bus: Arc<CommitBus>,
    metrics: Arc<Metrics>,
    /// The PostgreSQL backend's shared parts; `None` on SQLite.
    pg: Option<Arc<pg::PgShared>>,
    listener: Mutex<Option<std::thread::JoinHandle<()>>>,
    tokens: Arc<TokenCache>,
}

impl Store {
    /// Opens (creating if needed) the database at `path`, migrates it, and
    /// makes sure it takes writes.
    ///
    /// # Errors
    /// The directory or file cannot be created, a migration fails, the
    /// database is from a newer release ([`StoreError::TooNew`]), or it
    /// cannot be written ([`StoreError::ReadOnly`]).
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::StateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let read_only = |e: &dyn std::fmt::Display| StoreError::ReadOnly {
            path: path.to_path_buf(),
            detail: e.to_string(),
        };
        let mut conn =
            rusqlite::Connection::open(path).map_err(|e| match e.sqlite_error_code() {
                Some(rusqlite::ErrorCode::ReadOnly | rusqlite::ErrorCode::CannotOpen) => {
                    read_only(&e)
                }
                _ => StoreError::Sqlite(e),
            })?;
        // SQLite opens a file it may not write read-only, silently.
        if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false) {
            return Err(read_only(&"the file is read-only for this user"));
        }
        check_version(&conn, path)?;
        let fail = |e: StoreError| if e.is_read_only() { read_only(&e) } else { e };
        configure(&conn).map_err(|e| fail(e.into()))?;
        migrate(&mut conn).map_err(fail)?;
        // A database that opened but takes no writes (a read-only mount)
        // fails here, at start, rather than on the first post.
        let conn = Connection::sqlite(conn);
        usage::probe(&conn, crate::secrets::now_ms()).map_err(|e| {
            if e.is_read_only() || matches!(&e, StoreError::Sqlite(s) if s.sqlite_error_code() == Some(rusqlite::ErrorCode::CannotOpen)) {
                read_only(&e)
            } else {
                e
            }
        })?;
        let tokens = Arc::new(TokenCache::new(path));
        if let Some(c) = conn.as_sqlite() {
            tokens::watch_revocations(c, tokens.touched.clone())?;
        }
        Self::start(path, conn, None, tokens)
    }

    /// Opens the database the configuration names: the SQLite file in the
    /// state directory, or PostgreSQL (docs/scale-out.md).
    ///
    /// # Errors
    /// As [`Store::open`] or [`Store::open_postgres`]; a password file that
    /// cannot be read.
    pub fn open_config(cfg: &crate::config::Config) -> Result<Store, StoreError> {
        match &cfg.database {
            crate::config::DatabaseConfig::Sqlite => Store::open(&cfg.db_path()),
            crate::config::DatabaseConfig::Postgres(src) => {
                let pg = src
                    .load()
                    .map_err(|e| StoreError::Postgres(e.to_string()))?;
                Store::open_postgres(&pg, &cfg.state_dir)
            }
        }
    }

    /// Connects to PostgreSQL, migrates the database (one daemon at a time),
    /// starts the writer and the listener for other daemons' commits.
    /// `state_dir` is still the daemon's own (the sandboxes' workspaces,
    /// the disk `/healthz` watches).
    ///
    /// # Errors
    /// The server cannot be reached, a migration fails, the database is from
    /// a newer release, or it takes no writes.
    pub fn open_postgres(config: &postgres::Config, state_dir: &Path) -> Result<Store, StoreError> {
        let (conn, shared) = db::off_runtime(|| {
            let (conn, shared) = pg::PgShared::open(config)?;
            usage::probe(&conn, crate::secrets::now_ms())?;
            Ok::<_, StoreError>((conn, shared))
        })?;
        let path = state_dir.join("postgres");
        // Token rows changed by any daemon (or CLI command) reach this
        // one's memory through the commit notifications (see `pg`).
        let tokens = Arc::new(TokenCache::without_signal_file());
        db::off_runtime(|| Self::start(&path, conn, Some(shared), tokens))
    }

    fn start(
        path: &Path,
        conn: Connection,
        pg: Option<Arc<pg::PgShared>>,
        tokens: Arc<TokenCache>,
    ) -> Result<Store, StoreError> {
        let bus = Arc::new(CommitBus::default());
        let metrics = Arc::new(Metrics::default());
        let (tx, rx) = mpsc::channel::<WriteJob>();
        let writer_bus = bus.clone();
        let writer_metrics = metrics.clone();
        let writer_pg = pg.clone();
        let writer_tokens = tokens.clone();
        let listener = match &pg {
            Some(shared) => {
                let remote = bus.clone();
                Some(shared.listen(move |c| remote.publish(c), tokens.clone())?)
            }
            None => None,
        };
        let handle = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                writer_loop(
                    conn,
                    rx,
                    &writer_bus,
                    &writer_metrics,
                    writer_pg.as_deref(),
                    &writer_tokens,
                )
            })
            .map_err(|e| StoreError::Join(e.to_string()))?;
        Ok(Store {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                writer: Mutex::new(Some(tx)),
                writer_thread: Mutex::new(Some(handle)),
                readers: Mutex::new(Vec::new()),
                read_permits: Arc::new(tokio::sync::Semaphore::new(MAX_READERS)),
                bus,
                metrics,
                pg,
                listener: Mutex::new(listener),
                tokens,
            }),
        })
    }

    /// Whether this daemon holds `channel_id`'s lock (PostgreSQL; no query).
    pub(crate) fn holds_channel(&self, channel_id: &str) -> bool {
        self.inner.pg.as_ref().is_none_or(|pg| pg.holds(channel_id))
    }

    /// Whether [`Store::close`] was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.inner
            .writer
            .lock()
            .map(|w| w.is_none())
            .unwrap_or(true)
    }

    /// Whether the state is in PostgreSQL (shared with other daemons).
    pub fn is_shared(&self) -> bool {
        self.inner.pg.is_some()
    }

    /// Whether this daemon runs `channel_id`'s hooks now. Always on SQLite;
    /// on PostgreSQL while it holds the channel's lock, which it takes if
    /// free (see `pg`).
    ///
    /// # Errors
    /// The lock cannot be asked for (the server is unreachable).
    pub(crate) async fn owns_channel(&self, channel_id: &str) -> Result<bool, StoreError> {
        let Some(pg) = self.inner.pg.clone() else {
            return Ok(true);
        };
        let cid = channel_id.to_string();
        tokio::task::spawn_blocking(move || pg.try_own(&cid))
            .await
            .unwrap_or_else(|e| Err(StoreError::Join(e.to_string())))
    }

    /// Bearer tokens recently found valid (see [`tokens`]).
    pub(crate) fn tokens(&self) -> &TokenCache {
        &self.inner.tokens
    }

    /// The daemon's metrics registry. It lives with the store because
    /// everything that records (the writer, the dispatcher, the HTTP layer)
    /// already holds the store.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// Writes one row through the writer, as any write would: proves that
    /// the database, its WAL and its disk still take a commit (`/healthz`).
    ///
    /// # Errors
    /// The write's or the commit's failure (disk full, read-only database).
    pub async fn probe_write(&self) -> Result<(), StoreError> {
        self.sql_write(|c| usage::probe(c, crate::secrets::now_ms()))
            .await
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The bus on which every committed write is published.
    pub(crate) fn bus(&self) -> &CommitBus {
        &self.inner.bus
    }

    /// Runs `f` in the writer's next transaction and returns once that
    /// transaction has committed. An `Err` from `f` rolls back only `f`'s own
    /// changes (and publishes nothing).
    pub(crate) async fn write<R, E, F>(&self, f: F) -> Result<R, E>
    where
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&mut dyn Tx) -> Result<R, E> + Send + 'static,
    {
        self.submit(move |tx: &mut SqliteTx<'_>| f(tx)).await
    }

    /// Runs SQL of a module that owns its own tables (the OAuth grants) in
    /// the writer's next transaction, like [`Store::write`].
    pub(crate) async fn sql_write<R, E, F>(&self, f: F) -> Result<R, E>
    where
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Connection) -> Result<R, E> + Send + 'static,
    {
        self.submit(move |tx: &mut SqliteTx<'_>| f(tx.conn)).await
    }

    async fn submit<R, E, F>(&self, f: F) -> Result<R, E>
    where
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&mut SqliteTx<'_>) -> Result<R, E> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<Result<R, E>>();
        let job: WriteJob = Box::new(move |started| {
            let result = match started {
                Ok(sql) => {
                    let out = f(sql);
                    let commits = std::mem::take(&mut sql.commits);
                    (out, commits)
                }
                Err(e) => (Err(E::from(StoreError::Sqlite(clone_err(e)))), Vec::new()),
            };
            let (result, commits) = result;
            Completion {
                ok: result.is_ok(),
                commits,
                deliver: Box::new(move |commit_err| {
                    let out = match commit_err {
                        Some(e) => Err(E::from(StoreError::Sqlite(clone_err(e)))),
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
                .map_err(|_| E::from(StoreError::WriterGone))?;
            let sender = guard
                .as_ref()
                .ok_or_else(|| E::from(StoreError::WriterGone))?;
            sender
                .send(job)
                .map_err(|_| E::from(StoreError::WriterGone))?;
        }
        rx.await
            .unwrap_or_else(|_| Err(E::from(StoreError::WriterGone)))
    }

    /// Runs `f` on a read connection off the async threads, inside one read
    /// transaction: every statement of `f` sees the same snapshot. (Without
    /// it each statement would see the database as of its own start, and a
    /// check followed by a read, say a seat and then the messages, could
    /// straddle a commit.)
    pub(crate) async fn read<R, E, F>(&self, f: F) -> Result<R, E>
    where
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&dyn ReadTx) -> Result<R, E> + Send + 'static,
    {
        self.read_conn(move |c| {
            // SQLite: deferred, the snapshot starts at the first read.
            // PostgreSQL: repeatable read, one snapshot for the whole closure.
            let begun = if c.as_postgres().is_some() {
                pg::PgShared::begin_read(c)
            } else {
                c.execute_batch("BEGIN")
            };
            begun.map_err(|e| E::from(StoreError::Sqlite(e)))?;
            let out = f(&SqliteRead(c));
            if c.execute_batch("COMMIT").is_err() {
                let _ = c.execute_batch("ROLLBACK");
            }
            out
        })
        .await
    }

    /// Runs SQL of a module that owns its own tables on a read connection.
    pub(crate) async fn sql_read<R, E, F>(&self, f: F) -> Result<R, E>
    where
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Connection) -> Result<R, E> + Send + 'static,
    {
        self.read_conn(f).await
    }

    async fn read_conn<R, E, F>(&self, f: F) -> Result<R, E>
    where
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Connection) -> Result<R, E> + Send + 'static,
    {
        let inner = self.inner.clone();
        let permit = inner
            .read_permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| E::from(StoreError::Join(e.to_string())))?;
        tokio::task::spawn_blocking(move || {
            // Held until the read is done, even if the caller went away.
            let _permit = permit;
            let conn = match inner.take_reader() {
                Ok(c) => c,
                Err(e) => return Err(E::from(e)),
            };
            let out = f(&conn);
            if !conn.is_closed() {
                inner.put_reader(conn);
            }
            out
        })
        .await
        .unwrap_or_else(|e| Err(E::from(StoreError::Join(e.to_string()))))
    }

    /// Stops the writer after it has committed everything queued. Later
    /// writes fail with [`StoreError::WriterGone`].
    pub fn close(&self) {
        if let Ok(mut w) = self.inner.writer.lock() {
            w.take();
        }
        if let Ok(mut t) = self.inner.writer_thread.lock()
            && let Some(handle) = t.take()
        {
            let _ = handle.join();
        }
        if let Some(pg) = &self.inner.pg {
            pg.close();
        }
        if let Ok(mut l) = self.inner.listener.lock()
            && let Some(handle) = l.take()
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
        if let Some(pg) = &self.pg {
            return pg.connect();
        }
        let conn = rusqlite::Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        keep_statements_prepared(&conn)?;
        Ok(Connection::sqlite(conn))
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
fn keep_statements_prepared(conn: &rusqlite::Connection) -> Result<(), rusqlite::Error> {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(())
}

fn configure(conn: &rusqlite::Connection) -> Result<(), rusqlite::Error> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    keep_statements_prepared(conn)?;
    // WAL: readers never block the writer. FULL: the WAL is fsynced at every
    // commit, so an acknowledged write survives power loss, not only a crash.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

/// Refuses a database migrated by a newer binary, before anything writes.
fn check_version(conn: &rusqlite::Connection, path: &Path) -> Result<(), StoreError> {
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found,
            known: SCHEMA_VERSION,
        });
    }
    Ok(())
}

fn migrate(conn: &mut rusqlite::Connection) -> Result<(), StoreError> {
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

fn writer_loop(
    mut conn: Connection,
    rx: mpsc::Receiver<WriteJob>,
    bus: &CommitBus,
    metrics: &Metrics,
    pg: Option<&pg::PgShared>,
    tokens: &TokenCache,
) {
    let mut batch: Vec<WriteJob> = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = rx.recv() {
        // A PostgreSQL server that restarted closed our session: open
        // another (if that fails, this batch fails at BEGIN and the next
        // one tries again).
        if let Some(pg) = pg
            && conn.is_closed()
        {
            match pg.connect_writer() {
                Ok(c) => conn = c,
                Err(e) => tracing::error!(error = %e, "cannot reconnect the writer"),
            }
        }
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let size = batch.len();
        let started = std::time::Instant::now();
        let committed = run_batch(&conn, &mut batch, bus, pg, tokens);
        if committed {
            metrics.commit_batch.observe(size as f64);
            metrics.commit_latency.observe_duration(started.elapsed());
        } else {
            metrics
                .commit_failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Runs one batch; `false` if its transaction could not begin or commit.
fn run_batch(
    conn: &Connection,
    batch: &mut Vec<WriteJob>,
    bus: &CommitBus,
    pg: Option<&pg::PgShared>,
    tokens: &TokenCache,
) -> bool {
    let begun = match pg {
        Some(pg) => pg.begin_write(conn),
        None => conn.execute_batch("BEGIN IMMEDIATE"),
    };
    if let Err(e) = begun {
        if pg.is_some() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        tracing::error!(error = %e, "cannot begin write transaction");
        for job in batch.drain(..) {
            // Run nothing: every caller gets the error.
            (job(Err(&e)).deliver)(None);
        }
        return false;
    }
    let mut done: Vec<Completion> = Vec::with_capacity(batch.len());
    let mut sql = SqliteTx {
        conn,
        commits: Vec::new(),
    };
    for job in batch.drain(..) {
        if let Err(e) = conn.execute_batch("SAVEPOINT job") {
            (job(Err(&e)).deliver)(None);
            continue;
        }
        let mut completion = job(Ok(&mut sql));
        let end = if completion.ok {
            "RELEASE job"
        } else {
            completion.commits.clear();
            "ROLLBACK TO job; RELEASE job"
        };
        if let Err(e) = conn.execute_batch(end) {
            tracing::error!(error = %e, "savepoint end failed");
        }
        done.push(completion);
    }
    // Other daemons hear of the batch through NOTIFY, which PostgreSQL
    // delivers only if the COMMIT below succeeds.
    let notified = match pg {
        Some(pg) => {
            let commits: Vec<&Commit> = done.iter().flat_map(|c| c.commits.iter()).collect();
            pg.notify(conn, &commits, &tokens.touched)
        }
        None => Ok(()),
    };
    let committed = notified.and_then(|()| conn.execute_batch("COMMIT"));
    match committed {
        Ok(()) => {
            // A revoked token stops before anyone hears of the revocation.
            tokens.committed();
            // Published before the callers hear back: once a write returned,
            // everyone following the bus has been told of it. Long-poll
            // wake-ups are the exception (`Phase::AfterAnswers`): the callers
            // are answered before a thousand woken waiters queue up.
            for c in &done {
                for commit in &c.commits {
                    bus.publish_at(Phase::BeforeAnswers, commit);
                }
            }
            let commits: Vec<Commit> = done
                .iter()
                .flat_map(|c| c.commits.iter().cloned())
                .collect();
            for c in done {
                (c.deliver)(None);
            }
            for commit in &commits {
                bus.publish_at(Phase::AfterAnswers, commit);
            }
            true
        }
        Err(e) => {
            tracing::error!(error = %e, "commit failed; every write of the batch is refused");
            let _ = conn.execute_batch("ROLLBACK");
            tokens.rolled_back();
            for c in done {
                (c.deliver)(Some(&e));
            }
            false
        }
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
pub(crate) mod tests;
