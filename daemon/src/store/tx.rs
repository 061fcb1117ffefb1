//! The typed operations the domain runs inside a read ([`ReadTx`]) or a write
//! ([`Tx`]), the records they return, and their SQLite implementation (which
//! delegates to one file per concern).

use super::bus::{Changes, Commit};
use super::db::Connection;
use super::{StoreError, bots, links, messages, principals, seats, usage};
use crate::model::{Credential, Manifest, MessageKind, Seq, SlotKind};
use crate::transcript::CanonicalJson;
use hook_protocol::Entropy;
use serde_json::{Map, Value};

/// A channel's row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ChannelRecord {
    pub id: String,
    pub name: String,
    /// The admin's principal id.
    pub admin: String,
    /// Unix milliseconds.
    pub created_at: i64,
    pub closed: bool,
    pub allow_network: bool,
    /// The `seq` of the last message (0 before the first).
    pub last_seq: Seq,
    pub head_hash: String,
}

/// Where a page of a principal's channel list resumes: after the channel
/// created at `created_at` with this id, in the list's order (newest first,
/// then by id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChannelKey {
    pub created_at: i64,
    pub id: String,
}

/// A new channel (its transcript starts at the genesis hash).
pub(crate) struct NewChannel<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub admin: &'a str,
    pub allow_network: bool,
}

/// A slot of a channel, with whoever holds it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SlotRecord {
    pub label: String,
    pub kind: SlotKind,
    /// The principal holding a player seat.
    pub holder: Option<String>,
    /// A bot is attached to this (bot) slot.
    pub has_bot: bool,
    /// The seat's private messages with a lower `seq` are sealed: no holder
    /// reads their bodies. The `seq` of the seat's last `seat:kicked`, 0 for
    /// a seat never kicked (`crate::channels::rules::SeatReader`).
    pub private_from: Seq,
}

/// A slot to create.
pub(crate) struct NewSlot<'a> {
    pub label: &'a str,
    pub kind: SlotKind,
    pub position: usize,
    /// Taken at once (`join_as`), with the holder's rejoin token hash.
    pub holder: Option<(&'a str, &'a [u8])>,
    /// Open, with this invite's hash.
    pub invite_hash: Option<&'a [u8]>,
}

/// Which secret a seat is looked up by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SeatSecret {
    Invite,
    Rejoin,
}

/// The seat an invite or rejoin token names.
#[derive(Debug, Clone)]
pub(crate) struct SecretSeat {
    pub channel_id: String,
    pub label: String,
    pub holder: Option<String>,
    /// The stored hash, for a constant-time comparison.
    pub stored_hash: Vec<u8>,
    pub channel_closed: bool,
}

/// A transcript entry as stored.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StoredMessage {
    pub channel_id: String,
    pub seq: Seq,
    pub sender: String,
    pub kind: MessageKind,
    pub body: CanonicalJson,
    /// Recipients of a private message.
    pub to: Option<Vec<String>>,
    pub body_hash: String,
    /// Salt of a private message's `body_hash`, shown to its readers only.
    pub body_salt: Option<String>,
    pub ts: String,
    pub hash: String,
    /// A bot's entry: the message whose hook wrote it.
    pub cause: Option<Seq>,
    /// The last entry of a hook: the bot's state hash after it.
    pub state_hash: Option<String>,
}

/// How a reader receives a message (decided by
/// `crate::channels::rules::shown_to`, the readability rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shown {
    /// With its body (and a private message's salt).
    Whole,
    /// Without body or salt: the `body_hash` the chain covers stands in.
    Redacted,
}

impl StoredMessage {
    /// What one message counts against a page's byte budget when it is sent
    /// as `shown`: its texts as that reader receives them, plus the keys and
    /// punctuation a reader's JSON adds around them. A redacted message
    /// counts without its body and salt, so the size of a body its reader
    /// cannot read never moves where that reader's page ends.
    pub fn page_bytes(&self, shown: Shown) -> usize {
        const FRAME: usize = 160;
        let to: usize = self.to.iter().flatten().map(|t| t.len() + 3).sum();
        let body = match shown {
            Shown::Whole => self.body.len() + self.body_salt.as_ref().map_or(0, String::len),
            Shown::Redacted => 0,
        };
        FRAME
            + body
            + self.channel_id.len()
            + self.sender.len()
            + self.body_hash.len()
            + self.ts.len()
            + self.hash.len()
            + to
    }
}

