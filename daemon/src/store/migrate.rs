//! `mcp-multiplayer migrate-store`: copies a SQLite database into an empty
//! PostgreSQL database, to move a deployment onto several daemons
//! (docs/scale-out.md).
//!
//! The SQLite file is first brought to this binary's schema version (as
//! `serve` would), then read in one read transaction, so the copy is one
//! snapshot. Every table is copied whole, in one PostgreSQL transaction:
//! either the target gets everything or nothing. The copy is then checked
//! row by row: a digest of every row of every table (its values, typed as
//! SQLite stores them) must be the same on both sides. Hashes, chains, seqs,
//! token hashes and OAuth state are copied as they are, so every token still
//! works, every chain still verifies, and every bot's cursor and state carry
//! over.
//!
//! The daemon must be stopped while it runs: a write made after the snapshot
//! would not be copied.

use super::db::Connection;
use super::{SCHEMA_VERSION, Store, StoreError, pg};
use rusqlite::OpenFlags;
use rusqlite::types::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::path::Path;

/// Every table the daemon keeps, parents before children (foreign keys).
const TABLES: &[&str] = &[
    "principals",
    "access_tokens",
    "channels",
    "slots",
    "messages",
    "bots",
    "oauth_clients",
    "oauth_grants",
    "oauth_codes",
    "oauth_refresh_tokens",
    "oauth_pending",
    "channel_usage",
    "principal_usage",
    "page_links",
];

/// Tables that hold nothing worth copying.
const SKIPPED: &[&str] = &["health_probe"];

/// What was copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateReport {
    /// Rows per table, in copy order.
    pub tables: Vec<(String, u64)>,
}

fn corrupt(detail: String) -> StoreError {
    StoreError::Corrupt {
        what: "migration",
        detail,
    }
}

/// Copies the SQLite database at `sqlite` into the empty PostgreSQL database
/// `to`, and checks the copy.
///
/// # Errors
/// The file is missing or unreadable, the target cannot be reached or
/// already holds data, the source has a table this release does not know,
/// or the copy differs from the source.
pub fn migrate_store(sqlite: &Path, to: &postgres::Config) -> Result<MigrateReport, StoreError> {
    if !sqlite.exists() {
        return Err(corrupt(format!(
            "{} does not exist: give the state directory (or config) of the SQLite deployment to copy",
            sqlite.display()
        )));
    }
    super::db::off_runtime(|| copy(sqlite, to))
}

