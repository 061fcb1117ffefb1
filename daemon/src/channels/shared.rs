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
//! what is the same for them: the channel's rows and slots, one
//! credential's validity, one principal's seats and view, and one seat's
//! page of messages (same cursor, limit and byte budget: a page is cut on
//! what its seat receives, see `rules::shown_to`) and rendering of it.
//!
//! Membership at delivery is therefore unchanged: every answer is checked in
//! the snapshot its messages come from, and a waiter kicked or revoked before
//! a commit never receives it.
//!
//! Waiters that passed those checks and see the same thing (one principal,
//! one seat, one page) get the same answer: one [`Delivery`], signed once,
//! whose encodings its deliverer computes once (see [`Delivery::memo`]).
//! A thousand spectators of one seat cost one answer, not a thousand.

use super::rules;
use super::{ToolError, view_in};
use crate::model::{ChannelView, Credential, MessageView, Principal, Seq, Synced};
use crate::signing::Signer;
use crate::store::{ChannelRecord, ReadTx, SlotRecord, Store, StoredMessage};
use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
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
pub(crate) type Answer = Result<Option<Arc<Delivery>>, ToolError>;

/// What a read delivers, shared by every waiter that sees the same: the
/// messages (with the signed head at the last one) and the view.
pub(crate) struct Delivery {
    synced: Synced,
    /// Whatever the deliverer derives from `synced` (its wire encoding),
    /// computed by the first waiter that needs it.
    memo: OnceLock<Box<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.synced.fmt(f)
    }
}

impl Delivery {
    fn new(synced: Synced) -> Self {
        Delivery {
            synced,
            memo: OnceLock::new(),
        }
    }

    /// The answer.
    pub fn synced(&self) -> &Synced {
        &self.synced
    }

    /// The answer, owned (a copy when it is shared).
    pub fn into_synced(self: Arc<Self>) -> Synced {
        match Arc::try_unwrap(self) {
            Ok(d) => d.synced,
            Err(shared) => shared.synced.clone(),
        }
    }

    /// `make(synced)`, computed once per delivery and kept for the other
    /// waiters it goes to. Every caller must ask for the same type `T`;
    /// `None` if another type was memoised first.
    pub fn memo<T: Any + Send + Sync>(&self, make: impl FnOnce(&Synced) -> T) -> Option<&T> {
        self.memo
            .get_or_init(|| Box::new(make(&self.synced)))
            .downcast_ref()
    }
}