/// A message to append.
pub(crate) struct NewMessage<'a> {
    pub sender: &'a str,
    pub kind: MessageKind,
    pub body: &'a CanonicalJson,
    /// Recipients: a private message.
    pub to: Option<&'a [String]>,
    /// A bot's entry: the message whose hook wrote it.
    pub cause: Option<Seq>,
    /// The last entry of a hook: the bot's state hash after it.
    pub state_hash: Option<&'a str>,
}

impl<'a> NewMessage<'a> {
    /// A message of the daemon's or a player's (no cause).
    pub fn new(sender: &'a str, kind: MessageKind, body: &'a CanonicalJson) -> NewMessage<'a> {
        NewMessage {
            sender,
            kind,
            body,
            to: None,
            cause: None,
            state_hash: None,
        }
    }
}

/// Where an appended message landed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Appended {
    pub seq: Seq,
    pub hash: String,
    pub ts: String,
}

/// An attached bot, without its source or state.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BotRecord {
    pub bot_id: String,
    pub name: String,
    pub preset: Option<String>,
    pub code_hash: String,
    pub manifest: Manifest,
    pub manifest_hash: String,
    pub network: bool,
    /// The bot has handled every message up to this `seq`.
    pub cursor: Seq,
}

/// What running a bot needs beyond its record.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BotRuntime {
    pub source: String,
    pub params: Map<String, Value>,
    /// The state the last successful hook left (a JSON object).
    pub state: Value,
    /// `state` as stored, the text it was parsed from.
    pub stored_state: String,
    /// The secret salt of the bot's `state_hash`es.
    pub state_salt: String,
    /// The bot's secret seed, every hook's entropy is derived from
    /// (`crate::bots::seed`); `None` for bots attached before seeds existed.
    pub seed: Option<Entropy>,
}

/// A bot to attach: prepared (source read, hashes computed, language layer
/// passed) by the `bots` module.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PreparedBot {
    pub name: String,
    pub preset: Option<String>,
    pub source: String,
    pub code_hash: String,
    pub manifest: Manifest,
    pub manifest_hash: String,
    pub params: Map<String, Value>,
    pub network: bool,
    /// The bot's secret seed (`crate::bots::seed`), drawn when it was
    /// prepared; its state salt is derived from it.
    pub seed: Entropy,
}

/// What a channel page link admits (`crate::page`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PageLinkKind {
    /// Read-only, as a member who is not addressed sees the channel.
    Spectator,
    /// One-time: opens the page as a member's seat, then is spent.
    MemberLink,
    /// What a member link is exchanged for (the page's cookie).
    MemberSession,
}

/// A page link to store (its secret only as a hash).
pub(crate) struct NewPageLink<'a> {
    pub id: &'a str,
    pub channel_id: &'a str,
    pub secret_hash: &'a [u8],
    pub kind: PageLinkKind,
    /// The principal and seat a member link or session acts as.
    pub member: Option<(&'a str, &'a str)>,
    pub created_by: &'a str,
    /// Unix milliseconds.
    pub created_at: i64,
    pub expires_at: Option<i64>,
}

/// A stored page link.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PageLinkRecord {
    pub id: String,
    pub channel_id: String,
    /// The stored hash, for a constant-time comparison.
    pub stored_hash: Vec<u8>,
    pub kind: PageLinkKind,
    /// (principal, seat) of a member link or session.
    pub member: Option<(String, String)>,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// Reads, inside a read snapshot or a write.
