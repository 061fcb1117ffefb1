//! Channels, slots, seats and messages: the domain behind the MCP tools.
//!
//! Identity: a seat belongs to a principal, never to an MCP session, so
//! reconnecting clients keep their seats. Invites are single-use; a rejoin
//! token moves a seat to whoever presents it and is replaced on use. Secrets
//! are stored as hashes and never appear in views or messages; senders are
//! slot labels.
//!
//! Every operation is one store transaction: a change runs its checks
//! ([`rules`]) and its effects inside one write, so it commits with the
//! transcript entry that announces it and is acknowledged only once durable;
//! a read sees one snapshot. This module owns authorization: every entry
//! point takes the caller's [`Principal`] and checks, in the same
//! transaction, that it may do what it asks. [`Channels::sync`] checks the
//! caller's token and seat again at every wake-up, so a member kicked or a
//! token revoked while waiting gets `NOT_MEMBER` or `TOKEN_INVALID`, never a
//! message posted after the kick or the revocation.

mod error;
mod export;
pub(crate) mod rules;
mod shared;
pub(crate) use shared::Delivery;
mod watch;
pub(crate) use watch::{Herd, Woken};

#[cfg(test)]
mod tests;

pub(crate) use error::{Code, ToolError, ToolFailure};
pub(crate) use export::Reader;
pub(crate) use rules::SlotSpec;

use crate::model::{
    Attached, BotCode, BotOrigin, ChannelList, ChannelView, Created, Event, Invite, Joined,
    MessageKind, MessageView, Posted, Principal, Seat, Seq, SlotDecl, SlotKind, TRANSCRIPT_FORMAT,
    Updated,
};
use crate::quota::Quotas;
use crate::secrets::{self, SecretKind};
use crate::signing::Signer;
use crate::store::{
    ChannelRecord, NewChannel, NewMessage, NewSlot, PreparedBot, ReadTx, SeatSecret, Store, Tx,
};
use crate::transcript::CanonicalJson;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Default and longest long-poll wait of [`Channels::sync`].
pub const DEFAULT_WAIT: Duration = Duration::from_millis(20_000);
pub const MAX_WAIT: Duration = Duration::from_millis(25_000);
/// How often a waiting sync reports progress.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// Default byte budget of one `sync_messages` page (and of a channel
/// resource's messages): see [`Channels::with_max_sync_bytes`].
pub const DEFAULT_MAX_SYNC_BYTES: usize = 1024 * 1024;

/// The channel service. Cheap to clone.
#[derive(Clone)]
pub struct Channels {
    store: Store,
    watch: Arc<watch::Watchers>,
    /// Wake-up reads shared by the waiters of a channel.
    shared: Arc<shared::SharedReads>,
    max_body_bytes: usize,
    /// Sync calls waiting for a message now.
    waiting: Arc<AtomicI64>,
    /// Cancelled at shutdown: waiting syncs return at once.
    shutdown: CancellationToken,
    /// How often a waiting sync reports progress ([`PROGRESS_EVERY`]).
    progress_every: Duration,
    /// Per-principal quotas (none unless [`Channels::with_quotas`]).
    quotas: Quotas,
    /// Byte budget of one page of messages ([`DEFAULT_MAX_SYNC_BYTES`]).
    max_sync_bytes: usize,
    /// Signs the heads of sync results and exports (a key held in memory
    /// unless [`Channels::with_signer`]).
    signer: Signer,
}

/// What `create_channel` asks for.
#[derive(Debug, Clone)]
pub(crate) struct NewChannelRequest {
    pub name: String,
    pub slots: Vec<SlotSpec>,
    pub join_as: Option<String>,
    pub allow_network: bool,
    /// At most one bot at creation, attached to the first bot slot (one is
    /// added if none was listed).
    pub bot: Option<PreparedBot>,
}

/// `update_channel` operations.
#[derive(Debug, Clone)]
pub(crate) enum UpdateOp {
    Rename { name: String },
    Kick { slot: String },
    NewInvite { slot: String },
    Close,
}

/// What `sync_messages` asks for; limits are checked by [`Channels::sync`].
#[derive(Debug, Clone)]
pub(crate) struct SyncRequest {
    pub channel_id: String,
    /// Which seat reads, for a principal with several.
    pub slot: Option<String>,
    pub cursor: Option<Seq>,
    pub limit: Option<usize>,
    /// How long to wait for a first message (default [`DEFAULT_WAIT`]).
    pub wait: Option<Duration>,
}

/// A channel as a resource: the view, and the latest messages as the
/// caller's first seat reads them (none for an admin without a seat).
pub(crate) struct Snapshot {
    pub view: ChannelView,
    pub seat: Option<String>,
    pub messages: Vec<MessageView>,
}

