//! SQL of channels, slots and seats (`channels`, `slots` tables).
//!
//! Invite codes and rejoin tokens are stored only as SHA-256 hashes, each
//! unique (partial unique indexes), so a secret names at most one seat.

use super::StoreError;
use super::db::{Connection, Row};
use super::tx::{
    ChannelKey, ChannelRecord, NewChannel, NewSlot, SeatSecret, SecretSeat, SlotRecord,
};
use crate::model::{Seq, SlotKind};
use crate::secrets;
use crate::transcript;
use rusqlite::{OptionalExtension, params};

const CHANNEL_COLUMNS: &str =
    "id, name, admin_principal, created_at, closed, allow_network, last_seq, head_hash";

fn channel_row(r: &Row<'_>) -> rusqlite::Result<ChannelRecord> {
    Ok(ChannelRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        admin: r.get(2)?,
        created_at: r.get(3)?,
        closed: r.get::<_, i64>(4)? != 0,
        allow_network: r.get::<_, i64>(5)? != 0,
        last_seq: r.get(6)?,
        head_hash: r.get(7)?,
    })
}

pub(super) fn channel(c: &Connection, id: &str) -> Result<Option<ChannelRecord>, StoreError> {
    Ok(c.prepare_cached(&format!(
        "SELECT {CHANNEL_COLUMNS} FROM channels WHERE id = ?1"
    ))?
    .query_row(params![id], channel_row)
    .optional()?)
}

/// One page of a principal's channels, newest first then by id, resuming
/// after `after` (keyset paging: a page costs the same however deep it is,
/// and channels created meanwhile never shift a later page).
pub(super) fn channels_of(
    c: &Connection,
    principal: &str,
    after: Option<&ChannelKey>,
    limit: usize,
) -> Result<Vec<ChannelRecord>, StoreError> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {CHANNEL_COLUMNS} FROM channels WHERE id IN
           (SELECT id FROM channels WHERE admin_principal = ?1
            UNION SELECT channel_id FROM slots WHERE principal_id = ?1)
         AND (CAST(?2 AS BIGINT) IS NULL OR created_at < ?2 OR (created_at = ?2 AND id > ?3))
         ORDER BY created_at DESC, id LIMIT ?4"
    ))?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = st
        .query_map(
            params![
                principal,
                after.map(|k| k.created_at),
                after.map(|k| k.id.as_str()),
                limit
            ],
            channel_row,
        )?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