pub(crate) trait ReadTx {
    fn channel(&self, id: &str) -> Result<Option<ChannelRecord>, StoreError>;
    /// Slots in creation order.
    fn slots(&self, channel_id: &str) -> Result<Vec<SlotRecord>, StoreError>;
    /// Labels of the seats `principal` holds, in slot order.
    fn seats_of(&self, channel_id: &str, principal: &str) -> Result<Vec<String>, StoreError>;
    fn seat_by_secret(
        &self,
        which: SeatSecret,
        hash: &[u8],
    ) -> Result<Option<SecretSeat>, StoreError>;
    /// At most `limit` channels `principal` administers or holds a seat in,
    /// newest first (then by id), starting after `after`.
    fn channels_of(
        &self,
        principal: &str,
        after: Option<&ChannelKey>,
        limit: usize,
    ) -> Result<Vec<ChannelRecord>, StoreError>;
    /// At most `limit` messages with `seq > cursor`, in order.
    fn messages_after(
        &self,
        channel_id: &str,
        cursor: Seq,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError>;
    /// The bodies of the `system` messages with `seq > after`, in order.
    fn system_bodies_after(&self, channel_id: &str, after: Seq) -> Result<Vec<String>, StoreError>;
    /// Like [`ReadTx::messages_after`], and stops before the message that
    /// would take the page past `max_bytes`, each message counted as
    /// [`StoredMessage::page_bytes`] of how this page's reader receives it
    /// (`shown`: the readability rule, `crate::channels::rules::shown_to`);
    /// the first message always comes, so a page is never empty while
    /// messages are waiting. Rows past the budget are never read.
    fn messages_page(
        &self,
        channel_id: &str,
        cursor: Seq,
        limit: usize,
        max_bytes: usize,
        shown: &dyn Fn(&StoredMessage) -> Shown,
    ) -> Result<Vec<StoredMessage>, StoreError>;
    /// Attached bots in attachment order.
    fn bots(&self, channel_id: &str) -> Result<Vec<BotRecord>, StoreError>;
    fn bot_runtime(&self, channel_id: &str, bot_id: &str)
    -> Result<Option<BotRuntime>, StoreError>;
    /// The cursor of one bot ([`BotRecord::cursor`]), without the rest of
    /// its record.
    fn bot_cursor(&self, channel_id: &str, bot_id: &str) -> Result<Option<Seq>, StoreError>;
    /// Channels with at least one bot.
    fn channels_with_bots(&self) -> Result<Vec<String>, StoreError>;
    /// The credential is neither revoked nor expired (now).
    fn credential_valid(&self, credential: &Credential) -> Result<bool, StoreError>;

    // What the quotas read (`crate::quota`).
    /// Bytes of user and bot bodies in the channel.
    fn channel_bytes(&self, channel_id: &str) -> Result<u64, StoreError>;
    /// Bytes of bodies `principal` posted on UTC day `day` (unix days).
    fn principal_bytes(&self, principal: &str, day: i64) -> Result<u64, StoreError>;
    /// Channels `principal` created at or after `since_ms`, and the oldest
    /// one's creation time.
    fn channels_created_since(
        &self,
        principal: &str,
        since_ms: i64,
    ) -> Result<(u64, Option<i64>), StoreError>;
    /// Channels `principal` administers that are not closed.
    fn open_channels(&self, principal: &str) -> Result<u64, StoreError>;
    /// The page link whose secret hashes to `hash`.
    fn page_link(&self, hash: &[u8]) -> Result<Option<PageLinkRecord>, StoreError>;
}

/// Writes (and reads) inside one write transaction. Every write records what
/// it changed, for the commit bus.
pub(crate) trait Tx: ReadTx {
    fn insert_channel(&mut self, ch: &NewChannel<'_>) -> Result<(), StoreError>;
    fn rename_channel(&mut self, channel_id: &str, name: &str) -> Result<(), StoreError>;
    /// Marks the channel closed and drops its open invites.
    fn close_channel(&mut self, channel_id: &str) -> Result<(), StoreError>;
    fn insert_slot(&mut self, channel_id: &str, slot: &NewSlot<'_>) -> Result<(), StoreError>;
    /// Gives a seat to `principal`, consuming its invite; `rejoin_hash` is
    /// the seat's new rejoin token.
    fn fill_seat(
        &mut self,
        channel_id: &str,
        label: &str,
        principal: &str,
        rejoin_hash: &[u8],
    ) -> Result<(), StoreError>;
    /// Frees a seat (its rejoin token dies), opens it with a new invite and
    /// seals its private messages before `private_from`
    /// ([`SlotRecord::private_from`]).
    fn free_seat(
        &mut self,
        channel_id: &str,
        label: &str,
        invite_hash: &[u8],
        private_from: Seq,
    ) -> Result<(), StoreError>;
    /// Replaces an open slot's invite.
    fn set_invite(
        &mut self,
        channel_id: &str,
        label: &str,
        invite_hash: &[u8],
    ) -> Result<(), StoreError>;
    /// Appends one transcript entry, extending the hash chain.
    fn append(&mut self, channel_id: &str, msg: NewMessage<'_>) -> Result<Appended, StoreError>;
    /// Records a bot on its slot, with cursor 0 and empty state.
    fn insert_bot(
        &mut self,
        channel_id: &str,
        bot_id: &str,
        bot: &PreparedBot,
    ) -> Result<(), StoreError>;
    fn set_bot_cursor(
        &mut self,
        channel_id: &str,
        bot_id: &str,
        cursor: Seq,
    ) -> Result<(), StoreError>;
    fn set_bot_state(
        &mut self,
        channel_id: &str,
        bot_id: &str,
        state: &CanonicalJson,
    ) -> Result<(), StoreError>;
    /// Counts `bytes` of bodies against the channel and, for a principal's
    /// post, against that principal's UTC day `day`.
    fn add_usage(
        &mut self,
        channel_id: &str,
        principal: Option<(&str, i64)>,
        bytes: u64,
    ) -> Result<(), StoreError>;
    fn insert_page_link(&mut self, link: &NewPageLink<'_>) -> Result<(), StoreError>;
    /// Revokes the channel's live page links (only the one with id `only`
    /// when given) at `now`; returns how many. Open page streams of the
    /// channel wake and re-check their link.
    fn revoke_page_links(
        &mut self,
        channel_id: &str,
        only: Option<&str>,
        now: i64,
    ) -> Result<usize, StoreError>;
}

/// A read connection.
pub(crate) struct SqliteRead<'c>(pub &'c Connection);

/// The writer's transaction, recording what the current write changed.
pub(crate) struct SqliteTx<'c> {
    pub conn: &'c Connection,
    pub commits: Vec<Commit>,
}

impl SqliteTx<'_> {
    fn note(&mut self, channel_id: &str, head: Option<Seq>, f: impl FnOnce(&mut Changes)) {
        let i = match self.commits.iter().position(|c| c.channel_id == channel_id) {
            Some(i) => i,
            None => {
                self.commits.push(Commit {
                    channel_id: channel_id.to_string(),
                    head: 0,
                    changes: Changes::default(),
                });
                self.commits.len() - 1
            }
        };
        let c = &mut self.commits[i];
        if let Some(h) = head {
            c.head = c.head.max(h);
        }
        f(&mut c.changes);
    }
}

/// Something holding a connection: both reads and writes read through it.
pub(crate) trait HasConn {
    fn conn(&self) -> &Connection;
}

impl HasConn for SqliteRead<'_> {
    fn conn(&self) -> &Connection {
        self.0
    }
}

impl HasConn for SqliteTx<'_> {
    fn conn(&self) -> &Connection {
        self.conn
    }
}