/// Appends a system or control event.
fn announce(tx: &mut dyn Tx, channel_id: &str, event: &Event) -> Result<Seq, ToolError> {
    let body = CanonicalJson::of(event);
    Ok(tx
        .append(channel_id, NewMessage::new("system", event.kind(), &body))?
        .seq)
}

/// Records a bot on `bot_id` and announces it (`bot:attach`, `bot:manifest`).
/// Its hooks start at its own announcement: `on_init` first.
fn attach(
    tx: &mut dyn Tx,
    channel_id: &str,
    bot_id: &str,
    bot: &PreparedBot,
) -> Result<(), ToolError> {
    tx.insert_bot(channel_id, bot_id, bot)?;
    let at = announce(
        tx,
        channel_id,
        &Event::BotAttach {
            bot_id: bot_id.to_string(),
            name: bot.name.clone(),
            code_hash: bot.code_hash.clone(),
            manifest_hash: bot.manifest_hash.clone(),
            network: bot.network,
            seed_commitment: Some(crate::bots::seed::commitment(&bot.seed)),
            params_hash: Some(crate::bots::seed::params_hash(&bot.params)),
            origin: Some(BotOrigin::of(bot.preset.as_deref())),
        },
    )?;
    tx.set_bot_cursor(channel_id, bot_id, at - 1)?;
    announce(
        tx,
        channel_id,
        &Event::BotManifest {
            bot_id: bot_id.to_string(),
            manifest: bot.manifest.clone(),
        },
    )?;
    Ok(())
}

/// Publishes every seeded bot's seed and state salt (`bot:reveal`), in the
/// write that closes the channel: from then on nobody can post or join, so
/// knowing the bots' randomness no longer helps anyone, and everyone can
/// open the seed commitments and replay the hooks (`docs/replay.md`).
fn reveal_seeds(tx: &mut dyn Tx, channel_id: &str) -> Result<(), ToolError> {
    for bot in tx.bots(channel_id)? {
        let Some(rt) = tx.bot_runtime(channel_id, &bot.bot_id)? else {
            continue;
        };
        if let Some(seed) = rt.seed {
            announce(
                tx,
                channel_id,
                &Event::BotReveal {
                    bot_id: bot.bot_id,
                    seed: seed.to_hex(),
                    state_salt: rt.state_salt,
                },
            )?;
        }
    }
    Ok(())
}

/// The channel `id` as `who` may see it, or why not.
fn readable(
    tx: &dyn ReadTx,
    who: &Principal,
    id: &str,
) -> Result<(ChannelRecord, Vec<String>), ToolError> {
    let ch = rules::found(tx.channel(id)?, id)?;
    let seats = tx.seats_of(id, &who.id)?;
    rules::require_reader(&ch, who, &seats)?;
    Ok((ch, seats))
}

/// The view of a channel read in `tx`.
fn view_in(tx: &dyn ReadTx, ch: &ChannelRecord, who: &Principal) -> Result<ChannelView, ToolError> {
    let slots = tx.slots(&ch.id)?;
    let bots = tx.bots(&ch.id)?;
    Ok(rules::channel_view(ch, &slots, &bots, who))
}

/// The admin channel `id`, or why the caller may not administer it.
fn administered(
    tx: &dyn ReadTx,
    who: &Principal,
    id: &str,
    what: &str,
) -> Result<ChannelRecord, ToolError> {
    let ch = rules::found(tx.channel(id)?, id)?;
    rules::require_admin(&ch, who, what)?;
    Ok(ch)
}

impl Channels {
    /// The service over `store`; its long-poll wake-ups follow the store's
    /// commit bus.
    pub fn new(store: Store, max_body_bytes: usize, shutdown: CancellationToken) -> Self {
        let watch = Arc::new(watch::Watchers::default());
        let w = watch.clone();
        store
            .bus()
            .subscribe_at(crate::store::Phase::AfterAnswers, move |c| w.committed(c));
        Channels {
            store,
            watch,
            shared: Arc::default(),
            max_body_bytes,
            waiting: Arc::default(),
            shutdown,
            progress_every: PROGRESS_EVERY,
            quotas: Quotas::unlimited(),
            max_sync_bytes: DEFAULT_MAX_SYNC_BYTES,
            signer: Signer::ephemeral(),
        }
    }

    /// The same service, signing heads with `signer`'s key.
    pub(crate) fn with_signer(mut self, signer: Signer) -> Self {
        self.signer = signer;
        self
    }

    /// The same service, enforcing `quotas` on posts and new channels.
    pub(crate) fn with_quotas(mut self, quotas: Quotas) -> Self {
        self.quotas = quotas;
        self
    }

