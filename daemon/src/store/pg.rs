//! What only the PostgreSQL backend does: connecting, its migrations, the
//! lock that keeps several daemons' writes in order, carrying commits to the
//! other daemons, and which daemon runs a channel's hooks.
//!
//! The SQL of the domain is the same as on SQLite ([`super::db`]). The
//! executor is the same too (one writer thread per daemon draining its queue
//! into one transaction, one SAVEPOINT per write), with three additions:
//!
//! - **Writes in order across daemons.** Every write transaction first takes
//!   one transaction-scoped advisory lock of this database. So the writers of
//!   all daemons take turns exactly as the one SQLite writer does: each
//!   batch sees everything committed before it, reads and writes a channel's
//!   head (`last_seq`, `head_hash`) with no other writer between, and the
//!   checks made inside a write (an invite still unused, a quota not yet
//!   reached) hold until its COMMIT. Batching keeps throughput: a daemon
//!   holding the lock commits everything its callers queued meanwhile, with
//!   one WAL flush. `synchronous_commit` is set `on` for the writer's
//!   session, whatever the server's default, so COMMIT returns only once the
//!   batch is on disk (and on a synchronous standby, if the server has one).
//! - **Commits reach every daemon.** Before COMMIT the writer queues one
//!   `NOTIFY` carrying the batch's commits (channel, head, what changed);
//!   PostgreSQL delivers it only if the transaction commits. Each daemon
//!   `LISTEN`s on a thread of its own and publishes what other daemons
//!   committed on its local commit bus, so long-polls, resource
//!   notifications and the dispatcher follow remote commits as they follow
//!   local ones (each waiter re-reads from the database).
//! - **One daemon runs a channel's hooks.** A daemon runs a channel's drain
//!   task only while it holds that channel's session-scoped advisory lock,
//!   taken on a connection kept for that purpose. A daemon that dies loses
//!   its connection and with it its locks; another daemon takes them at the
//!   next commit of the channel or at its next ownership sweep. The durable
//!   cursor (a hook's effects and the cursor move commit together, and a
//!   commit checks the cursor it started from) keeps a hook from committing
//!   twice even while ownership moves.
//!
//! Keys of the advisory locks and the name of the notification channel are
//! derived from the database and schema names, so several deployments (or
//! test runs, each in a schema of its own) can share one server.

use super::StoreError;
use super::bus::{Changes, Commit};
use super::db::{Connection, PgConn, pg_error};
use super::tokens::TokenCache;
use fallible_iterator::FallibleIterator;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The schema of each version, applied in order; `mcpmp_schema` records the
/// version reached. Versions match SQLite's (`super::SCHEMA_VERSION`), so a
/// database copied by `migrate-store` is at the same version on both sides;
/// the first PostgreSQL file creates the schema of SQLite's migrations 1 to 5
/// at once.
pub(super) const MIGRATIONS: &[(i64, &str)] = &[
    (5, include_str!("../../migrations/pg/0005_schema.sql")),
    (6, include_str!("../../migrations/pg/0006_bot_seeds.sql")),
    (7, include_str!("../../migrations/pg/0007_page_links.sql")),
    (8, include_str!("../../migrations/pg/0008_sealed_seats.sql")),
    (
        9,
        include_str!("../../migrations/pg/0009_grant_bound_credentials.sql"),
    ),
];

/// Longest NOTIFY payload sent (PostgreSQL's limit is 8000 bytes).
const MAX_PAYLOAD: usize = 7000;

/// How long the listener waits for a notification before it checks whether
/// the store is closing.
const LISTEN_TICK: Duration = Duration::from_millis(250);

/// What a PostgreSQL store shares between its threads.
pub(crate) struct PgShared {
    config: postgres::Config,
    /// This database and schema, for the advisory locks and NOTIFY.
    ns: [u8; 32],
    /// The NOTIFY channel of this database and schema.
    channel: String,
    /// This store, so the listener can skip its own commits.
    instance: String,
    /// The connection holding this daemon's channel locks.
    owner: Mutex<Option<PgConn>>,
    /// Channels whose lock this daemon holds.
    owned: Mutex<HashSet<String>>,
    stop: AtomicBool,
}