pub(super) type Queue = Vec<(SyncRead, oneshot::Sender<Answer>)>;

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
    pub async fn read(
        self: &Arc<Self>,
        store: &Store,
        signer: &Signer,
        cid: &str,
        r: SyncRead,
    ) -> Answer {
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
            let signer = signer.clone();
            let cid = cid.to_string();
            tokio::spawn(async move {
                let taker = me.clone();
                let key = cid.clone();
                let done = store
                    .read(move |tx: &dyn ReadTx| {
                        // The queue closes as the snapshot opens.
                        let batch = taker.lock().remove(&key).unwrap_or_default();
                        Ok::<_, ToolError>(answer_all(tx, &key, batch))
                    })
                    .await;
                match done {
                    Ok(answered) => answered.deliver(&signer),
                    Err(e) => {
                        // The read never started (no connection, no
                        // snapshot): whoever is still queued gets the failure.
                        let batch = me.lock().remove(&cid).unwrap_or_default();
                        for (_, reply) in batch {
                            let _ = reply.send(Err(e.clone()));
                        }
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

/// A page of messages as one seat reads it: by (cursor, limit, byte
/// budget, reader). The reader is part of the key because the page is cut
/// on what that reader receives.
type Window = (Seq, usize, usize, rules::SeatReader);

/// What one snapshot found, computed once for the whole batch.
#[derive(Default)]
struct Found {
    channel: Option<Result<Option<ChannelRecord>, ToolError>>,
    slots: Option<Result<Vec<SlotRecord>, ToolError>>,
    credentials: HashMap<Vec<u8>, Result<bool, ToolError>>,
    seats: HashMap<String, Result<Vec<String>, ToolError>>,
    views: HashMap<String, Result<ChannelView, ToolError>>,
    pages: HashMap<Window, Result<Arc<Vec<StoredMessage>>, ToolError>>,
    /// A page as its seat sees it.
    seen: HashMap<Window, Arc<Vec<MessageView>>>,
    /// The answers built so far, by what their waiters see: (principal,
    /// seat, cursor, limit, byte budget); an index into `answers`.
    same: HashMap<(String, String, Seq, usize, usize), usize>,
    answers: Vec<Synced>,
}

/// One waiter's outcome: an index into the batch's answers, `None` while
/// nothing is there to deliver.
pub(super) type Outcome = Result<Option<usize>, ToolError>;

/// What one snapshot answered: the distinct answers, and each waiter's.
pub(super) struct Answered {
    pub(super) answers: Vec<Synced>,
    pub(super) replies: Vec<(oneshot::Sender<Answer>, Outcome)>,
}

impl Answered {
    /// Signs each distinct answer once (outside the store's thread: every
    /// message returned is covered by a signature the reader holds) and
    /// hands every waiter its own.
    fn deliver(self, signer: &Signer) {
        let shared: Vec<Arc<Delivery>> = self
            .answers
            .into_iter()
            .map(|mut s| {
                if let Some(last) = s.messages.last() {
                    s.signed_head = Some(signer.head(&last.channel_id, last.seq, &last.hash));
                }
                s.view.signing_key = Some(signer.key_id().to_string());
                Arc::new(Delivery::new(s))
            })
            .collect();
        for (reply, outcome) in self.replies {
            let _ = reply.send(outcome.map(|o| o.map(|i| shared[i].clone())));
        }
    }
}

/// Answers every read of `batch` from the snapshot `tx`.
pub(super) fn answer_all(tx: &dyn ReadTx, cid: &str, batch: Queue) -> Answered {
    let mut found = Found::default();
    let mut replies = Vec::with_capacity(batch.len());
    for (r, reply) in batch {
        let outcome = answer_one(tx, cid, &r, &mut found);
        replies.push((reply, outcome));
    }
    Answered {
        answers: found.answers,
        replies,
    }
}

/// One waiter's answer, the same checks in the same order as a read of its
/// own would make.
fn answer_one(tx: &dyn ReadTx, cid: &str, r: &SyncRead, f: &mut Found) -> Outcome {
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
    let slots = f.slots.get_or_insert_with(|| Ok(tx.slots(cid)?)).clone()?;
    // The seat as its holder reads it now: a kicked seat's private history
    // before the kick is not theirs.
    let reader = rules::SeatReader::of(&slots, &seat);
    let window = (r.cursor, r.limit, r.max_bytes, reader.clone());
    let page = f
        .pages
        .entry(window.clone())
        .or_insert_with(|| {
            Ok(Arc::new(tx.messages_page(
                &ch.id,
                r.cursor,
                r.limit,
                r.max_bytes,
                &|m| rules::shown_to(m, &reader),
            )?))
        })
        .clone()?;
    if page.is_empty() && !r.last_read {
        return Ok(None);
    }
    let same = (
        r.who.id.clone(),
        seat.clone(),
        r.cursor,
        r.limit,
        r.max_bytes,
    );
    if let Some(&i) = f.same.get(&same) {
        return Ok(Some(i));
    }
    let view = f
        .views
        .entry(r.who.id.clone())
        .or_insert_with(|| view_in(tx, &ch, &r.who))
        .clone()?;
    let messages = f
        .seen
        .entry(window)
        .or_insert_with(|| {
            Arc::new(
                page.iter()
                    .map(|m| rules::message_view(m, &reader))
                    .collect(),
            )
        })
        .as_ref()
        .clone();
    let next = page.last().map_or(r.cursor, |m| m.seq);
    f.answers.push(Synced {
        cursor: next,
        more: next < ch.last_seq,
        clamped: Vec::new(),
        messages,
        as_seat: seat,
        view,
        signed_head: None,
    });
    f.same.insert(same, f.answers.len() - 1);
    Ok(Some(f.answers.len() - 1))
}