    /// The same service, with pages of messages (a `sync_messages` result,
    /// a channel resource) that stop before the message that would take them
    /// past `bytes` ([`StoredMessage::page_bytes`](crate::store::StoredMessage::page_bytes)
    /// each), and say that more is waiting. A page always holds at least one
    /// message, so a reader is never stuck. Bounds the memory one read takes
    /// and the size of the answer a slow client is sent.
    pub fn with_max_sync_bytes(mut self, bytes: usize) -> Self {
        self.max_sync_bytes = bytes;
        self
    }

    /// The store (for start-up and shutdown).
    /// A receiver that changes on every commit in `channel_id`: the page's
    /// event streams wait on it as waiting syncs do.
    pub(crate) fn watch_commits(&self, channel_id: &str) -> tokio::sync::watch::Receiver<u64> {
        self.watch.subscribe(channel_id)
    }

    /// The byte budget of one page of messages.
    pub fn max_sync_bytes(&self) -> usize {
        self.max_sync_bytes
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Sync calls waiting for a message now.
    pub fn waiting(&self) -> i64 {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Creates a channel whose admin is `who`, with one invite per open
    /// player slot and, with `join_as`, the creator's seat.
    ///
    /// # Errors
    /// `BAD_REQUEST`/`UNKNOWN_SLOT` for a bad name or slot list.
    pub async fn create(
        &self,
        who: &Principal,
        req: NewChannelRequest,
    ) -> Result<Created, ToolError> {
        let name = rules::channel_name(&req.name)?;
        let slots = rules::channel_slots(req.slots, req.bot.is_some(), req.join_as.as_deref())?;
        let channel_id = secrets::new_id("ch_");
        let mut invites = Vec::new();
        let mut invite_hashes = Vec::new();
        let mut seat = None;
        for s in slots.iter().filter(|s| s.kind == SlotKind::Invite) {
            if req.join_as.as_deref() == Some(s.label.as_str()) {
                let rejoin_token = secrets::new_secret(SecretKind::Rejoin);
                seat = Some(Seat {
                    slot: s.label.clone(),
                    rejoin_token,
                });
            } else {
                let code = secrets::new_secret(SecretKind::Invite);
                invite_hashes.push((s.label.clone(), secrets::hash_secret(&code)));
                invites.push(Invite {
                    slot: s.label.clone(),
                    invite_code: code,
                });
            }
        }
        invites.sort_by(|a, b| a.slot.cmp(&b.slot));
        let seat_hash = seat
            .as_ref()
            .map(|s| (s.slot.clone(), secrets::hash_secret(&s.rejoin_token)));
        let who = who.clone();
        let cid = channel_id.clone();
        let allow_network = req.allow_network;
        let bot = req.bot;
        let quotas = self.quotas.clone();
        let view = self
            .store
            .write(move |tx: &mut dyn Tx| {
                quotas.check_create(tx, &who.id, secrets::now_ms())?;
                tx.insert_channel(&NewChannel {
                    id: &cid,
                    name: &name,
                    admin: &who.id,
                    allow_network,
                })?;
                for (position, s) in slots.iter().enumerate() {
                    let invite_hash = invite_hashes
                        .iter()
                        .find(|(l, _)| l == &s.label)
                        .map(|(_, h)| h.as_slice());
                    let holder = match &seat_hash {
                        Some((l, h)) if l == &s.label => Some((who.id.as_str(), h.as_slice())),
                        _ => None,
                    };
                    tx.insert_slot(
                        &cid,
                        &NewSlot {
                            label: &s.label,
                            kind: s.kind,
                            position,
                            holder,
                            invite_hash,
                        },
                    )?;
                }
                announce(
                    tx,
                    &cid,
                    &Event::ChannelCreated {
                        name: name.clone(),
                        slots: slots
                            .iter()
                            .map(|s| SlotDecl {
                                label: s.label.clone(),
                                kind: s.kind,
                            })
                            .collect(),
                        allow_network,
                        transcript_format: Some(TRANSCRIPT_FORMAT),
                    },
                )?;
                // The bot first, so that its on_init runs before on_join of
                // the creator's seat.
                if let Some(bot) = &bot {
                    let bot_id = slots
                        .iter()
                        .find(|s| s.kind == SlotKind::Bot)
                        .map_or("bot:referee", |s| s.label.as_str());
                    attach(tx, &cid, bot_id, bot)?;
                }
                if let Some((label, _)) = &seat_hash {
                    announce(
                        tx,
                        &cid,
                        &Event::SeatFilled {
                            slot: label.clone(),
                        },
                    )?;
                }
                let ch = rules::found(tx.channel(&cid)?, &cid)?;
                view_in(tx, &ch, &who)
            })
            .await?;
        Ok(Created {
            channel_id,
            invites,
            view,
            seat,
        })
    }

    /// Fills a slot with an invite code, or moves a seat with a rejoin token.
    ///
    /// # Errors
    /// `INVITE_INVALID`/`REJOIN_TOKEN_INVALID` for an unknown or spent
    /// secret, `CHANNEL_CLOSED`, `SLOT_ALREADY_FILLED`.
    pub async fn join(&self, who: &Principal, code: &str) -> Result<Joined, ToolError> {
        let code = code.trim();
        let which = if code.starts_with(SecretKind::Rejoin.prefix()) {
            SeatSecret::Rejoin
        } else if code.starts_with(SecretKind::Invite.prefix()) {
            SeatSecret::Invite
        } else {
            return Err(ToolError::new(
                Code::InviteInvalid,
                "That is not an invite code or rejoin token (they start with mcpmp_inv_ or mcpmp_rj_). Ask the channel's creator for an invite.",
            ));
        };
        let h = secrets::hash_secret(code);
        let who = who.clone();
        let rejoin_token = secrets::new_secret(SecretKind::Rejoin);
        let new_hash = secrets::hash_secret(&rejoin_token);
        let (channel_id, slot, view) = self
            .store
            .write(move |tx: &mut dyn Tx| {
                let Some(seat) = tx.seat_by_secret(which, &h)? else {
                    return Err(match which {
                        SeatSecret::Rejoin => ToolError::new(
                            Code::RejoinTokenInvalid,
                            "This rejoin token is not valid: it was replaced when it was last used, or the seat was taken back by the admin.",
                        ),
                        SeatSecret::Invite => ToolError::new(
                            Code::InviteInvalid,
                            "This invite code is not valid: invites are single-use and this one was already used, replaced, or never existed. Ask the channel's admin for a new invite.",
                        ),
                    });
                };
                if !secrets::hashes_equal(&seat.stored_hash, &h) {
                    return Err(ToolError::new(Code::InviteInvalid, "This invite code is not valid."));
                }
                if seat.channel_closed {
                    return Err(ToolError::new(Code::ChannelClosed, "This channel is closed; no one can join it."));
                }
                if which == SeatSecret::Invite && seat.holder.is_some() {
                    return Err(ToolError::new(
                        Code::SlotAlreadyFilled,
                        format!("Slot {:?} is already filled.", seat.label),
                    ));
                }
                tx.fill_seat(&seat.channel_id, &seat.label, &who.id, &new_hash)?;
                let event = match which {
                    SeatSecret::Rejoin => Event::SeatMoved { slot: seat.label.clone() },
                    SeatSecret::Invite => Event::SeatFilled { slot: seat.label.clone() },
                };
                announce(tx, &seat.channel_id, &event)?;
                let ch = rules::found(tx.channel(&seat.channel_id)?, &seat.channel_id)?;
                let view = view_in(tx, &ch, &who)?;
                Ok::<_, ToolError>((seat.channel_id, seat.label, view))
            })
            .await?;
        Ok(Joined {
            channel_id,
            slot,
            rejoin_token,
            moved: which == SeatSecret::Rejoin,
            bots: view.bots.clone(),
            view,
        })
    }

    /// Appends a user message from the caller's seat.
    ///
    /// # Errors
    /// `BAD_REQUEST` for a bad body or recipient list, the seat errors of
    /// [`rules::resolve_seat`], `CHANNEL_CLOSED`, `UNKNOWN_SLOT` for an
    /// unknown recipient.
    pub async fn post(
        &self,
        who: &Principal,
        channel_id: &str,
        slot: Option<&str>,
        body: &Value,
        to: Option<Vec<String>>,
    ) -> Result<Posted, ToolError> {
        let body = rules::message_body(body, self.max_body_bytes)?;
        let to = rules::recipients(to)?;
        self.quotas.take_post(&who.id)?;
        let who = who.clone();
        let cid = channel_id.to_string();
        let slot = slot.map(str::to_string);
        let quotas = self.quotas.clone();
        self.store
            .write(move |tx: &mut dyn Tx| {
                let ch = rules::found(tx.channel(&cid)?, &cid)?;
                let sender = rules::resolve_seat(&tx.seats_of(&cid, &who.id)?, slot.as_deref())?;
                rules::require_open(&ch, "it can be read but not posted to")?;
                if let Some(to) = &to {
                    rules::recipients_exist(to, &tx.slots(&cid)?)?;
                }
                quotas.charge_post(tx, &ch, &who.id, body.len() as u64, secrets::now_ms())?;
                let a = tx.append(
                    &cid,
                    NewMessage {
                        to: to.as_deref(),
                        ..NewMessage::new(&sender, MessageKind::User, &body)
                    },
                )?;
                Ok(Posted {
                    msg_id: format!("{cid}:{}", a.seq),
                    seq: a.seq,
                    hash: a.hash,
                    sender,
                })
            })
            .await
    }

    /// [`Channels::sync_shared`], its answer owned (tests).
    #[cfg(test)]
    pub async fn sync(
        &self,
        who: &Principal,
        req: SyncRequest,
        progress: Option<&mut (dyn FnMut(u32) + Send)>,
        cancel: &CancellationToken,
    ) -> Result<crate::model::Synced, ToolError> {
        Ok(self
            .sync_shared(who, req, progress, cancel)
            .await?
            .into_synced())
    }

    /// Messages after the cursor as the caller's seat may see them, with the
    /// view. When there are none it waits (up to `req.wait`) for a commit in
    /// the channel, calling `progress` every [`PROGRESS_EVERY`] with a
    /// counter; it returns at once when `cancel` fires or the daemon shuts
    /// down. The caller's credential and seat are checked in the same
    /// snapshot as every read, at the start and after every wake-up, so a
    /// waiter whose token was revoked or whose seat was taken gets an error,
    /// never a message committed after that.
    ///
    /// # Errors
    /// `BAD_REQUEST` for a bad cursor, limit or wait; `CHANNEL_NOT_FOUND`;
    /// `TOKEN_INVALID` once the caller's token is revoked or expired; the
    /// seat errors of [`rules::resolve_seat`].
    ///
    /// The answer is the [`Delivery`] this caller shares with every waiter
    /// that woke with it and sees the same (one principal, seat and page):
    /// render it once for all of them.
    pub(crate) async fn sync_shared(
        &self,
        who: &Principal,
        req: SyncRequest,
        progress: Option<&mut (dyn FnMut(u32) + Send)>,
        cancel: &CancellationToken,
    ) -> Result<Arc<Delivery>, ToolError> {
        self.sync_woken(who, req, progress, cancel, &mut None, None)
            .await
    }

    /// [`Channels::sync_shared`], leaving in `woken` the wake-up that ended
    /// its wait, if a commit woke it: its channel's [`watch::Herd`] counts
    /// it until the caller drops it (when the answer is handed over).
    /// `on_park` is told when the call first has to wait (its first read
    /// found nothing to deliver).
    pub(crate) async fn sync_woken(
        &self,
        who: &Principal,
        req: SyncRequest,
        mut progress: Option<&mut (dyn FnMut(u32) + Send)>,
        cancel: &CancellationToken,
        woken: &mut Option<watch::Woken>,
        mut on_park: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> Result<Arc<Delivery>, ToolError> {
        let (cursor, limit) = rules::sync_window(req.cursor, req.limit)?;
        let wait = req.wait.unwrap_or(DEFAULT_WAIT).min(MAX_WAIT);
        let max_bytes = self.max_sync_bytes;
        // Subscribe before reading: a commit between the read and the wait
        // still marks the receiver changed.
        let mut rx = self.watch.subscribe(&req.channel_id);
        let start = tokio::time::Instant::now();
        let deadline = start + wait;
        let mut next_progress = start + self.progress_every;
        let mut ticks = 0u32;
        let mut last_read = false;
        let mut gauge = None;
        loop {
            if tokio::time::Instant::now() >= deadline {
                last_read = true;
            }
            // Checked again at every wake-up, in the snapshot the messages
            // are read from: a token revoked or a seat lost before a message
            // committed keeps it from this call. Waiters of one channel
            // waking together share that snapshot (see `shared`).
            let synced = self
                .shared
                .read(
                    &self.store,
                    &self.signer,
                    &req.channel_id,
                    shared::SyncRead {
                        who: who.clone(),
                        slot: req.slot.clone(),
                        cursor,
                        limit,
                        max_bytes,
                        last_read,
                    },
                )
                .await?;
            if let Some(delivery) = synced {
                // Signed after the read (see `shared`): every message
                // returned is covered by a signature the reader holds.
                return Ok(delivery);
            }
            gauge.get_or_insert_with(|| WaitingGuard::new(&self.waiting));
            let wake_at = if progress.is_some() {
                next_progress.min(deadline)
            } else {
                deadline
            };
            // Parked again: the last wake-up (if any) is resolved.
            *woken = None;
            let parked = self.watch.park(&req.channel_id);
            if let Some(tell) = on_park.take() {
                let _ = tell.send(());
            }
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        // The sender went away (every receiver had gone); resubscribe.
                        rx = self.watch.subscribe(&req.channel_id);
                    } else {
                        rx.borrow_and_update();
                    }
                }
                _ = tokio::time::sleep_until(wake_at) => {
                    if let Some(p) = progress.as_mut()
                        && tokio::time::Instant::now() >= next_progress
                    {
                        ticks += 1;
                        next_progress += self.progress_every;
                        p(ticks);
                    }
                }
                _ = cancel.cancelled() => last_read = true,
                _ = self.shutdown.cancelled() => last_read = true,
            }
            *woken = self.watch.unpark(parked);
        }
    }