impl<T: HasConn> ReadTx for T {
    fn channel(&self, id: &str) -> Result<Option<ChannelRecord>, StoreError> {
        seats::channel(self.conn(), id)
    }
    fn slots(&self, channel_id: &str) -> Result<Vec<SlotRecord>, StoreError> {
        seats::slots(self.conn(), channel_id)
    }
    fn seats_of(&self, channel_id: &str, principal: &str) -> Result<Vec<String>, StoreError> {
        seats::seats_of(self.conn(), channel_id, principal)
    }
    fn seat_by_secret(
        &self,
        which: SeatSecret,
        hash: &[u8],
    ) -> Result<Option<SecretSeat>, StoreError> {
        seats::seat_by_secret(self.conn(), which, hash)
    }
    fn channels_of(
        &self,
        principal: &str,
        after: Option<&ChannelKey>,
        limit: usize,
    ) -> Result<Vec<ChannelRecord>, StoreError> {
        seats::channels_of(self.conn(), principal, after, limit)
    }
    fn messages_after(
        &self,
        channel_id: &str,
        cursor: Seq,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        messages::after(self.conn(), channel_id, cursor, limit, usize::MAX, &|_| {
            Shown::Whole
        })
    }
    fn system_bodies_after(&self, channel_id: &str, after: Seq) -> Result<Vec<String>, StoreError> {
        messages::system_bodies_after(self.conn(), channel_id, after)
    }
    fn messages_page(
        &self,
        channel_id: &str,
        cursor: Seq,
        limit: usize,
        max_bytes: usize,
        shown: &dyn Fn(&StoredMessage) -> Shown,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        messages::after(self.conn(), channel_id, cursor, limit, max_bytes, shown)
    }
    fn bots(&self, channel_id: &str) -> Result<Vec<BotRecord>, StoreError> {
        bots::of_channel(self.conn(), channel_id)
    }
    fn bot_runtime(
        &self,
        channel_id: &str,
        bot_id: &str,
    ) -> Result<Option<BotRuntime>, StoreError> {
        bots::runtime(self.conn(), channel_id, bot_id)
    }
    fn bot_cursor(&self, channel_id: &str, bot_id: &str) -> Result<Option<Seq>, StoreError> {
        bots::cursor(self.conn(), channel_id, bot_id)
    }
    fn channels_with_bots(&self) -> Result<Vec<String>, StoreError> {
        bots::channels_with_bots(self.conn())
    }
    fn credential_valid(&self, credential: &Credential) -> Result<bool, StoreError> {
        principals::credential_valid(self.conn(), credential)
    }
    fn channel_bytes(&self, channel_id: &str) -> Result<u64, StoreError> {
        usage::channel_bytes(self.conn(), channel_id)
    }
    fn principal_bytes(&self, principal: &str, day: i64) -> Result<u64, StoreError> {
        usage::principal_bytes(self.conn(), principal, day)
    }
    fn channels_created_since(
        &self,
        principal: &str,
        since_ms: i64,
    ) -> Result<(u64, Option<i64>), StoreError> {
        usage::created_since(self.conn(), principal, since_ms)
    }
    fn open_channels(&self, principal: &str) -> Result<u64, StoreError> {
        usage::open_channels(self.conn(), principal)
    }
    fn page_link(&self, hash: &[u8]) -> Result<Option<PageLinkRecord>, StoreError> {
        links::by_hash(self.conn(), hash)
    }
}

