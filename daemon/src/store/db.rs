//! One connection type for both backends, so that every SQL statement of the
//! daemon is written once.
//!
//! The SQL modules (`seats`, `messages`, `bots`, `principals`, `usage`, the
//! OAuth server's `grants` and `clients`) speak a small subset of rusqlite's
//! API: `execute`, `query_row`, `prepare_cached`, `query_map`, rows read
//! with `get`, parameters given with `rusqlite::params!`, and
//! `rusqlite::Error` as the error (so `.optional()` and the error
//! classification of [`super::StoreError`] work unchanged). [`Connection`]
//! offers exactly that subset over either a SQLite connection (a direct
//! call, no conversion) or a PostgreSQL one ([`super::pg`]), where:
//!
//! - the SQL is rewritten once per statement (`?1` and `?` become `$1`) and
//!   the prepared statement is cached per connection, like SQLite's cache;
//! - parameters go through rusqlite's `ToSql` to a SQLite value (integer,
//!   real, text, blob, null) and are bound as whatever type PostgreSQL
//!   inferred for the parameter (a `BIGINT` column takes the integer, a
//!   `BOOLEAN` the integer as true/false);
//! - each column comes back as the SQLite value of its PostgreSQL type and is
//!   read with rusqlite's `FromSql`, so `r.get::<_, i64>(0)` means the same on
//!   both;
//! - an error keeps its meaning: a constraint violation is
//!   `SQLITE_CONSTRAINT`, a full disk `SQLITE_FULL`, a read-only server
//!   `SQLITE_READONLY`, anything else `SQLITE_ERROR` with PostgreSQL's text.
//!
//! The SQL itself is kept to what both engines accept (`ON CONFLICT ... DO`,
//! `IS NOT DISTINCT FROM`, no `INSERT OR ...`); a statement that only one of
//! them accepts fails the PostgreSQL variant of the test suite.

use postgres::types::{IsNull, ToSql as PgToSql, Type};
use rusqlite::ToSql;
use rusqlite::types::{FromSql, ToSqlOutput, Value, ValueRef};
use std::cell::RefCell;
use std::collections::HashMap;

/// A database connection of either backend.
pub(crate) struct Connection {
    backend: Backend,
}

enum Backend {
    Lite(rusqlite::Connection),
    // Boxed: a PostgreSQL client is three times a SQLite handle's size.
    Pg(Box<PgConn>),
}

/// A PostgreSQL connection and the statements prepared on it.
///
/// The synchronous client drives its socket with a small tokio runtime of its
/// own, which may neither run nor be dropped on a thread of the daemon's
/// runtime: the store uses it from its own threads and `spawn_blocking`, and
/// a connection dropped on a runtime thread is handed to a plain thread to
/// close.
pub(crate) struct PgConn {
    /// `Some` until dropped.
    client: RefCell<Option<postgres::Client>>,
    prepared: RefCell<HashMap<String, postgres::Statement>>,
}

impl Drop for PgConn {
    fn drop(&mut self) {
        let client = self.client.get_mut().take();
        if tokio::runtime::Handle::try_current().is_ok() {
            let _ = std::thread::Builder::new()
                .name("pg-close".into())
                .spawn(move || drop(client));
        }
    }
}

/// Runs `f` off the async runtime if called on it (the synchronous client
/// must not block a runtime thread, see [`PgConn`]).
pub(crate) fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

impl PgConn {
    pub(crate) fn new(client: postgres::Client) -> PgConn {
        PgConn {
            client: RefCell::new(Some(client)),
            prepared: RefCell::new(HashMap::new()),
        }
    }

    fn prepare(&self, sql: &str, cache: bool) -> rusqlite::Result<postgres::Statement> {
        if let Some(st) = self.prepared.borrow().get(sql) {
            return Ok(st.clone());
        }
        let st = self
            .client()
            .prepare(&placeholders(sql))
            .map_err(pg_error)?;
        if cache {
            self.prepared
                .borrow_mut()
                .insert(sql.to_string(), st.clone());
        }
        Ok(st)
    }