    /// The channel as members see it.
    ///
    /// # Errors
    /// `CHANNEL_NOT_FOUND`, `NOT_MEMBER`.
    pub async fn view(&self, who: &Principal, channel_id: &str) -> Result<ChannelView, ToolError> {
        let who = who.clone();
        let cid = channel_id.to_string();
        let mut view = self
            .store
            .read(move |tx: &dyn ReadTx| {
                let (ch, _) = readable(tx, &who, &cid)?;
                view_in(tx, &ch, &who)
            })
            .await?;
        view.signing_key = Some(self.signer.key_id().to_string());
        Ok(view)
    }

    /// Which of `who` may read the channel now: a credential that is still
    /// good, and a seat (or the admin's role). Asked before every resource
    /// notification, so a subscriber kicked or revoked stops hearing of the
    /// channel. A channel that is gone has no readers.
    ///
    /// # Errors
    /// Only storage failures (`INTERNAL`).
    pub async fn readers_among(
        &self,
        channel_id: &str,
        who: Vec<Principal>,
    ) -> Result<Vec<bool>, ToolError> {
        let cid = channel_id.to_string();
        self.store
            .read(move |tx: &dyn ReadTx| {
                let Some(ch) = tx.channel(&cid)? else {
                    return Ok(vec![false; who.len()]);
                };
                who.iter()
                    .map(|w| {
                        let seats = tx.seats_of(&cid, &w.id)?;
                        Ok(tx.credential_valid(&w.credential)?
                            && rules::require_reader(&ch, w, &seats).is_ok())
                    })
                    .collect::<Result<Vec<bool>, ToolError>>()
            })
            .await
    }