impl Tx for SqliteTx<'_> {
    fn insert_channel(&mut self, ch: &NewChannel<'_>) -> Result<(), StoreError> {
        seats::insert_channel(self.conn, ch)
    }
    fn rename_channel(&mut self, channel_id: &str, name: &str) -> Result<(), StoreError> {
        seats::rename_channel(self.conn, channel_id, name)?;
        self.note(channel_id, None, |c| c.renamed = true);
        Ok(())
    }
    fn close_channel(&mut self, channel_id: &str) -> Result<(), StoreError> {
        seats::close_channel(self.conn, channel_id)?;
        self.note(channel_id, None, |c| c.closed = true);
        Ok(())
    }
    fn insert_slot(&mut self, channel_id: &str, slot: &NewSlot<'_>) -> Result<(), StoreError> {
        seats::insert_slot(self.conn, channel_id, slot)?;
        if slot.holder.is_some() {
            self.note(channel_id, None, |c| c.seats = true);
        }
        Ok(())
    }
    fn fill_seat(
        &mut self,
        channel_id: &str,
        label: &str,
        principal: &str,
        rejoin_hash: &[u8],
    ) -> Result<(), StoreError> {
        seats::fill_seat(self.conn, channel_id, label, principal, rejoin_hash)?;
        self.note(channel_id, None, |c| c.seats = true);
        Ok(())
    }
    fn free_seat(
        &mut self,
        channel_id: &str,
        label: &str,
        invite_hash: &[u8],
        private_from: Seq,
    ) -> Result<(), StoreError> {
        seats::free_seat(self.conn, channel_id, label, invite_hash, private_from)?;
        self.note(channel_id, None, |c| c.seats = true);
        Ok(())
    }
    fn set_invite(
        &mut self,
        channel_id: &str,
        label: &str,
        invite_hash: &[u8],
    ) -> Result<(), StoreError> {
        seats::set_invite(self.conn, channel_id, label, invite_hash)
    }
    fn append(&mut self, channel_id: &str, msg: NewMessage<'_>) -> Result<Appended, StoreError> {
        let a = messages::append(self.conn, channel_id, &msg)?;
        self.note(channel_id, Some(a.seq), |c| c.messages = true);
        Ok(a)
    }
    fn insert_bot(
        &mut self,
        channel_id: &str,
        bot_id: &str,
        bot: &PreparedBot,
    ) -> Result<(), StoreError> {
        bots::insert(self.conn, channel_id, bot_id, bot)?;
        self.note(channel_id, None, |c| c.bots = true);
        Ok(())
    }
    fn set_bot_cursor(
        &mut self,
        channel_id: &str,
        bot_id: &str,
        cursor: Seq,
    ) -> Result<(), StoreError> {
        bots::set_cursor(self.conn, channel_id, bot_id, cursor)
    }
    fn set_bot_state(
        &mut self,
        channel_id: &str,
        bot_id: &str,
        state: &CanonicalJson,
    ) -> Result<(), StoreError> {
        bots::set_state(self.conn, channel_id, bot_id, state)
    }
    fn add_usage(
        &mut self,
        channel_id: &str,
        principal: Option<(&str, i64)>,
        bytes: u64,
    ) -> Result<(), StoreError> {
        usage::add(self.conn, channel_id, principal, bytes)
    }
    fn insert_page_link(&mut self, link: &NewPageLink<'_>) -> Result<(), StoreError> {
        links::insert(self.conn, link)
    }
    fn revoke_page_links(
        &mut self,
        channel_id: &str,
        only: Option<&str>,
        now: i64,
    ) -> Result<usize, StoreError> {
        let n = links::revoke(self.conn, channel_id, only, now)?;
        if n > 0 {
            self.note(channel_id, None, |c| c.links = true);
        }
        Ok(n)
    }
}