    fn execute(&self, st: &postgres::Statement, params: &[&dyn ToSql]) -> rusqlite::Result<usize> {
        let values = bind(params)?;
        let refs: Vec<&(dyn PgToSql + Sync)> = values.iter().map(|v| v as _).collect();
        let n = self.client().execute(st, &refs).map_err(pg_error)?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn query(
        &self,
        st: &postgres::Statement,
        params: &[&dyn ToSql],
    ) -> rusqlite::Result<Vec<postgres::Row>> {
        let values = bind(params)?;
        let refs: Vec<&(dyn PgToSql + Sync)> = values.iter().map(|v| v as _).collect();
        self.client().query(st, &refs).map_err(pg_error)
    }

    /// The client itself, for what only PostgreSQL has (LISTEN, advisory
    /// locks, `COPY`-free bulk reads).
    pub(crate) fn client(&self) -> std::cell::RefMut<'_, postgres::Client> {
        std::cell::RefMut::map(self.client.borrow_mut(), |c| {
            c.as_mut()
                .expect("a connection has its client until it is dropped")
        })
    }
}

impl Connection {
    pub(crate) fn sqlite(c: rusqlite::Connection) -> Connection {
        Connection {
            backend: Backend::Lite(c),
        }
    }

    pub(crate) fn postgres(c: PgConn) -> Connection {
        Connection {
            backend: Backend::Pg(Box::new(c)),
        }
    }

    /// The SQLite connection, for what only SQLite has (pragmas, functions).
    pub(crate) fn as_sqlite(&self) -> Option<&rusqlite::Connection> {
        match &self.backend {
            Backend::Lite(c) => Some(c),
            Backend::Pg(_) => None,
        }
    }

    /// The PostgreSQL connection, for what only PostgreSQL has.
    pub(crate) fn as_postgres(&self) -> Option<&PgConn> {
        match &self.backend {
            Backend::Lite(_) => None,
            Backend::Pg(c) => Some(c),
        }
    }

    /// Whether the other end has closed the connection (PostgreSQL only: a
    /// SQLite connection never closes under us).
    pub(crate) fn is_closed(&self) -> bool {
        match &self.backend {
            Backend::Lite(_) => false,
            Backend::Pg(c) => c.client().is_closed(),
        }
    }

    /// Runs statements without parameters (transaction control, mostly).
    pub(crate) fn execute_batch(&self, sql: &str) -> rusqlite::Result<()> {
        match &self.backend {
            Backend::Lite(c) => c.execute_batch(sql),
            Backend::Pg(c) => c.client().batch_execute(sql).map_err(pg_error),
        }
    }

    pub(crate) fn execute(&self, sql: &str, params: &[&dyn ToSql]) -> rusqlite::Result<usize> {
        match &self.backend {
            Backend::Lite(c) => c.execute(sql, params),
            Backend::Pg(c) => c.execute(&c.prepare(sql, false)?, params),
        }
    }

    pub(crate) fn query_row<T, F>(
        &self,
        sql: &str,
        params: &[&dyn ToSql],
        f: F,
    ) -> rusqlite::Result<T>
    where
        F: FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    {
        match &self.backend {
            Backend::Lite(c) => c.query_row(sql, params, |r| f(&Row(RowInner::Lite(r)))),
            Backend::Pg(c) => first_row(c, &c.prepare(sql, false)?, params, f),
        }
    }

    /// A statement kept prepared on this connection.
    pub(crate) fn prepare_cached(&self, sql: &str) -> rusqlite::Result<Statement<'_>> {
        match &self.backend {
            Backend::Lite(c) => Ok(Statement(StInner::Cached(c.prepare_cached(sql)?))),
            Backend::Pg(c) => Ok(Statement(StInner::Pg(c, c.prepare(sql, true)?))),
        }
    }

    /// A statement prepared for one use.
    pub(crate) fn prepare(&self, sql: &str) -> rusqlite::Result<Statement<'_>> {
        match &self.backend {
            Backend::Lite(c) => Ok(Statement(StInner::Once(c.prepare(sql)?))),
            Backend::Pg(c) => Ok(Statement(StInner::Pg(c, c.prepare(sql, false)?))),
        }
    }
}

fn first_row<T, F>(
    c: &PgConn,
    st: &postgres::Statement,
    params: &[&dyn ToSql],
    f: F,
) -> rusqlite::Result<T>
where
    F: FnOnce(&Row<'_>) -> rusqlite::Result<T>,
{
    let rows = c.query(st, params)?;
    match rows.first() {
        Some(r) => f(&Row(RowInner::Pg(r))),
        None => Err(rusqlite::Error::QueryReturnedNoRows),
    }
}

/// A prepared statement of either backend.
pub(crate) struct Statement<'c>(StInner<'c>);

