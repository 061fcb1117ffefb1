//! Channels, slots, seats and messages: the domain logic behind the MCP tools.
//!
//! Identity (DESIGN §3): a seat belongs to a principal, never to an MCP
//! session, so reconnecting clients keep their seats. Invites are single-use;
//! a rejoin token moves a seat to whoever presents it and is replaced on use.
//! Secrets are stored as hashes and never appear in views or messages; senders
//! are slot labels.
//!
//! Every change is one write through [`Store::write`], so it commits with the
//! transcript entry that announces it, and is acknowledged only once durable.

mod error;
pub mod watch;

pub use error::{Code, ToolError};

use crate::secrets::{self, SecretKind};
use crate::store::Store;
use crate::transcript;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Who is calling: resolved from the bearer token on every request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub id: String,
    pub name: String,
}

/// Most slots one channel may have.
pub const MAX_SLOTS: usize = 16;
/// Longest channel name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Messages one `sync_messages` returns by default and at most.
pub const DEFAULT_SYNC_LIMIT: usize = 100;
pub const MAX_SYNC_LIMIT: usize = 500;

/// Kind of a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotKind {
    Invite,
    Bot,
}

impl SlotKind {
    fn as_str(self) -> &'static str {
        match self {
            SlotKind::Invite => "invite",
            SlotKind::Bot => "bot",
        }
    }
}

/// A slot as `create_channel` names it: `invite:alice`, `bot:referee`, or a
/// bare label (an invite slot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotSpec {
    pub kind: SlotKind,
    /// `alice` or `bot:referee`: how the slot appears as a sender.
    pub label: String,
}

impl SlotSpec {
    /// Parses one entry of `slots[]`.
    pub fn parse(s: &str) -> Result<SlotSpec, ToolError> {
        let (kind, name) = match s.split_once(':') {
            Some(("invite", n)) => (SlotKind::Invite, n),
            Some(("bot", n)) => (SlotKind::Bot, n),
            Some((other, _)) => {
                return Err(ToolError::bad(format!(
                    "slot {s:?} has kind {other:?}; use \"invite:NAME\" for a player or \"bot:NAME\" for a bot"
                )));
            }
            None => (SlotKind::Invite, s),
        };
        let valid = !name.is_empty()
            && name.len() <= 32
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            return Err(ToolError::bad(format!(
                "slot {s:?}: a slot name is 1-32 letters, digits, '_' or '-'"
            )));
        }
        let label = match kind {
            SlotKind::Invite => name.to_string(),
            SlotKind::Bot => format!("bot:{name}"),
        };
        Ok(SlotSpec { kind, label })
    }
}

/// A bot ready to be attached: prepared (source read, hashes computed,
/// language layer passed) by the `bots` module.
#[derive(Debug, Clone)]
pub struct BotAttachment {
    pub name: String,
    pub preset: Option<String>,
    pub source: String,
    pub code_hash: String,
    pub manifest: Value,
    pub manifest_hash: String,
    pub params: Value,
    pub network: bool,
}

/// What `create_channel` needs.
#[derive(Debug, Clone)]
pub struct NewChannel {
    pub name: String,
    pub slots: Vec<SlotSpec>,
    pub join_as: Option<String>,
    pub allow_network: bool,
    /// At most one bot at creation, attached to the first bot slot (one is
    /// added if none was listed).
    pub bot: Option<BotAttachment>,
}

/// A transcript entry as stored.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub channel_id: String,
    pub seq: i64,
    pub sender: String,
    pub kind: String,
    pub body: Value,
    pub to: Option<Vec<String>>,
    pub body_hash: String,
    /// Salt of a private message's `body_hash`, shown to its readers only.
    pub body_salt: Option<String>,
    pub ts: String,
    pub hash: String,
}

impl StoredMessage {
    /// The message as `viewer` (a slot label) may see it: whole if public, if
    /// the viewer sent it or is a recipient; otherwise without its body, which
    /// the chain covers by `body_hash`.
    pub fn view_for(&self, viewer: &str) -> Value {
        let mut m = json!({
            "seq": self.seq, "channel_id": self.channel_id, "sender": self.sender,
            "kind": self.kind, "ts": self.ts, "hash": self.hash,
        });
        match &self.to {
            None => m["body"] = self.body.clone(),
            Some(to) => {
                m["to"] = json!(to);
                if self.readable_by(viewer) {
                    m["body"] = self.body.clone();
                    m["body_salt"] = json!(self.body_salt);
                } else {
                    m["body_hash"] = json!(self.body_hash);
                    m["redacted"] = json!(true);
                }
            }
        }
        m
    }