/// A connection, with a clear error when there is none.
pub(super) fn connect(config: &postgres::Config) -> Result<PgConn, StoreError> {
    let client = config
        .connect(postgres::NoTls)
        .map_err(|e| StoreError::Postgres(describe_connect_error(config, &e)))?;
    Ok(PgConn::new(client))
}

fn describe_connect_error(config: &postgres::Config, e: &postgres::Error) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            postgres::config::Host::Tcp(h) => h.clone(),
            postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .collect();
    format!(
        "cannot connect to PostgreSQL (host {}, database {}, user {}): {e}. Check that the server runs and takes connections, and the URL and password (database, database_password_file or database_url_file in the config)",
        hosts.join(","),
        config.get_dbname().unwrap_or("(the user's)"),
        config.get_user().unwrap_or("(the OS user)"),
    )
}

impl PgShared {
    /// Connects the writer, migrates the database, and returns the writer's
    /// connection with what the store's threads share.
    pub(super) fn open(
        config: &postgres::Config,
    ) -> Result<(Connection, Arc<PgShared>), StoreError> {
        let writer = connect(config)?;
        let name: String = {
            let mut c = writer.client();
            // Acknowledged means on disk, whatever the server's default;
            // and no NOTICE chatter ("already exists, skipping") in the log.
            c.batch_execute("SET synchronous_commit TO on; SET client_min_messages TO warning")
                .map_err(|e| StoreError::Sqlite(pg_error(e)))?;
            c.query_one("SELECT current_database() || '/' || current_schema()", &[])
                .and_then(|r| r.try_get(0))
                .map_err(|e| StoreError::Sqlite(pg_error(e)))?
        };
        let ns: [u8; 32] = Sha256::digest(name.as_bytes()).into();
        let shared = Arc::new(PgShared {
            config: config.clone(),
            channel: format!("mcpmp_{}", hex::encode(&ns[..8])),
            ns,
            instance: crate::secrets::new_id("d_"),
            owner: Mutex::new(None),
            owned: Mutex::new(HashSet::new()),
            stop: AtomicBool::new(false),
        });
        let writer = Connection::postgres(writer);
        shared.migrate(&writer)?;
        Ok((writer, shared))
    }

    /// The NOTIFY channel this store listens on.
    #[cfg(test)]
    pub(super) fn notify_channel(&self) -> &str {
        &self.channel
    }

    /// A new connection to the same database (a reader, a reconnect).
    pub(super) fn connect(&self) -> Result<Connection, StoreError> {
        Ok(Connection::postgres(connect(&self.config)?))
    }

    /// A writer connection, configured as the writer's must be.
    pub(super) fn connect_writer(&self) -> Result<Connection, StoreError> {
        let c = connect(&self.config)?;
        c.client()
            .batch_execute("SET synchronous_commit TO on")
            .map_err(|e| StoreError::Sqlite(pg_error(e)))?;
        Ok(Connection::postgres(c))
    }

    /// A 64-bit advisory lock key of this namespace.
    fn key(&self, what: &str) -> i64 {
        let mut h = Sha256::new();
        h.update(self.ns);
        h.update(what.as_bytes());
        let d = h.finalize();
        let mut b = [0u8; 8];
        b.copy_from_slice(&d[..8]);
        i64::from_be_bytes(b)
    }

