//! SQL of attached bots (`bots` table): their exact source, manifest, state
//! (with the secret salt of its hashes in the transcript), secret seed and
//! transcript cursor.
//!
//! The cursor is what makes hooks durable: a bot has handled every message
//! up to it, and a hook's effects commit in the same transaction as the
//! cursor's move.

use super::StoreError;
use super::db::Connection;
use super::tx::{BotRecord, BotRuntime, PreparedBot};
use crate::model::{Manifest, Seq};
use crate::secrets;
use crate::transcript::{self, CanonicalJson};
use rusqlite::{OptionalExtension, params};
use serde_json::{Map, Value};

fn corrupt(what: &'static str) -> impl Fn(serde_json::Error) -> StoreError {
    move |e| StoreError::Corrupt {
        what,
        detail: e.to_string(),
    }
}

pub(super) fn insert(
    c: &Connection,
    cid: &str,
    bot_id: &str,
    bot: &PreparedBot,
) -> Result<(), StoreError> {
    let now = secrets::now_ms();
    c.execute(
        "INSERT INTO bots (channel_id, bot_id, name, preset, source, code_hash, manifest, manifest_hash, params, network, created_at, state_salt, seed)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params![
            cid,
            bot_id,
            bot.name,
            bot.preset,
            bot.source,
            bot.code_hash,
            transcript::canonical(&bot.manifest),
            bot.manifest_hash,
            transcript::canonical(&bot.params),
            bot.network as i64,
            now,
            // Derived from the seed, so that its commitment covers the salt.
            crate::bots::seed::state_salt(&bot.seed),
            bot.seed.to_hex()
        ],
    )?;
    // A bot slot is never held by a principal.
    c.execute(
        "UPDATE slots SET principal_id = NULL, joined_at = ?1 WHERE channel_id = ?2 AND label = ?3",
        params![now, cid, bot_id],
    )?;
    Ok(())
}

pub(super) fn of_channel(c: &Connection, cid: &str) -> Result<Vec<BotRecord>, StoreError> {
    let mut st = c.prepare_cached(
        "SELECT bot_id, name, preset, code_hash, manifest, manifest_hash, network, cursor
         FROM bots WHERE channel_id = ?1 ORDER BY created_at, bot_id",
    )?;
    let rows = st
        .query_map(params![cid], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, i64>(6)? != 0,
                r.get::<_, Seq>(7)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter()
        .map(
            |(bot_id, name, preset, code_hash, manifest, manifest_hash, network, cursor)| {
                Ok(BotRecord {
                    manifest: serde_json::from_str::<Manifest>(&manifest)
                        .map_err(corrupt("bot manifest"))?,
                    bot_id,
                    name,
                    preset,
                    code_hash,
                    manifest_hash,
                    network,
                    cursor,
                })
            },
        )
        .collect()
}

pub(super) fn runtime(
    c: &Connection,
    cid: &str,
    bot_id: &str,
) -> Result<Option<BotRuntime>, StoreError> {
    type Row = (String, String, String, String, Option<String>);
    let row: Option<Row> = c
        .prepare_cached(
            "SELECT source, params, state, state_salt, seed FROM bots WHERE channel_id = ?1 AND bot_id = ?2",
        )?
        .query_row(params![cid, bot_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .optional()?;
    let Some((source, params_s, state_s, state_salt, seed)) = row else {
        return Ok(None);
    };
    let seed = seed
        .map(|s| {
            s.parse::<hook_protocol::Entropy>()
                .map_err(|e| StoreError::Corrupt {
                    what: "bot seed",
                    detail: e.to_string(),
                })
        })
        .transpose()?;
    Ok(Some(BotRuntime {
        source,
        params: serde_json::from_str::<Map<String, Value>>(&params_s)
            .map_err(corrupt("bot params"))?,
        state: serde_json::from_str(&state_s).map_err(corrupt("bot state"))?,
        stored_state: state_s,
        state_salt,
        seed,
    }))
}

pub(super) fn cursor(c: &Connection, cid: &str, bot_id: &str) -> Result<Option<Seq>, StoreError> {
    Ok(
        c.prepare_cached("SELECT cursor FROM bots WHERE channel_id = ?1 AND bot_id = ?2")?
            .query_row(params![cid, bot_id], |r| r.get::<_, Seq>(0))
            .optional()?,
    )
}

pub(super) fn channels_with_bots(c: &Connection) -> Result<Vec<String>, StoreError> {
    let mut st = c.prepare_cached("SELECT DISTINCT channel_id FROM bots")?;
    let rows = st
        .query_map(params![], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

pub(super) fn set_cursor(
    c: &Connection,
    cid: &str,
    bot_id: &str,
    cursor: Seq,
) -> Result<(), StoreError> {
    c.prepare_cached("UPDATE bots SET cursor = ?1 WHERE channel_id = ?2 AND bot_id = ?3")?
        .execute(params![cursor, cid, bot_id])?;
    Ok(())
}

pub(super) fn set_state(
    c: &Connection,
    cid: &str,
    bot_id: &str,
    state: &CanonicalJson,
) -> Result<(), StoreError> {
    c.prepare_cached("UPDATE bots SET state = ?1 WHERE channel_id = ?2 AND bot_id = ?3")?
        .execute(params![state.as_str(), cid, bot_id])?;
    Ok(())
}