    /// Whether a bot (or player) labelled `viewer` may read the body.
    pub fn readable_by(&self, viewer: &str) -> bool {
        match &self.to {
            None => true,
            Some(to) => self.sender == viewer || to.iter().any(|t| t == viewer),
        }
    }
}

/// The channel service: store plus the long-poll watchers.
#[derive(Clone)]
pub struct Channels {
    pub store: Store,
    pub watch: Arc<watch::Watchers>,
    pub max_body_bytes: usize,
}

/// Result of a join.
#[derive(Debug)]
pub struct Joined {
    pub channel_id: String,
    pub slot: String,
    pub rejoin_token: String,
    pub moved: bool,
    pub seq: i64,
}

impl Channels {
    pub fn new(store: Store, max_body_bytes: usize) -> Self {
        Channels {
            store,
            watch: Arc::new(watch::Watchers::default()),
            max_body_bytes,
        }
    }

    /// Creates a channel. Returns the id, one invite per open invite slot and,
    /// with `join_as`, the creator's rejoin token.
    pub async fn create(
        &self,
        who: &Principal,
        spec: NewChannel,
    ) -> Result<(String, BTreeMap<String, String>, Option<String>), ToolError> {
        let name = spec.name.trim().to_string();
        if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
            return Err(ToolError::bad(format!(
                "name must be 1-{MAX_NAME_CHARS} characters"
            )));
        }
        let mut slots = spec.slots;
        if spec.bot.is_some() && !slots.iter().any(|s| s.kind == SlotKind::Bot) {
            slots.push(SlotSpec {
                kind: SlotKind::Bot,
                label: "bot:referee".into(),
            });
        }
        if slots.iter().filter(|s| s.kind == SlotKind::Invite).count() == 0 {
            return Err(ToolError::bad(
                "slots must name at least one player slot, e.g. [\"invite:alice\", \"invite:bob\"]",
            ));
        }
        if slots.len() > MAX_SLOTS {
            return Err(ToolError::bad(format!("at most {MAX_SLOTS} slots")));
        }
        let mut seen = std::collections::HashSet::new();
        for s in &slots {
            if !seen.insert(s.label.clone()) {
                return Err(ToolError::bad(format!(
                    "slot {:?} is listed twice",
                    s.label
                )));
            }
        }
        if let Some(j) = &spec.join_as
            && !slots
                .iter()
                .any(|s| s.kind == SlotKind::Invite && &s.label == j)
        {
            return Err(ToolError::new(
                Code::UnknownSlot,
                format!("join_as {j:?} is not one of the player slots of this channel"),
            ));
        }
        let channel_id = secrets::new_id("ch_");
        let mut invites = BTreeMap::new();
        let mut invite_hashes = Vec::new();
        let mut rejoin = None;
        for s in slots.iter().filter(|s| s.kind == SlotKind::Invite) {
            if spec.join_as.as_deref() == Some(s.label.as_str()) {
                let r = secrets::new_secret(SecretKind::Rejoin);
                rejoin = Some((s.label.clone(), r));
            } else {
                let code = secrets::new_secret(SecretKind::Invite);
                invite_hashes.push((s.label.clone(), secrets::hash_secret(&code)));
                invites.insert(s.label.clone(), code);
            }
        }
        let who = who.clone();
        let cid = channel_id.clone();
        let rejoin_hash = rejoin
            .as_ref()
            .map(|(l, r)| (l.clone(), secrets::hash_secret(r)));
        let allow_network = spec.allow_network;
        let bot = spec.bot;
        let last = self
            .store
            .write(move |c: &Connection| {
                let now = secrets::now_ms();
                c.execute(
                    "INSERT INTO channels (id, name, admin_principal, created_at, allow_network, head_hash)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![cid, name, who.id, now, allow_network as i64, transcript::GENESIS],
                )?;
                for (pos, s) in slots.iter().enumerate() {
                    let inv = invite_hashes.iter().find(|(l, _)| l == &s.label).map(|(_, h)| h.clone());
                    let (holder, rj) = match &rejoin_hash {
                        Some((l, h)) if l == &s.label => (Some(who.id.clone()), Some(h.clone())),
                        _ => (None, None),
                    };
                    c.execute(
                        "INSERT INTO slots (channel_id, label, kind, position, principal_id, invite_hash, rejoin_hash, joined_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                        params![cid, s.label, s.kind.as_str(), pos as i64, holder, inv, rj,
                                holder.as_ref().map(|_| now)],
                    )?;
                }
                let slot_list: Vec<Value> = slots
                    .iter()
                    .map(|s| json!({"label": s.label, "kind": s.kind.as_str()}))
                    .collect();
                let mut last = append(
                    c,
                    &cid,
                    "system",
                    "system",
                    &json!({"type": "channel:created", "name": name, "slots": slot_list,
                            "allow_network": allow_network}),
                    None,
                )?;
                // The bot first, so that its on_init runs before on_join of
                // the creator's seat.
                if let Some(bot) = &bot {
                    let bot_id = slots
                        .iter()
                        .find(|s| s.kind == SlotKind::Bot)
                        .map(|s| s.label.clone())
                        .unwrap_or_else(|| "bot:referee".into());
                    last = insert_bot(c, &cid, &bot_id, bot)?;
                }
                if let Some((label, _)) = &rejoin_hash {
                    last = append(c, &cid, "system", "system",
                        &json!({"type": "seat:filled", "slot": label}), None)?;
                }
                Ok::<_, ToolError>(last)
            })
            .await?;
        self.watch.notify(&channel_id, last);
        Ok((channel_id, invites, rejoin.map(|(_, r)| r)))
    }

    /// Fills a slot with an invite code, or moves a seat with a rejoin token.
    pub async fn join(&self, who: &Principal, code: &str) -> Result<Joined, ToolError> {
        let code = code.trim().to_string();
        let is_rejoin = code.starts_with(SecretKind::Rejoin.prefix());
        if !is_rejoin && !code.starts_with(SecretKind::Invite.prefix()) {
            return Err(ToolError::new(
                Code::InviteInvalid,
                "That is not an invite code or rejoin token (they start with mcpmp_inv_ or mcpmp_rj_). Ask the channel's creator for an invite.",
            ));
        }
        let h = secrets::hash_secret(&code);
        let who = who.clone();
        let new_rejoin = secrets::new_secret(SecretKind::Rejoin);
        let new_hash = secrets::hash_secret(&new_rejoin);
        let joined = self
            .store
            .write(move |c: &Connection| {
                let col = if is_rejoin { "rejoin_hash" } else { "invite_hash" };
                #[allow(clippy::type_complexity)]
                let row: Option<(String, String, Option<String>, Vec<u8>, i64)> = c
                    .query_row(
                        &format!(
                            "SELECT s.channel_id, s.label, s.principal_id, s.{col}, ch.closed
                             FROM slots s JOIN channels ch ON ch.id = s.channel_id WHERE s.{col} = ?1"
                        ),
                        params![h],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                    )
                    .optional()?;
                let Some((cid, label, holder, stored, closed)) = row else {
                    return Err(if is_rejoin {
                        ToolError::new(
                            Code::RejoinTokenInvalid,
                            "This rejoin token is not valid: it was replaced when it was last used, or the seat was taken back by the admin.",
                        )
                    } else {
                        ToolError::new(
                            Code::InviteInvalid,
                            "This invite code is not valid: invites are single-use and this one was already used, replaced, or never existed. Ask the channel's admin for a new invite.",
                        )
                    });
                };
                if !secrets::hashes_equal(&stored, &h) {
                    return Err(ToolError::new(Code::InviteInvalid, "This invite code is not valid."));
                }
                if closed != 0 {
                    return Err(ToolError::new(Code::ChannelClosed, "This channel is closed; no one can join it."));
                }
                if !is_rejoin && holder.is_some() {
                    return Err(ToolError::new(Code::SlotAlreadyFilled, format!("Slot {label:?} is already filled.")));
                }
                let now = secrets::now_ms();
                c.execute(
                    "UPDATE slots SET principal_id = ?1, invite_hash = NULL, rejoin_hash = ?2, joined_at = ?3
                     WHERE channel_id = ?4 AND label = ?5",
                    params![who.id, new_hash, now, cid, label],
                )?;
                let event = if is_rejoin { "seat:moved" } else { "seat:filled" };
                let seq = append(c, &cid, "system", "system", &json!({"type": event, "slot": label}), None)?;
                Ok::<_, ToolError>(Joined {
                    channel_id: cid,
                    slot: label,
                    rejoin_token: new_rejoin,
                    moved: is_rejoin,
                    seq,
                })
            })
            .await?;
        self.watch.notify(&joined.channel_id, joined.seq);
        Ok(joined)
    }

    /// Appends a user message from the caller's seat.
    pub async fn post(
        &self,
        who: &Principal,
        channel_id: &str,
        slot: Option<&str>,
        body: Value,
        to: Option<Vec<String>>,
    ) -> Result<StoredMessage, ToolError> {
        match &body {
            Value::String(s) if s.is_empty() => {
                return Err(ToolError::bad(
                    "body is empty; send some text or a JSON object",
                ));
            }
            Value::String(_) | Value::Object(_) => {}
            _ => {
                return Err(ToolError::bad(
                    "body must be a string or a JSON object (wrap other values in an object, e.g. {\"value\": [1,2]})",
                ));
            }
        }
        let size = transcript::canonical(&body).len();
        if size > self.max_body_bytes {
            return Err(ToolError::bad(format!(
                "body is {size} bytes of JSON; the limit is {} bytes. Split it into several messages.",
                self.max_body_bytes
            )));
        }
        let to = match to {
            Some(v) if v.is_empty() => {
                return Err(ToolError::bad(
                    "to is empty; omit it for a public message or list the recipients' slot labels",
                ));
            }
            Some(mut v) => {
                v.sort();
                v.dedup();
                Some(v)
            }
            None => None,
        };
        let who = who.clone();
        let cid = channel_id.to_string();
        let slot = slot.map(str::to_string);
        let msg = self
            .store
            .write(move |c: &Connection| {
                let ch = channel_row(c, &cid)?;
                let sender = resolve_seat(c, &cid, &who, slot.as_deref())?;
                if ch.closed {
                    return Err(ToolError::new(
                        Code::ChannelClosed,
                        "This channel is closed; it can be read but not posted to.",
                    ));
                }
                if let Some(to) = &to {
                    let labels = slot_labels(c, &cid)?;
                    for t in to {
                        if !labels.contains(t) {
                            return Err(ToolError::new(
                                Code::UnknownSlot,
                                format!("to names {t:?}, which is not a slot of this channel"),
                            )
                            .with_data(json!({"slots": labels})));
                        }
                    }
                }
                let seq = append(c, &cid, &sender, "user", &body, to.as_deref())?;
                load_message(c, &cid, seq)
            })
            .await?;
        self.watch.notify(channel_id, msg.seq);
        Ok(msg)
    }

    /// Messages after `cursor` as `viewer` sees them (at most `limit`).
    pub async fn read_after(
        &self,
        channel_id: &str,
        cursor: i64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, ToolError> {
        let cid = channel_id.to_string();
        self.store
            .read(move |c: &Connection| messages_after(c, &cid, cursor, limit))
            .await
    }

    /// Checks the caller may read the channel and returns the acting seat.
    pub async fn seat_for(
        &self,
        who: &Principal,
        channel_id: &str,
        slot: Option<&str>,
    ) -> Result<String, ToolError> {
        let who = who.clone();
        let cid = channel_id.to_string();
        let slot = slot.map(str::to_string);
        self.store
            .read(move |c: &Connection| {
                channel_row(c, &cid)?;
                resolve_seat(c, &cid, &who, slot.as_deref())
            })
            .await
    }

    /// The channel as members see it.
    pub async fn view(&self, who: &Principal, channel_id: &str) -> Result<Value, ToolError> {
        let who = who.clone();
        let cid = channel_id.to_string();
        self.store
            .read(move |c: &Connection| {
                let ch = channel_row(c, &cid)?;
                let seats = seats_of(c, &cid, &who.id)?;
                if seats.is_empty() && ch.admin != who.id {
                    return Err(not_member());
                }
                view_of(c, &ch, &who)
            })
            .await
    }

    /// The caller's channels.
    pub async fn list(&self, who: &Principal) -> Result<Vec<Value>, ToolError> {
        let who = who.clone();
        self.store
            .read(move |c: &Connection| {
                let mut st = c.prepare(
                    "SELECT id FROM channels WHERE admin_principal = ?1
                     UNION SELECT channel_id FROM slots WHERE principal_id = ?1",
                )?;
                let ids: Vec<String> = st
                    .query_map(params![who.id], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                let mut out = Vec::new();
                for id in ids {
                    let ch = channel_row(c, &id)?;
                    let seats = seats_of(c, &id, &who.id)?;
                    out.push(json!({
                        "channel_id": ch.id, "name": ch.name, "closed": ch.closed,
                        "admin": ch.admin == who.id, "your_seats": seats,
                        "message_count": ch.last_seq, "created_at": secrets::rfc3339_ms(ch.created_at),
                    }));
                }
                out.sort_by(|a, b| b["created_at"].as_str().cmp(&a["created_at"].as_str()));
                Ok::<_, ToolError>(out)
            })
            .await
    }

    /// Admin operations: rename, kick, new_invite, close.
    pub async fn update(
        &self,
        who: &Principal,
        channel_id: &str,
        op: UpdateOp,
    ) -> Result<Value, ToolError> {
        let who = who.clone();
        let cid = channel_id.to_string();
        let fresh_invite = secrets::new_secret(SecretKind::Invite);
        let invite_hash = secrets::hash_secret(&fresh_invite);
        let (result, seq) = self
            .store
            .write(move |c: &Connection| {
                let ch = channel_row(c, &cid)?;
                if ch.admin != who.id {
                    return Err(ToolError::new(
                        Code::NotAdmin,
                        "Only the channel's admin (its creator) can do this.",
                    ));
                }
                match op {
                    UpdateOp::Rename { name } => {
                        let name = name.trim().to_string();
                        if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
                            return Err(ToolError::bad(format!("name must be 1-{MAX_NAME_CHARS} characters")));
                        }
                        c.execute("UPDATE channels SET name = ?1 WHERE id = ?2", params![name, cid])?;
                        let seq = append(c, &cid, "system", "system", &json!({"type": "channel:renamed", "name": name}), None)?;
                        Ok((json!({"renamed": name}), seq))
                    }
                    UpdateOp::Kick { slot } | UpdateOp::NewInvite { slot } if !is_invite_slot(c, &cid, &slot)? => {
                        Err(ToolError::new(Code::UnknownSlot, format!("{slot:?} is not a player slot of this channel"))
                            .with_data(json!({"slots": slot_labels(c, &cid)?})))
                    }
                    UpdateOp::Kick { slot } => {
                        c.execute(
                            "UPDATE slots SET principal_id = NULL, rejoin_hash = NULL, joined_at = NULL, invite_hash = ?1
                             WHERE channel_id = ?2 AND label = ?3",
                            params![invite_hash, cid, slot],
                        )?;
                        let seq = append(c, &cid, "system", "system", &json!({"type": "seat:kicked", "slot": slot}), None)?;
                        Ok((json!({"kicked": slot, "invite": {"slot": slot, "invite_code": fresh_invite}}), seq))
                    }
                    UpdateOp::NewInvite { slot } => {
                        let filled: Option<String> = c.query_row(
                            "SELECT principal_id FROM slots WHERE channel_id = ?1 AND label = ?2",
                            params![cid, slot], |r| r.get(0))?;
                        if filled.is_some() {
                            return Err(ToolError::new(Code::SlotAlreadyFilled,
                                format!("Slot {slot:?} is filled; kick its holder first to reissue its invite.")));
                        }
                        c.execute("UPDATE slots SET invite_hash = ?1 WHERE channel_id = ?2 AND label = ?3",
                            params![invite_hash, cid, slot])?;
                        Ok((json!({"invite": {"slot": slot, "invite_code": fresh_invite}}), 0))
                    }
                    UpdateOp::Close => {
                        if ch.closed {
                            return Ok((json!({"closed": true}), 0));
                        }
                        c.execute("UPDATE channels SET closed = 1 WHERE id = ?1", params![cid])?;
                        // Open invites die with the channel.
                        c.execute("UPDATE slots SET invite_hash = NULL WHERE channel_id = ?1", params![cid])?;
                        let seq = append(c, &cid, "system", "system", &json!({"type": "channel:closed"}), None)?;
                        Ok((json!({"closed": true}), seq))
                    }
                }
            })
            .await?;
        if seq > 0 {
            self.watch.notify(channel_id, seq);
        }
        Ok(result)
    }

    /// Attaches a bot to a new bot slot (admin only).
    pub async fn attach_bot(
        &self,
        who: &Principal,
        channel_id: &str,
        slot: Option<String>,
        bot: BotAttachment,
    ) -> Result<String, ToolError> {
        let who = who.clone();
        let cid = channel_id.to_string();
        let (bot_id, seq) = self
            .store
            .write(move |c: &Connection| {
                let ch = channel_row(c, &cid)?;
                if ch.admin != who.id {
                    return Err(ToolError::new(Code::NotAdmin, "Only the channel's admin can attach bots."));
                }
                if ch.closed {
                    return Err(ToolError::new(Code::ChannelClosed, "This channel is closed."));
                }
                let spec = SlotSpec::parse(&format!(
                    "bot:{}",
                    slot.as_deref().map(|s| s.trim_start_matches("bot:")).unwrap_or(&bot.name.to_lowercase())
                ))?;
                let exists: Option<String> = c.query_row(
                    "SELECT label FROM slots WHERE channel_id = ?1 AND label = ?2",
                    params![cid, spec.label], |r| r.get(0)).optional()?;
                let taken: Option<String> = c.query_row(
                    "SELECT bot_id FROM bots WHERE channel_id = ?1 AND bot_id = ?2",
                    params![cid, spec.label], |r| r.get(0)).optional()?;
                if taken.is_some() {
                    return Err(ToolError::new(Code::SlotAlreadyFilled,
                        format!("{:?} already has a bot; choose another slot name", spec.label)));
                }
                if exists.is_none() {
                    let n: i64 = c.query_row("SELECT COUNT(*) FROM slots WHERE channel_id = ?1", params![cid], |r| r.get(0))?;
                    if n as usize >= MAX_SLOTS {
                        return Err(ToolError::bad(format!("at most {MAX_SLOTS} slots")));
                    }
                    c.execute(
                        "INSERT INTO slots (channel_id, label, kind, position) VALUES (?1, ?2, 'bot', ?3)",
                        params![cid, spec.label, n],
                    )?;
                }
                let seq = insert_bot(c, &cid, &spec.label, &bot)?;
                Ok::<_, ToolError>((spec.label, seq))
            })
            .await?;
        self.watch.notify(channel_id, seq);
        Ok(bot_id)
    }

    /// A bot's exact source and manifest (members only).
    pub async fn bot_code(
        &self,
        who: &Principal,
        channel_id: &str,
        bot_id: &str,
    ) -> Result<Value, ToolError> {
        let who = who.clone();
        let cid = channel_id.to_string();
        let bid = if bot_id.starts_with("bot:") {
            bot_id.to_string()
        } else {
            format!("bot:{bot_id}")
        };
        self.store
            .read(move |c: &Connection| {
                let ch = channel_row(c, &cid)?;
                if seats_of(c, &cid, &who.id)?.is_empty() && ch.admin != who.id {
                    return Err(not_member());
                }
                let row = c
                    .query_row(
                        "SELECT name, preset, source, code_hash, manifest, manifest_hash, network, params
                         FROM bots WHERE channel_id = ?1 AND bot_id = ?2",
                        params![cid, bid],
                        |r| Ok((
                            r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?, r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?, r.get::<_, String>(4)?, r.get::<_, String>(5)?,
                            r.get::<_, i64>(6)?, r.get::<_, String>(7)?,
                        )),
                    )
                    .optional()?;
                let Some((name, preset, source, code_hash, manifest, manifest_hash, network, params_s)) = row else {
                    return Err(ToolError::new(Code::UnknownSlot, format!("no bot {bid:?} in this channel"))
                        .with_data(json!({"bots": bot_ids(c, &cid)?})));
                };
                Ok(json!({
                    "channel_id": cid, "bot_id": bid, "name": name, "preset": preset,
                    "source": source, "code_hash": code_hash,
                    "manifest": serde_json::from_str::<Value>(&manifest).unwrap_or(Value::Null),
                    "manifest_hash": manifest_hash, "network": network != 0,
                    "params": serde_json::from_str::<Value>(&params_s).unwrap_or(Value::Null),
                }))
            })
            .await
    }
}

