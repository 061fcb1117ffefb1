//! SQL of the quota counters (`channel_usage`, `principal_usage`) and the
//! reads the quotas make over `channels`. The decisions are
//! `crate::quota`'s; this file only counts.

use super::StoreError;
use super::db::Connection;
use rusqlite::{OptionalExtension, params};

/// One UTC day in milliseconds.
pub(crate) const DAY_MS: i64 = 86_400_000;

pub(super) fn channel_bytes(c: &Connection, cid: &str) -> Result<u64, StoreError> {
    let v: Option<i64> = c
        .prepare_cached("SELECT body_bytes FROM channel_usage WHERE channel_id = ?1")?
        .query_row(params![cid], |r| r.get(0))
        .optional()?;
    Ok(v.unwrap_or(0).max(0) as u64)
}

pub(super) fn principal_bytes(
    c: &Connection,
    principal: &str,
    day: i64,
) -> Result<u64, StoreError> {
    let v: Option<i64> = c
        .prepare_cached(
            "SELECT body_bytes FROM principal_usage WHERE principal_id = ?1 AND day = ?2",
        )?
        .query_row(params![principal, day], |r| r.get(0))
        .optional()?;
    Ok(v.unwrap_or(0).max(0) as u64)
}

/// Channels `principal` created at or after `since_ms`, and when the oldest
/// of them was created.
pub(super) fn created_since(
    c: &Connection,
    principal: &str,
    since_ms: i64,
) -> Result<(u64, Option<i64>), StoreError> {
    let (n, oldest): (i64, Option<i64>) = c
        .prepare_cached(
            "SELECT count(*), min(created_at) FROM channels
             WHERE admin_principal = ?1 AND created_at >= ?2",
        )?
        .query_row(params![principal, since_ms], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok((n.max(0) as u64, oldest))
}

pub(super) fn open_channels(c: &Connection, principal: &str) -> Result<u64, StoreError> {
    let n: i64 = c
        .prepare_cached("SELECT count(*) FROM channels WHERE admin_principal = ?1 AND closed = 0")?
        .query_row(params![principal], |r| r.get(0))?;
    Ok(n.max(0) as u64)
}

/// Adds `bytes` to the channel's count and, for a principal's post, to the
/// principal's count of `day`; the principal's first bytes of a day also
/// drop its rows of earlier days (a statement, so a round trip on
/// PostgreSQL, that only then has anything to delete).
pub(super) fn add(
    c: &Connection,
    cid: &str,
    principal: Option<(&str, i64)>,
    bytes: u64,
) -> Result<(), StoreError> {
    let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
    c.prepare_cached(
        "INSERT INTO channel_usage (channel_id, body_bytes) VALUES (?1, ?2)
         ON CONFLICT (channel_id) DO UPDATE SET body_bytes = channel_usage.body_bytes + excluded.body_bytes",
    )?
    .execute(params![cid, bytes])?;
    if let Some((p, day)) = principal {
        let total: i64 = c
            .prepare_cached(
                "INSERT INTO principal_usage (principal_id, day, body_bytes) VALUES (?1, ?2, ?3)
                 ON CONFLICT (principal_id, day) DO UPDATE SET body_bytes = principal_usage.body_bytes + excluded.body_bytes
                 RETURNING body_bytes",
            )?
            .query_row(params![p, day, bytes], |r| r.get(0))?;
        // The day's row holds no more than these bytes: it was made just
        // now (or held nothing), so earlier days may still have rows, no
        // longer needed.
        if total <= bytes {
            c.prepare_cached("DELETE FROM principal_usage WHERE principal_id = ?1 AND day < ?2")?
                .execute(params![p, day])?;
        }
    }
    Ok(())
}

/// Writes the health probe's row (see `Store::probe_write`).
pub(super) fn probe(c: &Connection, now_ms: i64) -> Result<(), StoreError> {
    c.prepare_cached("INSERT INTO health_probe (id, at) VALUES (1, ?1) ON CONFLICT (id) DO UPDATE SET at = excluded.at")?
        .execute(params![now_ms])?;
    Ok(())
}