pub(super) fn slots(c: &Connection, cid: &str) -> Result<Vec<SlotRecord>, StoreError> {
    let mut st = c.prepare_cached(
        "SELECT s.label, s.kind, s.principal_id, b.bot_id IS NOT NULL, s.private_from
         FROM slots s LEFT JOIN bots b ON b.channel_id = s.channel_id AND b.bot_id = s.label
         WHERE s.channel_id = ?1 ORDER BY s.position",
    )?;
    let rows = st
        .query_map(params![cid], |r| {
            let kind: String = r.get(1)?;
            Ok((r.get(0)?, kind, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<Result<Vec<(String, String, Option<String>, bool, Seq)>, _>>()?;
    rows.into_iter()
        .map(|(label, kind, holder, has_bot, private_from)| {
            let kind = SlotKind::parse(&kind).ok_or_else(|| StoreError::Corrupt {
                what: "slot kind",
                detail: kind,
            })?;
            Ok(SlotRecord {
                label,
                kind,
                holder,
                has_bot,
                private_from,
            })
        })
        .collect()
}

pub(super) fn seats_of(
    c: &Connection,
    cid: &str,
    principal: &str,
) -> Result<Vec<String>, StoreError> {
    let mut st = c.prepare_cached(
        "SELECT label FROM slots WHERE channel_id = ?1 AND principal_id = ?2 ORDER BY position",
    )?;
    let rows = st
        .query_map(params![cid, principal], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

pub(super) fn seat_by_secret(
    c: &Connection,
    which: SeatSecret,
    hash: &[u8],
) -> Result<Option<SecretSeat>, StoreError> {
    let sql = match which {
        SeatSecret::Invite => {
            "SELECT s.channel_id, s.label, s.principal_id, s.invite_hash, ch.closed
             FROM slots s JOIN channels ch ON ch.id = s.channel_id WHERE s.invite_hash = ?1"
        }
        SeatSecret::Rejoin => {
            "SELECT s.channel_id, s.label, s.principal_id, s.rejoin_hash, ch.closed
             FROM slots s JOIN channels ch ON ch.id = s.channel_id WHERE s.rejoin_hash = ?1"
        }
    };
    Ok(c.prepare_cached(sql)?
        .query_row(params![hash], |r| {
            Ok(SecretSeat {
                channel_id: r.get(0)?,
                label: r.get(1)?,
                holder: r.get(2)?,
                stored_hash: r.get(3)?,
                channel_closed: r.get::<_, i64>(4)? != 0,
            })
        })
        .optional()?)
}

pub(super) fn insert_channel(c: &Connection, ch: &NewChannel<'_>) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO channels (id, name, admin_principal, created_at, allow_network, head_hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            ch.id,
            ch.name,
            ch.admin,
            secrets::now_ms(),
            ch.allow_network as i64,
            transcript::GENESIS
        ],
    )?;
    Ok(())
}

pub(super) fn rename_channel(c: &Connection, cid: &str, name: &str) -> Result<(), StoreError> {
    c.execute(
        "UPDATE channels SET name = ?1 WHERE id = ?2",
        params![name, cid],
    )?;
    Ok(())
}

pub(super) fn close_channel(c: &Connection, cid: &str) -> Result<(), StoreError> {
    c.execute("UPDATE channels SET closed = 1 WHERE id = ?1", params![cid])?;
    // Open invites die with the channel.
    c.execute(
        "UPDATE slots SET invite_hash = NULL WHERE channel_id = ?1",
        params![cid],
    )?;
    Ok(())
}

pub(super) fn insert_slot(c: &Connection, cid: &str, s: &NewSlot<'_>) -> Result<(), StoreError> {
    let (holder, rejoin) = match s.holder {
        Some((p, r)) => (Some(p), Some(r)),
        None => (None, None),
    };
    c.execute(
        "INSERT INTO slots (channel_id, label, kind, position, principal_id, invite_hash, rejoin_hash, joined_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            cid,
            s.label,
            s.kind.as_str(),
            s.position as i64,
            holder,
            s.invite_hash,
            rejoin,
            holder.map(|_| secrets::now_ms())
        ],
    )?;
    Ok(())
}

pub(super) fn fill_seat(
    c: &Connection,
    cid: &str,
    label: &str,
    principal: &str,
    rejoin_hash: &[u8],
) -> Result<(), StoreError> {
    c.execute(
        "UPDATE slots SET principal_id = ?1, invite_hash = NULL, rejoin_hash = ?2, joined_at = ?3
         WHERE channel_id = ?4 AND label = ?5",
        params![principal, rejoin_hash, secrets::now_ms(), cid, label],
    )?;
    Ok(())
}

pub(super) fn free_seat(
    c: &Connection,
    cid: &str,
    label: &str,
    invite_hash: &[u8],
    private_from: Seq,
) -> Result<(), StoreError> {
    c.execute(
        "UPDATE slots SET principal_id = NULL, rejoin_hash = NULL, joined_at = NULL, invite_hash = ?1,
           private_from = ?2
         WHERE channel_id = ?3 AND label = ?4",
        params![invite_hash, private_from, cid, label],
    )?;
    Ok(())
}

pub(super) fn set_invite(
    c: &Connection,
    cid: &str,
    label: &str,
    invite_hash: &[u8],
) -> Result<(), StoreError> {
    c.execute(
        "UPDATE slots SET invite_hash = ?1 WHERE channel_id = ?2 AND label = ?3",
        params![invite_hash, cid, label],
    )?;
    Ok(())
}