/// `update_channel` operations.
#[derive(Debug, Clone)]
pub enum UpdateOp {
    Rename { name: String },
    Kick { slot: String },
    NewInvite { slot: String },
    Close,
}

/// A channel row.
#[derive(Debug, Clone)]
pub struct ChannelRow {
    pub id: String,
    pub name: String,
    pub admin: String,
    pub created_at: i64,
    pub closed: bool,
    pub allow_network: bool,
    pub last_seq: i64,
    pub head_hash: String,
}

pub(crate) fn channel_row(c: &Connection, cid: &str) -> Result<ChannelRow, ToolError> {
    c.query_row(
        "SELECT id, name, admin_principal, created_at, closed, allow_network, last_seq, head_hash
         FROM channels WHERE id = ?1",
        params![cid],
        |r| {
            Ok(ChannelRow {
                id: r.get(0)?,
                name: r.get(1)?,
                admin: r.get(2)?,
                created_at: r.get(3)?,
                closed: r.get::<_, i64>(4)? != 0,
                allow_network: r.get::<_, i64>(5)? != 0,
                last_seq: r.get(6)?,
                head_hash: r.get(7)?,
            })
        },
    )
    .optional()?
    .ok_or_else(|| {
        ToolError::new(
            Code::ChannelNotFound,
            format!("No channel {cid:?}. list_channels shows the channels you are in."),
        )
    })
}

