//! One read for all the `sync_messages` calls of a channel that want to read
//! at the same moment.
//!
//! A post to a busy channel wakes every waiter at once (spectators, many
//! seats: a thousand, say). Each used to run its own read: a token check, the
//! channel, its seats, the messages after its cursor and the channel view,
//! one snapshot each, a thousand times the same rows. Here the reads of one
//! channel queue up, and the first of them starts one read transaction for
//! everyone queued by the time it runs. Inside that one snapshot each
//! waiter is still judged alone, in the order the checks always ran: its
//! credential (`TOKEN_INVALID`), the channel (`CHANNEL_NOT_FOUND`), its seats
//! (`NOT_MEMBER`, the seat errors), then the messages as its seat may see
//! them and the view as it may see it. What several waiters share is only
//! what is the same for them: the channel's rows, one credential's validity,
//! one principal's seats and view, one page of messages (same cursor, limit
//! and byte budget), and one seat's rendering of that page.
//!
//! Membership at delivery is therefore unchanged: every answer is checked in
//! the snapshot its messages come from, and a waiter kicked or revoked before
//! a commit never receives it.

use super::rules;
use super::{ToolError, view_in};
use crate::model::{ChannelView, Credential, MessageView, Principal, Seq, Synced};
use crate::store::{ChannelRecord, ReadTx, Store, StoredMessage};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// One waiter's read.
#[derive(Debug, Clone)]
pub(crate) struct SyncRead {
    pub who: Principal,
    pub slot: Option<String>,
    pub cursor: Seq,
    pub limit: usize,
    pub max_bytes: usize,
    /// Answer even with no messages (the wait is over).
    pub last_read: bool,
}

/// A waiter's answer: `None` while nothing is there to deliver.
pub(crate) type Answer = Result<Option<Synced>, ToolError>;

type Queue = Vec<(SyncRead, oneshot::Sender<Answer>)>;

/// Reads queued per channel, waiting for the read that answers them.
#[derive(Default)]
pub(crate) struct SharedReads {
    queued: Mutex<HashMap<String, Queue>>,
}

impl SharedReads {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Queue>> {
        self.queued.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `r` for channel `cid` and waits for its answer. The first read
    /// queued for a channel starts the shared read (in its own task, so that
    /// a caller that goes away cannot strand the others); every read queued
    /// before that read's snapshot begins is answered from it.
    pub async fn read(self: &Arc<Self>, store: &Store, cid: &str, r: SyncRead) -> Answer {
        let (tx, rx) = oneshot::channel();
        let lead = {
            let mut q = self.lock();
            match q.get_mut(cid) {
                Some(waiting) => {
                    waiting.push((r, tx));
                    false
                }
                None => {
                    q.insert(cid.to_string(), vec![(r, tx)]);
                    true
                }
            }
        };
        if lead {
            let me = self.clone();
            let store = store.clone();
            let cid = cid.to_string();
            tokio::spawn(async move {
                let taker = me.clone();
                let key = cid.clone();
                let done = store
                    .read(move |tx: &dyn ReadTx| {
                        // The queue closes as the snapshot opens.
                        let batch = taker.lock().remove(&key).unwrap_or_default();
                        answer_all(tx, &key, batch);
                        Ok::<(), ToolError>(())
                    })
                    .await;
                if let Err(e) = done {
                    // The read never started (no connection, no snapshot):
                    // whoever is still queued gets the failure.
                    let batch = me.lock().remove(&cid).unwrap_or_default();
                    for (_, reply) in batch {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            });
        }
        rx.await.unwrap_or_else(|_| {
            Err(ToolError::internal(
                "the shared read ended without an answer",
            ))
        })
    }
}

/// A page of messages: by (cursor, limit, byte budget).
type Window = (Seq, usize, usize);

/// What one snapshot found, computed once for the whole batch.
#[derive(Default)]
struct Found {
    channel: Option<Result<Option<ChannelRecord>, ToolError>>,
    credentials: HashMap<Vec<u8>, Result<bool, ToolError>>,
    seats: HashMap<String, Result<Vec<String>, ToolError>>,
    views: HashMap<String, Result<ChannelView, ToolError>>,
    pages: HashMap<Window, Result<Arc<Vec<StoredMessage>>, ToolError>>,
    /// A page as one seat sees it, by (cursor, limit, byte budget, seat).
    seen: HashMap<(Seq, usize, usize, String), Arc<Vec<MessageView>>>,
}

/// Answers every read of `batch` from the snapshot `tx`.
fn answer_all(tx: &dyn ReadTx, cid: &str, batch: Queue) {
    let mut found = Found::default();
    for (r, reply) in batch {
        let answer = answer_one(tx, cid, &r, &mut found);
        let _ = reply.send(answer);
    }
}

/// One waiter's answer, the same checks in the same order as a read of its
/// own would make.
fn answer_one(tx: &dyn ReadTx, cid: &str, r: &SyncRead, f: &mut Found) -> Answer {
    let valid = match &r.who.credential {
        Credential::Unauthenticated => Ok(true),
        Credential::Token(hash) => f
            .credentials
            .entry(hash.clone())
            .or_insert_with(|| Ok(tx.credential_valid(&r.who.credential)?))
            .clone(),
    };
    rules::require_credential(valid?)?;
    let ch = f
        .channel
        .get_or_insert_with(|| Ok(tx.channel(cid)?))
        .clone()?;
    let ch = rules::found(ch, cid)?;
    let seats = f
        .seats
        .entry(r.who.id.clone())
        .or_insert_with(|| Ok(tx.seats_of(cid, &r.who.id)?))
        .clone()?;
    rules::require_reader(&ch, &r.who, &seats)?;
    let seat = rules::resolve_seat(&seats, r.slot.as_deref())?;
    let window = (r.cursor, r.limit, r.max_bytes);
    let page = f
        .pages
        .entry(window)
        .or_insert_with(|| {
            Ok(Arc::new(tx.messages_page(
                &ch.id,
                r.cursor,
                r.limit,
                r.max_bytes,
            )?))
        })
        .clone()?;
    if page.is_empty() && !r.last_read {
        return Ok(None);
    }
    let view = f
        .views
        .entry(r.who.id.clone())
        .or_insert_with(|| view_in(tx, &ch, &r.who))
        .clone()?;
    let messages = f
        .seen
        .entry((r.cursor, r.limit, r.max_bytes, seat.clone()))
        .or_insert_with(|| Arc::new(page.iter().map(|m| rules::message_view(m, &seat)).collect()))
        .as_ref()
        .clone();
    let next = page.last().map_or(r.cursor, |m| m.seq);
    Ok(Some(Synced {
        cursor: next,
        more: next < ch.last_seq,
        clamped: Vec::new(),
        messages,
        as_seat: seat,
        view,
        signed_head: None,
    }))
}