fn copy(sqlite: &Path, to: &postgres::Config) -> Result<MigrateReport, StoreError> {
    // The schema of this release, on the SQLite side too.
    Store::open(sqlite)?.close();
    let src = rusqlite::Connection::open_with_flags(sqlite, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    src.execute_batch("BEGIN")?;
    let version: i64 = src.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version != SCHEMA_VERSION {
        return Err(corrupt(format!(
            "the SQLite database is at schema version {version}, this release writes {SCHEMA_VERSION}"
        )));
    }
    let known: BTreeSet<&str> = TABLES.iter().chain(SKIPPED).copied().collect();
    let mut st = src.prepare(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
    )?;
    let present: Vec<String> = st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
    drop(st);
    if let Some(t) = present.iter().find(|t| !known.contains(t.as_str())) {
        return Err(corrupt(format!(
            "the SQLite database has a table {t} that this release does not know how to copy; use the release that wrote it"
        )));
    }

    let (dst, _shared) = pg::PgShared::open(to)?;
    let existing: i64 = dst.query_row(
        "SELECT (SELECT count(*) FROM principals) + (SELECT count(*) FROM channels) + (SELECT count(*) FROM oauth_clients)",
        rusqlite::params![],
        |r| r.get(0),
    )?;
    if existing > 0 {
        return Err(corrupt(
            "the PostgreSQL database already holds principals, channels or clients: migrate-store copies into an empty database only (create a new one, or drop its tables)".into(),
        ));
    }

    dst.execute_batch("BEGIN")?;
    let mut tables = Vec::new();
    let copied = (|| {
        for table in TABLES {
            let n = copy_table(&src, &dst, table)?;
            tables.push(((*table).to_string(), n));
        }
        Ok::<_, StoreError>(())
    })();
    if let Err(e) = copied {
        let _ = dst.execute_batch("ROLLBACK");
        return Err(e);
    }
    dst.execute_batch("COMMIT")?;

    // The check: the same rows on both sides (a read transaction on the
    // target, for its cursors).
    dst.execute_batch("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")?;
    for table in TABLES {
        let a = digest_sqlite(&src, table)?;
        let b = digest_postgres(&src, &dst, table)?;
        if a != b {
            let _ = dst.execute_batch("ROLLBACK");
            return Err(corrupt(format!(
                "table {table} differs after the copy ({} rows in SQLite, {} in PostgreSQL); the PostgreSQL database was left as copied, drop it before trying again",
                a.0, b.0
            )));
        }
    }
    dst.execute_batch("COMMIT")?;
    let _ = src.execute_batch("COMMIT");
    Ok(MigrateReport { tables })
}

/// The columns of `table`, from the source.
fn columns(src: &rusqlite::Connection, table: &str) -> Result<Vec<String>, StoreError> {
    let mut st = src.prepare(&format!(
        "SELECT name FROM pragma_table_info('{table}') ORDER BY cid"
    ))?;
    let cols = st
        .query_map([], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(cols)
}

fn copy_table(
    src: &rusqlite::Connection,
    dst: &Connection,
    table: &str,
) -> Result<u64, StoreError> {
    let cols = columns(src, table)?;
    let list = cols.join(", ");
    let marks: Vec<String> = (1..=cols.len()).map(|i| format!("?{i}")).collect();
    let mut insert = dst.prepare(&format!(
        "INSERT INTO {table} ({list}) VALUES ({})",
        marks.join(", ")
    ))?;
    let mut select = src.prepare(&format!("SELECT {list} FROM {table}"))?;
    let mut rows = select.query([])?;
    let mut n = 0u64;
    while let Some(row) = rows.next()? {
        let values: Vec<Value> = (0..cols.len())
            .map(|i| row.get::<_, Value>(i))
            .collect::<Result<_, _>>()?;
        let params: Vec<&dyn rusqlite::ToSql> =
            values.iter().map(|v| v as &dyn rusqlite::ToSql).collect();
        insert.execute(&params)?;
        n += 1;
    }
    Ok(n)
}

/// A digest of a table's rows that does not depend on their order (the
/// engines sort text differently): the sorted per-row hashes, hashed.
#[derive(Default)]
struct Digest32 {
    rows: Vec<[u8; 32]>,
}

impl Digest32 {
    fn add(&mut self, values: &[Value]) {
        let mut h = Sha256::new();
        for v in values {
            match v {
                Value::Null => h.update(b"n"),
                Value::Integer(v) => {
                    h.update(b"i");
                    h.update(v.to_be_bytes());
                }
                Value::Real(v) => {
                    h.update(b"r");
                    h.update(v.to_be_bytes());
                }
                Value::Text(t) => {
                    h.update(b"t");
                    h.update((t.len() as u64).to_be_bytes());
                    h.update(t.as_bytes());
                }
                Value::Blob(b) => {
                    h.update(b"b");
                    h.update((b.len() as u64).to_be_bytes());
                    h.update(b);
                }
            }
        }
        self.rows.push(h.finalize().into());
    }

    fn finish(mut self) -> (u64, [u8; 32]) {
        self.rows.sort_unstable();
        let mut all = Sha256::new();
        for h in &self.rows {
            all.update(h);
        }
        (self.rows.len() as u64, all.finalize().into())
    }
}

/// The source side: rows read one at a time.
fn digest_sqlite(src: &rusqlite::Connection, table: &str) -> Result<(u64, [u8; 32]), StoreError> {
    let cols = columns(src, table)?;
    let mut st = src.prepare(&format!("SELECT {} FROM {table}", cols.join(", ")))?;
    let mut rows = st.query([])?;
    let mut d = Digest32::default();
    while let Some(row) = rows.next()? {
        let values: Vec<Value> = (0..cols.len())
            .map(|i| row.get::<_, Value>(i))
            .collect::<Result<_, _>>()?;
        d.add(&values);
    }
    Ok(d.finish())
}

/// The target side: the same columns (by name), read through a cursor a
/// thousand rows at a time, inside the caller's transaction.
fn digest_postgres(
    src: &rusqlite::Connection,
    dst: &Connection,
    table: &str,
) -> Result<(u64, [u8; 32]), StoreError> {
    let cols = columns(src, table)?;
    dst.execute_batch(&format!(
        "DECLARE migrate_check NO SCROLL CURSOR FOR SELECT {} FROM {table}",
        cols.join(", ")
    ))?;
    let mut d = Digest32::default();
    loop {
        let mut fetch = dst.prepare("FETCH 1000 FROM migrate_check")?;
        let batch: Vec<Vec<Value>> = fetch
            .query_map(rusqlite::params![], |r| {
                (0..cols.len()).map(|i| r.get::<_, Value>(i)).collect()
            })?
            .collect::<Result<_, _>>()?;
        if batch.is_empty() {
            break;
        }
        for values in &batch {
            d.add(values);
        }
    }
    dst.execute_batch("CLOSE migrate_check")?;
    Ok(d.finish())
}