fn not_member() -> ToolError {
    ToolError::new(
        Code::NotMember,
        "You hold no seat in this channel. Join it with an invite code (join_channel) first.",
    )
}

fn seats_of(c: &Connection, cid: &str, principal: &str) -> Result<Vec<String>, ToolError> {
    let mut st = c.prepare_cached(
        "SELECT label FROM slots WHERE channel_id = ?1 AND principal_id = ?2 ORDER BY position",
    )?;
    Ok(st
        .query_map(params![cid, principal], |r| r.get(0))?
        .collect::<Result<_, _>>()?)
}

fn slot_labels(c: &Connection, cid: &str) -> Result<Vec<String>, ToolError> {
    let mut st =
        c.prepare_cached("SELECT label FROM slots WHERE channel_id = ?1 ORDER BY position")?;
    Ok(st
        .query_map(params![cid], |r| r.get(0))?
        .collect::<Result<_, _>>()?)
}

fn bot_ids(c: &Connection, cid: &str) -> Result<Vec<String>, ToolError> {
    let mut st =
        c.prepare_cached("SELECT bot_id FROM bots WHERE channel_id = ?1 ORDER BY bot_id")?;
    Ok(st
        .query_map(params![cid], |r| r.get(0))?
        .collect::<Result<_, _>>()?)
}