enum StInner<'c> {
    Cached(rusqlite::CachedStatement<'c>),
    Once(rusqlite::Statement<'c>),
    Pg(&'c PgConn, postgres::Statement),
}

impl Statement<'_> {
    pub(crate) fn execute(&mut self, params: &[&dyn ToSql]) -> rusqlite::Result<usize> {
        match &mut self.0 {
            StInner::Cached(s) => s.execute(params),
            StInner::Once(s) => s.execute(params),
            StInner::Pg(c, s) => c.execute(s, params),
        }
    }

    pub(crate) fn query_row<T, F>(&mut self, params: &[&dyn ToSql], f: F) -> rusqlite::Result<T>
    where
        F: FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    {
        match &mut self.0 {
            StInner::Cached(s) => s.query_row(params, |r| f(&Row(RowInner::Lite(r)))),
            StInner::Once(s) => s.query_row(params, |r| f(&Row(RowInner::Lite(r)))),
            StInner::Pg(c, s) => first_row(c, s, params, f),
        }
    }

    /// The rows, each mapped by `f`. SQLite steps through them as the
    /// iterator is read; PostgreSQL has them all once the query returned.
    pub(crate) fn query_map<'s, T, F>(
        &'s mut self,
        params: &[&dyn ToSql],
        mut f: F,
    ) -> rusqlite::Result<Box<dyn Iterator<Item = rusqlite::Result<T>> + 's>>
    where
        T: 's,
        F: FnMut(&Row<'_>) -> rusqlite::Result<T> + 's,
    {
        match &mut self.0 {
            StInner::Cached(s) => Ok(Box::new(
                s.query_map(params, move |r| f(&Row(RowInner::Lite(r))))?,
            )),
            StInner::Once(s) => Ok(Box::new(
                s.query_map(params, move |r| f(&Row(RowInner::Lite(r))))?,
            )),
            StInner::Pg(c, s) => {
                let rows = c.query(s, params)?;
                Ok(Box::new(
                    rows.into_iter().map(move |r| f(&Row(RowInner::Pg(&r)))),
                ))
            }
        }
    }
}

/// One result row of either backend.
pub(crate) struct Row<'r>(RowInner<'r>);

enum RowInner<'r> {
    Lite(&'r rusqlite::Row<'r>),
    Pg(&'r postgres::Row),
}

impl Row<'_> {
    /// Column `idx` as `T`, converted as SQLite would.
    pub(crate) fn get<I: ColumnIndex, T: FromSql>(&self, idx: I) -> rusqlite::Result<T> {
        let idx = idx.index();
        match &self.0 {
            RowInner::Lite(r) => r.get(idx),
            RowInner::Pg(r) => {
                let v = column(r, idx)?;
                T::column_result(ValueRef::from(&v)).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        idx,
                        ValueRef::from(&v).data_type(),
                        Box::new(e),
                    )
                })
            }
        }
    }
}

/// A column's position (only `usize`, so that `r.get(0)` infers it).
pub(crate) trait ColumnIndex {
    fn index(self) -> usize;
}

impl ColumnIndex for usize {
    fn index(self) -> usize {
        self
    }
}

/// A PostgreSQL column as the SQLite value it stands for.
fn column(r: &postgres::Row, i: usize) -> rusqlite::Result<Value> {
    let ty = r
        .columns()
        .get(i)
        .ok_or(rusqlite::Error::InvalidColumnIndex(i))?
        .type_()
        .clone();
    let err = |e: postgres::Error| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Null, Box::new(e))
    };
    let v = match ty {
        Type::INT8 => r
            .try_get::<_, Option<i64>>(i)
            .map_err(err)?
            .map(Value::Integer),
        Type::INT4 => r
            .try_get::<_, Option<i32>>(i)
            .map_err(err)?
            .map(|v| Value::Integer(v.into())),
        Type::INT2 => r
            .try_get::<_, Option<i16>>(i)
            .map_err(err)?
            .map(|v| Value::Integer(v.into())),
        Type::BOOL => r
            .try_get::<_, Option<bool>>(i)
            .map_err(err)?
            .map(|v| Value::Integer(v.into())),
        Type::FLOAT8 => r
            .try_get::<_, Option<f64>>(i)
            .map_err(err)?
            .map(Value::Real),
        Type::FLOAT4 => r
            .try_get::<_, Option<f32>>(i)
            .map_err(err)?
            .map(|v| Value::Real(v.into())),
        Type::BYTEA => r
            .try_get::<_, Option<Vec<u8>>>(i)
            .map_err(err)?
            .map(Value::Blob),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => r
            .try_get::<_, Option<String>>(i)
            .map_err(err)?
            .map(Value::Text),
        other => {
            return Err(rusqlite::Error::FromSqlConversionFailure(
                i,
                rusqlite::types::Type::Null,
                format!("a {other} column has no SQLite counterpart; cast it in the query").into(),
            ));
        }
    };
    Ok(v.unwrap_or(Value::Null))
}