    /// The view and the latest messages (at most [`rules::DEFAULT_SYNC_LIMIT`]
    /// and the page byte budget, oldest first), for a `channel://` resource.
    ///
    /// # Errors
    /// `CHANNEL_NOT_FOUND`, `NOT_MEMBER`.
    pub async fn snapshot(&self, who: &Principal, channel_id: &str) -> Result<Snapshot, ToolError> {
        let who = who.clone();
        let cid = channel_id.to_string();
        let max_bytes = self.max_sync_bytes;
        self.store
            .read(move |tx: &dyn ReadTx| {
                let (ch, seats) = readable(tx, &who, &cid)?;
                let slots = tx.slots(&cid)?;
                let bots = tx.bots(&cid)?;
                let view = rules::channel_view(&ch, &slots, &bots, &who);
                let seat = seats.into_iter().next();
                let mut messages = Vec::new();
                if let Some(seat) = &seat {
                    let reader = rules::SeatReader::of(&slots, seat);
                    let limit = rules::DEFAULT_SYNC_LIMIT;
                    let from = (ch.last_seq - limit as i64).max(0);
                    messages = tx
                        .messages_page(&cid, from, limit, max_bytes, &|m| {
                            rules::shown_to(m, &reader)
                        })?
                        .iter()
                        .map(|m| rules::message_view(m, &reader))
                        .collect();
                }
                Ok(Snapshot {
                    view,
                    seat,
                    messages,
                })
            })
            .await
    }