    /// Opens a write transaction: BEGIN, then the lock all writers take turns
    /// on.
    pub(super) fn begin_write(&self, c: &Connection) -> rusqlite::Result<()> {
        c.execute_batch(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock({})",
            self.key("writer")
        ))
    }

    /// Opens a read transaction: one snapshot for every statement.
    pub(super) fn begin_read(c: &Connection) -> rusqlite::Result<()> {
        c.execute_batch("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    }

    /// Queues the batch's commits as notifications, sent by PostgreSQL if
    /// and when the transaction commits. Fails if the transaction is
    /// aborted, so that the batch is then refused rather than acknowledged.
    /// Whether the batch changed a token row (the schema's trigger marks the
    /// transaction) is read here too: then `tokens_touched` is set, and the
    /// notification tells the other daemons to forget remembered tokens.
    pub(super) fn notify(
        &self,
        c: &Connection,
        commits: &[&Commit],
        tokens_touched: &AtomicBool,
    ) -> rusqlite::Result<()> {
        // Always one statement: it fails if the transaction was aborted (a
        // write that swallowed an error), where COMMIT would quietly roll
        // back and report success.
        let mark: Option<String> = c
            .prepare_cached("SELECT current_setting('mcpmp.tokens_changed', true)")?
            .query_row(rusqlite::params![], |r| r.get(0))?;
        let tokens = mark.as_deref() == Some("1");
        if tokens {
            tokens_touched.store(true, Ordering::Release);
        }
        if commits.is_empty() && !tokens {
            return Ok(());
        }
        let mut chunk: Vec<serde_json::Value> = Vec::new();
        let mut size = 0;
        let mut payloads = Vec::new();
        for commit in commits {
            let item = serde_json::json!([commit.channel_id, commit.head, flags(&commit.changes)]);
            let len = item.to_string().len() + 1;
            if size + len > MAX_PAYLOAD - 64 && !chunk.is_empty() {
                payloads.push(std::mem::take(&mut chunk));
                size = 0;
            }
            size += len;
            chunk.push(item);
        }
        payloads.push(chunk);
        for (i, p) in payloads.into_iter().enumerate() {
            let payload =
                serde_json::json!({"from": self.instance, "commits": p, "tokens": tokens && i == 0})
                    .to_string();
            c.prepare_cached("SELECT pg_notify(?1, ?2)")?
                .execute(rusqlite::params![self.channel, payload])?;
        }
        Ok(())
    }

    /// Starts the thread that feeds other daemons' commits into `publish`.
    /// A notification that says token rows changed makes `tokens` forget
    /// what it remembers; so does losing the connection, and `tokens`
    /// remembers nothing until the listener listens again.
    pub(super) fn listen(
        self: &Arc<Self>,
        publish: impl Fn(&Commit) + Send + 'static,
        tokens: Arc<TokenCache>,
    ) -> Result<std::thread::JoinHandle<()>, StoreError> {
        // The first LISTEN is made here, so that a commit made once the store
        // is open is heard.
        let first = self.listener()?;
        let me = self.clone();
        std::thread::Builder::new()
            .name("pg-listener".into())
            .spawn(move || me.listen_loop(first, &publish, &tokens))
            .map_err(|e| StoreError::Join(e.to_string()))
    }

    fn listener(&self) -> Result<PgConn, StoreError> {
        let c = connect(&self.config)?;
        c.client()
            .batch_execute(&format!("LISTEN \"{}\"", self.channel))
            .map_err(|e| StoreError::Sqlite(pg_error(e)))?;
        Ok(c)
    }

    fn listen_loop(&self, first: PgConn, publish: &dyn Fn(&Commit), tokens: &TokenCache) {
        let mut conn = Some(first);
        while !self.stop.load(Ordering::Relaxed) {
            let Some(c) = conn.as_ref() else {
                match self.listener() {
                    Ok(c) => {
                        tracing::info!("listening for other daemons' commits again");
                        conn = Some(c);
                        tokens.set_deaf(false);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot listen for other daemons' commits; retrying");
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
                continue;
            };
            let mut client = c.client();
            let mut broken = false;
            {
                let mut n = client.notifications();
                let mut it = n.timeout_iter(LISTEN_TICK);
                loop {
                    match it.next() {
                        Ok(Some(note)) => self.received(note.payload(), publish, tokens),
                        Ok(None) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, "lost the notification connection");
                            broken = true;
                            break;
                        }
                    }
                }
            }
            broken |= client.is_closed();
            drop(client);
            if broken {
                tokens.set_deaf(true);
                conn = None;
            }
        }
    }

    fn received(&self, payload: &str, publish: &dyn Fn(&Commit), tokens: &TokenCache) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(payload) else {
            tracing::warn!("ignored a malformed commit notification");
            return;
        };
        if v["from"].as_str() == Some(self.instance.as_str()) {
            return;
        }
        // Before the commits are published: a waiter they wake must not
        // find a revoked token still remembered.
        if v["tokens"].as_bool() == Some(true) {
            tokens.revoked_elsewhere();
        }
        for item in v["commits"].as_array().into_iter().flatten() {
            let (Some(cid), Some(head), Some(f)) =
                (item[0].as_str(), item[1].as_i64(), item[2].as_u64())
            else {
                continue;
            };
            publish(&Commit {
                channel_id: cid.to_string(),
                head,
                changes: from_flags(f),
            });
        }
    }

    /// Whether this daemon holds `cid`'s lock (as far as it knows).
    pub(super) fn holds(&self, cid: &str) -> bool {
        lock(&self.owned).contains(cid)
    }

    /// Whether this daemon runs `cid`'s hooks: it holds the channel's lock,
    /// or takes it now.
    pub(super) fn try_own(&self, cid: &str) -> Result<bool, StoreError> {
        if lock(&self.owned).contains(cid) {
            return Ok(true);
        }
        let mut owner = lock(&self.owner);
        if owner.as_ref().is_none_or(|c| c.client().is_closed()) {
            // A new session holds no lock: whatever this daemon owned is
            // free for the others now.
            lock(&self.owned).clear();
            *owner = Some(connect(&self.config)?);
        }
        let Some(c) = owner.as_ref() else {
            return Ok(false);
        };
        let got: bool = c
            .client()
            .query_one(
                "SELECT pg_try_advisory_lock($1)",
                &[&self.key(&format!("drain:{cid}"))],
            )
            .and_then(|r| r.try_get(0))
            .map_err(|e| StoreError::Sqlite(pg_error(e)))?;
        if got {
            lock(&self.owned).insert(cid.to_string());
        }
        Ok(got)
    }

    /// Applies the migrations this database lacks, one daemon at a time.
    fn migrate(&self, c: &Connection) -> Result<(), StoreError> {
        let pg = c.as_postgres().ok_or(StoreError::WriterGone)?;
        let mut client = pg.client();
        let err = |e: postgres::Error| StoreError::Sqlite(pg_error(e));
        client
            .execute("SELECT pg_advisory_lock($1)", &[&self.key("migrate")])
            .map_err(err)?;
        let result = (|| {
            client
                .batch_execute("CREATE TABLE IF NOT EXISTS mcpmp_schema (version BIGINT NOT NULL)")
                .map_err(err)?;
            let found: Option<i64> = client
                .query_opt("SELECT max(version) FROM mcpmp_schema", &[])
                .map_err(err)?
                .and_then(|r| r.get(0));
            let found = found.unwrap_or(0);
            if found > super::SCHEMA_VERSION {
                return Err(StoreError::TooNew {
                    path: "postgres".into(),
                    found,
                    known: super::SCHEMA_VERSION,
                });
            }
            for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > found) {
                let mut tx = client.transaction().map_err(err)?;
                tx.batch_execute(sql).map_err(err)?;
                tx.execute("DELETE FROM mcpmp_schema", &[]).map_err(err)?;
                tx.execute("INSERT INTO mcpmp_schema (version) VALUES ($1)", &[version])
                    .map_err(err)?;
                tx.commit().map_err(err)?;
                tracing::info!(migration = version, "applied PostgreSQL migration");
            }
            Ok(())
        })();
        client
            .execute("SELECT pg_advisory_unlock($1)", &[&self.key("migrate")])
            .map_err(err)?;
        result
    }

    /// Stops the listener (at its next tick) and releases the channel locks.
    pub(super) fn close(&self) {
        self.stop.store(true, Ordering::Relaxed);
        lock(&self.owner).take();
        lock(&self.owned).clear();
    }
}

fn flags(c: &Changes) -> u64 {
    u64::from(c.messages)
        | u64::from(c.seats) << 1
        | u64::from(c.bots) << 2
        | u64::from(c.closed) << 3
        | u64::from(c.renamed) << 4
        | u64::from(c.links) << 5
}

fn from_flags(f: u64) -> Changes {
    Changes {
        messages: f & 1 != 0,
        seats: f & 2 != 0,
        bots: f & 4 != 0,
        closed: f & 8 != 0,
        renamed: f & 16 != 0,
        links: f & 32 != 0,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_flags_round_trip() {
        for f in 0..64 {
            assert_eq!(flags(&from_flags(f)), f);
        }
    }

    #[test]
    fn the_postgres_schema_is_at_the_sqlite_version() {
        assert_eq!(
            MIGRATIONS.last().map(|m| m.0),
            Some(super::super::SCHEMA_VERSION),
            "every SQLite migration needs its PostgreSQL counterpart in migrations/pg/"
        );
    }
}
