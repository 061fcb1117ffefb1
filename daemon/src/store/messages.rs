//! SQL of the transcript (`messages` table, and each channel's `last_seq` and
//! `head_hash`).
//!
//! Appending reads the channel's head, seals the entry with the pure chain
//! functions of [`crate::transcript`] (a bot's `cause` and `state_hash`
//! included), and writes the message and the new head in the same
//! transaction, so the chain can never fork: the writer is the only one
//! appending.

use super::StoreError;
use super::db::{Connection, Row};
use super::tx::{Appended, NewMessage, Shown, StoredMessage};
use crate::model::{MessageKind, Seq};
use crate::secrets;
use crate::transcript::{self, CanonicalJson, Entry};
use rusqlite::params;

pub(super) fn append(
    c: &Connection,
    cid: &str,
    m: &NewMessage<'_>,
) -> Result<Appended, StoreError> {
    let (last, head): (i64, String) = c
        .prepare_cached("SELECT last_seq, head_hash FROM channels WHERE id = ?1")?
        .query_row(params![cid], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let seq = last + 1;
    let ts = secrets::rfc3339_ms(secrets::now_ms());
    let salt = m.to.map(|_| secrets::new_salt());
    let entry = Entry {
        seq,
        channel_id: cid,
        sender: m.sender,
        kind: m.kind.as_str(),
        ts: &ts,
        body: m.body,
        private: m.to.zip(salt.as_deref()),
        cause: m.cause,
        state_hash: m.state_hash,
    };
    let sealed = entry.seal(&head);
    let recipients = m.to.map(transcript::canonical);
    c.prepare_cached(
        "INSERT INTO messages (channel_id, seq, sender, kind, body, recipients, body_hash, body_salt, ts, hash, cause, state_hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![
        cid,
        seq,
        m.sender,
        m.kind.as_str(),
        m.body.as_str(),
        recipients,
        sealed.body_hash,
        salt,
        ts,
        sealed.hash,
        m.cause,
        m.state_hash
    ])?;
    c.prepare_cached("UPDATE channels SET last_seq = ?1, head_hash = ?2 WHERE id = ?3")?
        .execute(params![seq, sealed.hash, cid])?;
    Ok(Appended {
        seq,
        hash: sealed.hash,
        ts,
    })
}

fn message_row(r: &Row<'_>) -> rusqlite::Result<(StoredMessage, String, Option<String>)> {
    let kind: String = r.get(3)?;
    let recipients: Option<String> = r.get(5)?;
    Ok((
        StoredMessage {
            channel_id: r.get(0)?,
            seq: r.get(1)?,
            sender: r.get(2)?,
            kind: MessageKind::User,
            body: CanonicalJson::from_stored(r.get(4)?),
            to: None,
            body_hash: r.get(6)?,
            body_salt: r.get(7)?,
            ts: r.get(8)?,
            hash: r.get(9)?,
            cause: r.get(10)?,
            state_hash: r.get(11)?,
        },
        kind,
        recipients,
    ))
}

/// The bodies of the `system` messages with `seq > after`, in order (the
/// rows of the other kinds are passed over, not loaded).
pub(super) fn system_bodies_after(
    c: &Connection,
    cid: &str,
    after: Seq,
) -> Result<Vec<String>, StoreError> {
    let mut st = c.prepare_cached(
        "SELECT body FROM messages WHERE channel_id = ?1 AND seq > ?2 AND kind = 'system' ORDER BY seq",
    )?;
    let rows = st
        .query_map(params![cid, after], |r| r.get::<_, String>(0))?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// At most `limit` messages after `cursor`, stopping before the one that
/// would take the page past `max_bytes`, each counted as
/// [`StoredMessage::page_bytes`] of how the page's reader receives it
/// (`shown`); the first always comes. Rows are read one at a time, so what
/// lies past the budget is never loaded.
pub(super) fn after(
    c: &Connection,
    cid: &str,
    cursor: Seq,
    limit: usize,
    max_bytes: usize,
    shown: &dyn Fn(&StoredMessage) -> Shown,
) -> Result<Vec<StoredMessage>, StoreError> {
    let mut st = c.prepare_cached(
        "SELECT channel_id, seq, sender, kind, body, recipients, body_hash, body_salt, ts, hash, cause, state_hash
         FROM messages WHERE channel_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
    )?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut rows = Vec::new();
    let mut used = 0usize;
    for row in st.query_map(params![cid, cursor, limit], message_row)? {
        // Whole (kind and recipients parsed) before it is measured: how the
        // reader receives it depends on its recipients.
        let m = parsed(row?)?;
        used = used.saturating_add(m.page_bytes(shown(&m)));
        if used > max_bytes && !rows.is_empty() {
            break;
        }
        rows.push(m);
    }
    Ok(rows)
}

/// A row of [`message_row`] with its kind and recipients parsed.
fn parsed(
    (mut m, kind, recipients): (StoredMessage, String, Option<String>),
) -> Result<StoredMessage, StoreError> {
    m.kind = MessageKind::parse(&kind).ok_or_else(|| StoreError::Corrupt {
        what: "message kind",
        detail: kind,
    })?;
    m.to = match recipients {
        None => None,
        Some(r) => Some(serde_json::from_str(&r).map_err(|e| StoreError::Corrupt {
            what: "message recipients",
            detail: e.to_string(),
        })?),
    };
    Ok(m)
}