fn is_invite_slot(c: &Connection, cid: &str, label: &str) -> Result<bool, ToolError> {
    let kind: Option<String> = c
        .query_row(
            "SELECT kind FROM slots WHERE channel_id = ?1 AND label = ?2",
            params![cid, label],
            |r| r.get(0),
        )
        .optional()?;
    Ok(kind.as_deref() == Some("invite"))
}

/// The seat the caller acts from: the only one it holds, or the one `slot`
/// names.
fn resolve_seat(
    c: &Connection,
    cid: &str,
    who: &Principal,
    slot: Option<&str>,
) -> Result<String, ToolError> {
    let seats = seats_of(c, cid, &who.id)?;
    match (slot, seats.len()) {
        (_, 0) => Err(not_member()),
        (Some(s), _) => {
            if seats.iter().any(|x| x == s) {
                Ok(s.to_string())
            } else {
                Err(ToolError::new(
                    Code::UnknownSlot,
                    format!(
                        "You hold no seat {s:?} in this channel; your seats: {}",
                        seats.join(", ")
                    ),
                )
                .with_data(json!({"your_seats": seats})))
            }
        }
        (None, 1) => Ok(seats[0].clone()),
        (None, _) => Err(ToolError::new(
            Code::SlotRequired,
            format!(
                "You hold several seats in this channel ({}); pass slot to say which one acts.",
                seats.join(", ")
            ),
        )
        .with_data(json!({"your_seats": seats}))),
    }
}