/// A parameter, bound as the type PostgreSQL inferred for it.
#[derive(Debug)]
struct PgValue(Value);

fn bind(params: &[&dyn ToSql]) -> rusqlite::Result<Vec<PgValue>> {
    params
        .iter()
        .map(|p| {
            Ok(PgValue(match p.to_sql()? {
                ToSqlOutput::Borrowed(v) => Value::try_from(v)
                    .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?,
                ToSqlOutput::Owned(v) => v,
                _ => {
                    return Err(rusqlite::Error::ToSqlConversionFailure(
                        "a parameter of a kind PostgreSQL cannot take".into(),
                    ));
                }
            }))
        })
        .collect()
}

type BoxError = Box<dyn std::error::Error + Sync + Send>;

fn put<T: PgToSql>(v: &T, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, BoxError> {
    v.to_sql(ty, out)
}

impl PgToSql for PgValue {
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, BoxError> {
        let mismatch = || -> BoxError {
            format!(
                "a {} value cannot be bound to a {ty} parameter",
                self.0.data_type()
            )
            .into()
        };
        match &self.0 {
            Value::Null => Ok(IsNull::Yes),
            Value::Integer(i) => match *ty {
                Type::INT8 => put(i, ty, out),
                Type::INT4 => put(&i32::try_from(*i)?, ty, out),
                Type::INT2 => put(&i16::try_from(*i)?, ty, out),
                Type::BOOL => put(&(*i != 0), ty, out),
                Type::FLOAT8 => put(&(*i as f64), ty, out),
                Type::TEXT | Type::VARCHAR | Type::UNKNOWN => put(&i.to_string(), ty, out),
                _ => Err(mismatch()),
            },
            Value::Real(f) => match *ty {
                Type::FLOAT8 => put(f, ty, out),
                Type::FLOAT4 => put(&(*f as f32), ty, out),
                _ => Err(mismatch()),
            },
            Value::Text(s) => match *ty {
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                    put(&s.as_str(), ty, out)
                }
                Type::INT8 => put(&s.parse::<i64>()?, ty, out),
                _ => Err(mismatch()),
            },
            Value::Blob(b) => match *ty {
                Type::BYTEA => put(&b.as_slice(), ty, out),
                _ => Err(mismatch()),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

/// PostgreSQL's placeholders for SQLite's: `?N` becomes `$N`, a bare `?` the
/// next number. Text inside quotes is left alone.
pub(crate) fn placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut next = 0u32;
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => {
                quote = None;
                out.push(c);
            }
            (Some(_), c) => out.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                out.push(c);
            }
            (None, '?') => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                out.push('$');
                if digits.is_empty() {
                    next += 1;
                    out.push_str(&next.to_string());
                } else {
                    out.push_str(&digits);
                }
            }
            (None, c) => out.push(c),
        }
    }
    out
}

/// A PostgreSQL error as the SQLite error of the same meaning.
pub(crate) fn pg_error(e: postgres::Error) -> rusqlite::Error {
    use rusqlite::ffi;
    let state = e.code().map(|s| s.code().to_string()).unwrap_or_default();
    let code = match state.as_str() {
        s if s.starts_with("23") => ffi::SQLITE_CONSTRAINT,
        "53100" => ffi::SQLITE_FULL,
        "25006" => ffi::SQLITE_READONLY,
        "58030" => ffi::SQLITE_IOERR,
        _ => ffi::SQLITE_ERROR,
    };
    let text = match e.as_db_error() {
        Some(db) => format!("postgres {}: {}", db.code().code(), db.message()),
        None => format!("postgres: {e}"),
    };
    rusqlite::Error::SqliteFailure(ffi::Error::new(code), Some(text))
}

#[cfg(test)]
mod tests {
    use super::placeholders;

    #[test]
    fn placeholders_are_numbered_and_quoted_text_is_left_alone() {
        assert_eq!(
            placeholders("SELECT a FROM t WHERE b = ?1 AND c = ?12 AND d = '?' AND e = ?"),
            "SELECT a FROM t WHERE b = $1 AND c = $12 AND d = '?' AND e = $1"
        );
        assert_eq!(
            placeholders("VALUES (?, ?, \"x?\")"),
            "VALUES ($1, $2, \"x?\")"
        );
    }
}