    /// One page of the caller's channels, newest first: at most `limit`
    /// (brought into 1..=[`rules::MAX_LIST_LIMIT`]), after the page that
    /// returned `cursor`, with the cursor of the next page when more follow.
    ///
    /// # Errors
    /// `BAD_REQUEST` for a cursor this method did not return; storage
    /// failures (`INTERNAL`).
    pub async fn list_page(
        &self,
        who: &Principal,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<ChannelList, ToolError> {
        let who = who.clone();
        let after = cursor.map(rules::parse_list_cursor).transpose()?;
        let limit = limit.clamp(1, rules::MAX_LIST_LIMIT);
        self.store
            .read(move |tx: &dyn ReadTx| {
                // One more than asked: whether it exists says if a page follows.
                let mut page = tx.channels_of(&who.id, after.as_ref(), limit + 1)?;
                let more = page.len() > limit;
                page.truncate(limit);
                let next_cursor = more.then(|| page.last().map(rules::list_cursor)).flatten();
                let mut channels = Vec::with_capacity(page.len());
                for ch in &page {
                    let seats = tx.seats_of(&ch.id, &who.id)?;
                    channels.push(rules::summary(ch, &who, seats));
                }
                Ok(ChannelList {
                    channels,
                    next_cursor,
                    clamped: Vec::new(),
                })
            })
            .await
    }

    /// The first page of the caller's channels ([`rules::DEFAULT_LIST_LIMIT`]).
    ///
    /// # Errors
    /// As [`Channels::list_page`].
    #[cfg(test)]
    pub async fn list(&self, who: &Principal) -> Result<ChannelList, ToolError> {
        self.list_page(who, None, rules::DEFAULT_LIST_LIMIT).await
    }

    /// Admin operations: rename, kick, new_invite, close.
    ///
    /// # Errors
    /// `CHANNEL_NOT_FOUND`, `NOT_ADMIN`, `BAD_REQUEST` for a bad name,
    /// `UNKNOWN_SLOT` for a slot that is not a player slot,
    /// `SLOT_ALREADY_FILLED` for a new invite to a held seat.
    pub async fn update(
        &self,
        who: &Principal,
        channel_id: &str,
        op: UpdateOp,
    ) -> Result<Updated, ToolError> {
        // Every operation but new_invite appends an announcement: paced
        // like posts, so an admin cannot fill a transcript with renames.
        if !matches!(op, UpdateOp::NewInvite { .. }) {
            self.quotas.take_post(&who.id)?;
        }
        let who = who.clone();
        let cid = channel_id.to_string();
        let fresh_invite = secrets::new_secret(SecretKind::Invite);
        let invite_hash = secrets::hash_secret(&fresh_invite);
        self.store
            .write(move |tx: &mut dyn Tx| {
                let ch = administered(tx, &who, &cid, "do this")?;
                match op {
                    UpdateOp::Rename { name } => {
                        let name = rules::channel_name(&name)?;
                        tx.rename_channel(&cid, &name)?;
                        announce(tx, &cid, &Event::ChannelRenamed { name: name.clone() })?;
                        Ok(Updated {
                            renamed: Some(name),
                            ..Updated::default()
                        })
                    }
                    UpdateOp::Kick { slot } => {
                        rules::player_slot(&tx.slots(&cid)?, &slot)?;
                        // The seat's private history stays with the holder
                        // it was written for: everything before the kick is
                        // sealed for whoever holds the seat next
                        // (`rules::SeatReader`).
                        let kicked =
                            announce(tx, &cid, &Event::SeatKicked { slot: slot.clone() })?;
                        tx.free_seat(&cid, &slot, &invite_hash, kicked)?;
                        Ok(Updated {
                            kicked: Some(slot.clone()),
                            invite: Some(Invite {
                                slot,
                                invite_code: fresh_invite,
                            }),
                            ..Updated::default()
                        })
                    }
                    UpdateOp::NewInvite { slot } => {
                        let slots = tx.slots(&cid)?;
                        if rules::player_slot(&slots, &slot)?.holder.is_some() {
                            return Err(ToolError::new(
                                Code::SlotAlreadyFilled,
                                format!("Slot {slot:?} is filled; kick its holder first to reissue its invite."),
                            ));
                        }
                        tx.set_invite(&cid, &slot, &invite_hash)?;
                        Ok(Updated {
                            invite: Some(Invite {
                                slot,
                                invite_code: fresh_invite,
                            }),
                            ..Updated::default()
                        })
                    }
                    UpdateOp::Close => {
                        if !ch.closed {
                            tx.close_channel(&cid)?;
                            announce(tx, &cid, &Event::ChannelClosed)?;
                            reveal_seeds(tx, &cid)?;
                        }
                        Ok(Updated {
                            closed: Some(true),
                            ..Updated::default()
                        })
                    }
                }
            })
            .await
    }

    /// The channel, if `who` administers it and it is open to a new bot (the
    /// check before the bot is prepared; [`Channels::attach_bot`] repeats it
    /// in its write).
    ///
    /// # Errors
    /// `CHANNEL_NOT_FOUND`, `NOT_MEMBER` for a stranger, `NOT_ADMIN`,
    /// `CHANNEL_CLOSED`.
    pub async fn bot_admin(
        &self,
        who: &Principal,
        channel_id: &str,
    ) -> Result<ChannelRecord, ToolError> {
        let who = who.clone();
        let cid = channel_id.to_string();
        self.store
            .read(move |tx: &dyn ReadTx| {
                let (ch, _) = readable(tx, &who, &cid)?;
                rules::require_admin(&ch, &who, "attach bots")?;
                rules::require_open(&ch, "no bot can be attached")?;
                Ok(ch)
            })
            .await
    }

    /// Attaches a prepared bot to a new bot slot (admin only). `slot` names
    /// the slot (default: from the bot's name).
    ///
    /// # Errors
    /// As [`Channels::bot_admin`]; `BAD_REQUEST` for a bad slot name or a
    /// full channel; `SLOT_ALREADY_FILLED` when that slot has a bot.
    pub async fn attach_bot(
        &self,
        who: &Principal,
        channel_id: &str,
        slot: Option<String>,
        bot: PreparedBot,
    ) -> Result<Attached, ToolError> {
        let who = who.clone();
        let cid = channel_id.to_string();
        let spec = SlotSpec::parse(&format!(
            "bot:{}",
            slot.as_deref()
                .map(|s| s.trim_start_matches("bot:").to_string())
                .unwrap_or_else(|| bot.name.to_lowercase())
        ))?;
        self.store
            .write(move |tx: &mut dyn Tx| {
                let ch = administered(tx, &who, &cid, "attach bots")?;
                rules::require_open(&ch, "no bot can be attached")?;
                let slots = tx.slots(&cid)?;
                match slots.iter().find(|s| s.label == spec.label) {
                    Some(s) if s.has_bot => {
                        return Err(ToolError::new(
                            Code::SlotAlreadyFilled,
                            format!(
                                "{:?} already has a bot; choose another slot name",
                                spec.label
                            ),
                        ));
                    }
                    Some(_) => {}
                    None => {
                        if slots.len() >= rules::MAX_SLOTS {
                            return Err(ToolError::bad(format!(
                                "at most {} slots",
                                rules::MAX_SLOTS
                            )));
                        }
                        tx.insert_slot(
                            &cid,
                            &NewSlot {
                                label: &spec.label,
                                kind: SlotKind::Bot,
                                position: slots.len(),
                                holder: None,
                                invite_hash: None,
                            },
                        )?;
                    }
                }
                attach(tx, &cid, &spec.label, &bot)?;
                Ok(Attached {
                    bot_id: spec.label,
                    origin: BotOrigin::of(bot.preset.as_deref()),
                    name: bot.name,
                    code_hash: bot.code_hash,
                    manifest_hash: bot.manifest_hash,
                    network: bot.network,
                })
            })
            .await
    }

    /// A bot's exact source and manifest (members only).
    ///
    /// # Errors
    /// `CHANNEL_NOT_FOUND`, `NOT_MEMBER`, `UNKNOWN_SLOT` (with the bots).
    pub async fn bot_code(
        &self,
        who: &Principal,
        channel_id: &str,
        bot_id: &str,
    ) -> Result<BotCode, ToolError> {
        let who = who.clone();
        let cid = channel_id.to_string();
        let bid = if bot_id.starts_with("bot:") {
            bot_id.to_string()
        } else {
            format!("bot:{bot_id}")
        };
        self.store
            .read(move |tx: &dyn ReadTx| {
                readable(tx, &who, &cid)?;
                let bots = tx.bots(&cid)?;
                let found = bots.iter().find(|b| b.bot_id == bid);
                let (Some(b), Some(rt)) = (found, tx.bot_runtime(&cid, &bid)?) else {
                    let ids: Vec<&str> = bots.iter().map(|b| b.bot_id.as_str()).collect();
                    return Err(ToolError::new(
                        Code::UnknownSlot,
                        format!("no bot {bid:?} in this channel"),
                    )
                    .with_data(json!({"bots": ids})));
                };
                Ok(bot_code_of(&cid, b, rt))
            })
            .await
    }
}

/// A bot's code as `get_bot_code` and exports give it.
fn bot_code_of(
    channel_id: &str,
    b: &crate::store::BotRecord,
    rt: crate::store::BotRuntime,
) -> BotCode {
    BotCode {
        channel_id: channel_id.to_string(),
        bot_id: b.bot_id.clone(),
        name: b.name.clone(),
        preset: b.preset.as_deref().map(crate::bots::presets::canonical),
        source: rt.source,
        code_hash: b.code_hash.clone(),
        manifest: b.manifest.clone(),
        manifest_hash: b.manifest_hash.clone(),
        network: b.network,
        params: rt.params,
    }
}

/// Counts one waiting sync while alive.
struct WaitingGuard(Arc<AtomicI64>);

impl WaitingGuard {
    fn new(gauge: &Arc<AtomicI64>) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        WaitingGuard(gauge.clone())
    }
}

impl Drop for WaitingGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