/// Appends one transcript entry, extending the hash chain. Returns its seq.
pub(crate) fn append(
    c: &Connection,
    cid: &str,
    sender: &str,
    kind: &str,
    body: &Value,
    to: Option<&[String]>,
) -> Result<i64, ToolError> {
    let (last, head): (i64, String) = c.query_row(
        "SELECT last_seq, head_hash FROM channels WHERE id = ?1",
        params![cid],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let seq = last + 1;
    let ts = secrets::rfc3339_ms(secrets::now_ms());
    let canon = transcript::canonical(body);
    let body_salt = to.map(|_| secrets::new_salt());
    let body_hash = match &body_salt {
        Some(salt) => transcript::private_body_hash(salt, body),
        None => transcript::sha256_tagged(canon.as_bytes()),
    };
    let entry = transcript::entry(seq, cid, sender, kind, &ts, body, &body_hash, to);
    let hash = transcript::link(&head, &entry);
    let recipients = to.map(|t| json!(t).to_string());
    c.prepare_cached(
        "INSERT INTO messages (channel_id, seq, sender, kind, body, recipients, body_hash, body_salt, ts, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![cid, seq, sender, kind, canon, recipients, body_hash, body_salt, ts, hash])?;
    c.prepare_cached("UPDATE channels SET last_seq = ?1, head_hash = ?2 WHERE id = ?3")?
        .execute(params![seq, hash, cid])?;
    Ok(seq)
}

fn row_to_message(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredMessage> {
    let body: String = r.get(4)?;
    let recipients: Option<String> = r.get(5)?;
    Ok(StoredMessage {
        channel_id: r.get(0)?,
        seq: r.get(1)?,
        sender: r.get(2)?,
        kind: r.get(3)?,
        body: serde_json::from_str(&body).unwrap_or(Value::Null),
        to: recipients.and_then(|s| serde_json::from_str(&s).ok()),
        body_hash: r.get(6)?,
        body_salt: r.get(7)?,
        ts: r.get(8)?,
        hash: r.get(9)?,
    })
}

pub(crate) fn load_message(
    c: &Connection,
    cid: &str,
    seq: i64,
) -> Result<StoredMessage, ToolError> {
    Ok(c.prepare_cached(
        "SELECT channel_id, seq, sender, kind, body, recipients, body_hash, body_salt, ts, hash
         FROM messages WHERE channel_id = ?1 AND seq = ?2",
    )?
    .query_row(params![cid, seq], row_to_message)?)
}

pub(crate) fn messages_after(
    c: &Connection,
    cid: &str,
    cursor: i64,
    limit: usize,
) -> Result<Vec<StoredMessage>, ToolError> {
    let mut st = c.prepare_cached(
        "SELECT channel_id, seq, sender, kind, body, recipients, body_hash, body_salt, ts, hash
         FROM messages WHERE channel_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
    )?;
    Ok(st
        .query_map(params![cid, cursor, limit as i64], row_to_message)?
        .collect::<Result<_, _>>()?)
}

fn insert_bot(
    c: &Connection,
    cid: &str,
    bot_id: &str,
    bot: &BotAttachment,
) -> Result<i64, ToolError> {
    c.execute(
        "INSERT INTO bots (channel_id, bot_id, name, preset, source, code_hash, manifest, manifest_hash, params, network, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            cid, bot_id, bot.name, bot.preset, bot.source, bot.code_hash,
            transcript::canonical(&bot.manifest), bot.manifest_hash,
            transcript::canonical(&bot.params), bot.network as i64, secrets::now_ms()
        ],
    )?;
    c.execute(
        "UPDATE slots SET principal_id = NULL, joined_at = ?1 WHERE channel_id = ?2 AND label = ?3",
        params![secrets::now_ms(), cid, bot_id],
    )?;
    let attach = append(
        c,
        cid,
        "system",
        "system",
        &json!({"type": "bot:attach", "bot_id": bot_id, "name": bot.name,
                "code_hash": bot.code_hash, "manifest_hash": bot.manifest_hash,
                "network": bot.network}),
        None,
    )?;
    // The bot's hooks start at its own announcement (on_init).
    c.execute(
        "UPDATE bots SET cursor = ?1 WHERE channel_id = ?2 AND bot_id = ?3",
        params![attach - 1, cid, bot_id],
    )?;
    let mut manifest = bot.manifest.clone();
    if let Value::Object(m) = &mut manifest {
        m.insert("type".into(), json!("bot:manifest"));
        m.insert("bot_id".into(), json!(bot_id));
    }
    append(c, cid, "system", "system", &manifest, None)
}

fn view_of(c: &Connection, ch: &ChannelRow, who: &Principal) -> Result<Value, ToolError> {
    let mut st = c.prepare_cached(
        "SELECT s.label, s.kind, s.principal_id, b.bot_id IS NOT NULL
         FROM slots s LEFT JOIN bots b ON b.channel_id = s.channel_id AND b.bot_id = s.label
         WHERE s.channel_id = ?1 ORDER BY s.position",
    )?;
    let slots: Vec<Value> = st
        .query_map(params![ch.id], |r| {
            let label: String = r.get(0)?;
            let kind: String = r.get(1)?;
            let holder: Option<String> = r.get(2)?;
            let has_bot: bool = r.get(3)?;
            let filled = if kind == "bot" {
                has_bot
            } else {
                holder.is_some()
            };
            Ok(json!({
                "label": label, "kind": kind, "filled": filled,
                "admin": holder.as_deref() == Some(ch.admin.as_str()),
                "yours": holder.as_deref() == Some(who.id.as_str()),
            }))
        })?
        .collect::<Result<_, _>>()?;
    let mut st = c.prepare_cached(
        "SELECT bot_id, name, code_hash, manifest_hash, network FROM bots WHERE channel_id = ?1 ORDER BY created_at",
    )?;
    let bots: Vec<Value> = st
        .query_map(params![ch.id], |r| {
            Ok(json!({
                "bot_id": r.get::<_, String>(0)?, "name": r.get::<_, String>(1)?,
                "code_hash": r.get::<_, String>(2)?, "manifest_hash": r.get::<_, String>(3)?,
                "network": r.get::<_, i64>(4)? != 0,
            }))
        })?
        .collect::<Result<_, _>>()?;
    Ok(json!({
        "channel_id": ch.id, "name": ch.name, "closed": ch.closed,
        "allow_network": ch.allow_network, "you_are_admin": ch.admin == who.id,
        "slots": slots, "bots": bots, "message_count": ch.last_seq, "head_hash": ch.head_hash,
        "created_at": secrets::rfc3339_ms(ch.created_at),
    }))
}

/// The view, for tools that already checked membership.
pub async fn view_unchecked(
    store: &Store,
    who: &Principal,
    channel_id: &str,
) -> Result<Value, ToolError> {
    let who = who.clone();
    let cid = channel_id.to_string();
    store
        .read(move |c: &Connection| {
            let ch = channel_row(c, &cid)?;
            view_of(c, &ch, &who)
        })
        .await
}
