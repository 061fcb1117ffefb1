//! The typed domain: what a channel, a seat, a bot and a message are, every
//! event the daemon writes into a transcript, and one result type per tool.
//!
//! Everything a client or a bot sees is one of these types, serialised with
//! serde; the JSON Schemas the MCP tools publish as `outputSchema` are derived
//! from the same types (`schemars`), so a schema cannot drift from what the
//! daemon writes. The field names and shapes are the wire contract: the hash
//! chain covers system bodies byte for byte (RFC 8785 canonical JSON of these
//! values), so renaming a field here changes every transcript from then on.

pub use crate::signing::{PublicKey, SignedHead};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Who is calling: resolved from the bearer token on every request. Seats
/// belong to principals, never to MCP sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub id: String,
    pub name: String,
    /// What the request was authenticated with. A call that waits (a
    /// long-poll, a subscription) checks it again before it delivers
    /// anything, since the token may be revoked or expire meanwhile.
    pub credential: Credential,
}

/// The credential a principal presented on this request.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// A bearer token, by the SHA-256 hash the store keeps (never the token).
    Token(Vec<u8>),
    /// No credential: the daemon runs with authentication switched off.
    Unauthenticated,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not even the hash goes into logs: it names the token's row.
        match self {
            Credential::Token(_) => f.write_str("Token(…)"),
            Credential::Unauthenticated => f.write_str("Unauthenticated"),
        }
    }
}

/// Sequence number of a message within its channel (from 1); a cursor is the
/// last `seq` a reader saw, 0 before the first.
pub type Seq = i64;

/// Who wrote a message. Only the daemon writes `system` and `control`
/// messages; only bots write `bot` messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MessageKind {
    /// A player's message (`post_message`).
    User,
    /// A bot's post (`ctx.post`): `{type, data}`.
    Bot,
    /// The daemon's announcement of a change: an [`Event`].
    System,
    /// The daemon's report about a bot (`bot:error`, `bot:state`).
    Control,
}

impl MessageKind {
    /// The stored and hashed spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::User => "user",
            MessageKind::Bot => "bot",
            MessageKind::System => "system",
            MessageKind::Control => "control",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<MessageKind> {
        Some(match s {
            "user" => MessageKind::User,
            "bot" => MessageKind::Bot,
            "system" => MessageKind::System,
            "control" => MessageKind::Control,
            _ => return None,
        })
    }
}

/// Kind of a slot: a player's seat, filled with an invite, or a bot's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SlotKind {
    Invite,
    Bot,
}

impl SlotKind {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SlotKind::Invite => "invite",
            SlotKind::Bot => "bot",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<SlotKind> {
        match s {
            "invite" => Some(SlotKind::Invite),
            "bot" => Some(SlotKind::Bot),
            _ => None,
        }
    }
}

/// A slot as `channel:created` announces it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SlotDecl {
    /// `alice` for a player slot, `bot:referee` for a bot slot.
    pub label: String,
    pub kind: SlotKind,
}

/// A bot's manifest as announced (`bot:manifest`) and hashed
/// (`manifest_hash`): only the documented keys, with the channel's network
/// permission.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub summary: String,
    /// The hooks the bot class defines (`on_init`, `on_join`, `on_message`);
    /// the others are never run.
    pub hooks: Vec<String>,
    /// The parameters the bot documents.
    pub params: Map<String, Value>,
    /// Whether the bot may make outbound connections.
    pub network: bool,
}

impl Manifest {
    /// Whether the bot defines the Python method `hook`.
    pub fn defines(&self, hook: &str) -> bool {
        self.hooks.iter().any(|h| h == hook)
    }
}

/// The body of every `system` and `control` message, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type")]
pub enum Event {
    /// The first message of every channel.
    #[serde(rename = "channel:created")]
    ChannelCreated {
        name: String,
        slots: Vec<SlotDecl>,
        allow_network: bool,
        /// The transcript format the channel was created with:
        /// [`TRANSCRIPT_FORMAT`] now; absent in channels created before
        /// bot entries recorded their `cause` (format 1). From format 2 on,
        /// a verifier requires a `cause` on every bot entry.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        transcript_format: Option<u32>,
    },
    #[serde(rename = "channel:renamed")]
    ChannelRenamed { name: String },
    /// No more posts or joins.
    #[serde(rename = "channel:closed")]
    ChannelClosed,
    /// A player took a seat with an invite (or at creation, with `join_as`).
    #[serde(rename = "seat:filled")]
    SeatFilled { slot: String },
    /// A seat moved to another principal with a rejoin token.
    #[serde(rename = "seat:moved")]
    SeatMoved { slot: String },
    /// The admin freed a seat.
    #[serde(rename = "seat:kicked")]
    SeatKicked { slot: String },
    /// A bot was attached; `code_hash` is the SHA-256 of the exact source.
    #[serde(rename = "bot:attach")]
    BotAttach {
        bot_id: String,
        name: String,
        code_hash: String,
        manifest_hash: String,
        network: bool,
        /// `sha256:` of the bot's secret seed behind a domain tag
        /// (`crate::bots::seed::commitment`): every hook's randomness comes
        /// from the seed, which a `bot:reveal` publishes when the channel
        /// closes. Absent for bots attached before seeds existed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seed_commitment: Option<String>,
        /// `sha256:` of the canonical JSON of the bot's params, fixed with
        /// the seed before play. Absent where `seed_commitment` is.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        params_hash: Option<String>,
        /// Whether the code is one of the daemon's builtin bots (whose
        /// name `name` then is) or code a member supplied, which may not
        /// take a builtin's name. Absent for bots attached before
        /// attachments said so.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        origin: Option<BotOrigin>,
    },
    /// The attached bot's manifest, right after its `bot:attach`.
    #[serde(rename = "bot:manifest")]
    BotManifest {
        bot_id: String,
        #[serde(flatten)]
        manifest: Manifest,
    },
    /// A bot hook failed (a `control` message); nothing the hook did took
    /// effect. `seq` is the message that triggered it (also the entry's
    /// `cause`).
    #[serde(rename = "bot:error")]
    BotError {
        bot_id: String,
        seq: Seq,
        reason: String,
    },
    /// A hook changed its bot's state without posting anything (a `control`
    /// message): the entry's `cause` and `state_hash` record it, so that
    /// every state a hook leaves is committed in the chain.
    #[serde(rename = "bot:state")]
    BotState { bot_id: String },
    /// The channel closed: a bot's secret seed (64 hex digits) and the salt
    /// of its state hashes, published so that anyone can open the
    /// `seed_commitment` of its `bot:attach` and re-run its hooks
    /// (`docs/replay.md`).
    #[serde(rename = "bot:reveal")]
    BotReveal {
        bot_id: String,
        seed: String,
        state_salt: String,
    },
}

/// The transcript format new channels are written in (see
/// [`Event::ChannelCreated`] and `docs/bots.md`): 2 adds `cause` and
/// `state_hash` to bot entries.
pub const TRANSCRIPT_FORMAT: u32 = 2;

impl Event {
    /// The message kind this event is written as.
    pub fn kind(&self) -> MessageKind {
        match self {
            Event::BotError { .. } | Event::BotState { .. } => MessageKind::Control,
            _ => MessageKind::System,
        }
    }
}

/// The body of a `bot` message: the bot's own type and its data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BotPostBody {
    #[serde(rename = "type")]
    pub kind: String,
    pub data: Value,
}

/// A message as one reader sees it. A private message the reader may not read
/// comes without `body`, with the `body_hash` the chain covers and
/// `redacted: true`; its readers get the body and the hash's `body_salt`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct MessageView {
    pub seq: Seq,
    pub channel_id: String,
    /// A slot label (`alice`, `bot:referee`) or `system`.
    pub sender: String,
    pub kind: MessageKind,
    /// RFC 3339 UTC with milliseconds.
    pub ts: String,
    /// `hash_n` of the transcript chain after this message.
    pub hash: String,
    /// On a bot's entry (`bot` post, `bot:error`, `bot:state`): the `seq` of
    /// the message whose hook produced it. The bot had seen that message and
    /// those before it, nothing later.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<Seq>,
    /// On the last entry a hook wrote: `sha256:` of the bot's state after
    /// the hook, salted with a secret of the bot's (so a small state cannot
    /// be guessed from it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_hash: Option<String>,
    /// A string or a JSON object (absent when redacted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// Recipients of a private message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<Vec<String>>,
    /// Salt of a private message's `body_hash`, for its readers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_salt: Option<String>,
    /// What the chain covers for a private message the reader may not read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redacted: Option<bool>,
}

/// One slot in a channel view.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct SlotView {
    pub label: String,
    pub kind: SlotKind,
    /// A player slot is filled when a principal holds it; a bot slot when a
    /// bot is attached to it.
    pub filled: bool,
    /// Held by the channel's admin.
    pub admin: bool,
    /// Held by the caller.
    pub yours: bool,
}

/// Where an attached bot's code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BotOrigin {
    /// One of the daemon's builtin bots, attached with `bot_preset` (or by
    /// pasting its exact source).
    Builtin,
    /// Source a member supplied with `bot_code`.
    Custom,
}

impl BotOrigin {
    /// The origin of a bot stored with `preset` (its builtin's name) or
    /// without.
    pub fn of(preset: Option<&str>) -> BotOrigin {
        if preset.is_some() {
            BotOrigin::Builtin
        } else {
            BotOrigin::Custom
        }
    }

    /// How the texts name it: `builtin` or `custom code`.
    pub fn words(self) -> &'static str {
        match self {
            BotOrigin::Builtin => "builtin",
            BotOrigin::Custom => "custom code",
        }
    }
}

/// A bot as a channel view lists it.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct BotInfo {
    pub bot_id: String,
    pub name: String,
    /// `builtin` or `custom`.
    pub origin: BotOrigin,
    pub code_hash: String,
    pub manifest_hash: String,
    pub network: bool,
}

/// A channel as one member sees it.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ChannelView {
    pub channel_id: String,
    pub name: String,
    pub closed: bool,
    pub allow_network: bool,
    pub you_are_admin: bool,
    pub slots: Vec<SlotView>,
    pub bots: Vec<BotInfo>,
    /// The `seq` of the last message.
    pub message_count: Seq,
    /// The transcript's head hash.
    pub head_hash: String,
    pub created_at: String,
    /// The id (fingerprint) of the key that signs this daemon's transcript
    /// heads: `sha256:` of its public key. Given by `get_channel_info` and
    /// `sync_messages`; compare it with the one at
    /// `/.well-known/mcp-multiplayer/keys.json`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<String>,
}

/// One entry of `list_channels`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ChannelSummary {
    pub channel_id: String,
    pub name: String,
    pub closed: bool,
    /// The caller administers it.
    pub admin: bool,
    pub your_seats: Vec<String>,
    pub message_count: Seq,
    pub created_at: String,
}

/// A bot's exact source with its manifest (`get_bot_code`).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct BotCode {
    pub channel_id: String,
    pub bot_id: String,
    pub name: String,
    /// The builtin it came from, by its canonical name (`GuessBot`); absent
    /// for inline code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// The exact source that runs.
    pub source: String,
    /// `sha256:` of the source bytes.
    pub code_hash: String,
    pub manifest: Manifest,
    pub manifest_hash: String,
    pub network: bool,
    pub params: Map<String, Value>,
}

/// An invite code for one slot. Secret: give it to that player only.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Invite {
    pub slot: String,
    pub invite_code: String,
}

/// A seat the caller took, with the token that moves it.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Seat {
    pub slot: String,
    /// Secret: moves this seat to whoever presents it.
    pub rejoin_token: String,
}

/// `create_channel`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Created {
    pub channel_id: String,
    /// One single-use invite per open player slot.
    pub invites: Vec<Invite>,
    pub view: ChannelView,
    /// With `join_as`: the seat the creator took.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seat: Option<Seat>,
}

/// `join_channel`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Joined {
    pub channel_id: String,
    pub slot: String,
    /// Secret: the token that moves this seat (replaced on every use).
    pub rejoin_token: String,
    /// The seat moved here with a rejoin token (rather than filled).
    pub moved: bool,
    pub bots: Vec<BotInfo>,
    pub view: ChannelView,
}

/// `post_message`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Posted {
    /// `CHANNEL:SEQ`.
    pub msg_id: String,
    pub seq: Seq,
    pub hash: String,
    /// The slot label it was posted as.
    pub sender: String,
}

/// A number argument outside its range, and the value used instead: calls
/// are clamped rather than refused, and the result says so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Clamped {
    /// The argument (`wait_ms`, `limit`).
    pub argument: String,
    /// What the call asked for.
    pub requested: i64,
    /// What was used: the nearest end of the argument's range.
    pub used: i64,
}

/// `sync_messages`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Synced {
    pub messages: Vec<MessageView>,
    /// Pass it to the next call.
    pub cursor: Seq,
    /// More messages are waiting after `cursor` (the page reached its
    /// message count or byte budget): call again at once with that cursor.
    pub more: bool,
    /// Arguments that were outside their range, and the values used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clamped: Vec<Clamped>,
    /// The seat the messages were read as.
    #[serde(rename = "as")]
    pub as_seat: String,
    pub view: ChannelView,
    /// The daemon's signature on the transcript head at the last message
    /// returned (`cursor`): through the hash chain it covers every message
    /// up to it. Absent when no message was returned.
    /// (`docs/transcripts.md` defines it.)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signed_head: Option<SignedHead>,
}

/// `list_channels`: one page, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ChannelList {
    pub channels: Vec<ChannelSummary>,
    /// Present when more channels follow: pass it as `cursor` to get the
    /// next page. Opaque.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    /// Arguments that were outside their range, and the values used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clamped: Vec<Clamped>,
}

/// `update_channel`: what the operation did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, JsonSchema)]
pub struct Updated {
    /// The new name (`rename`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renamed: Option<String>,
    /// The freed slot (`kick`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kicked: Option<String>,
    /// A fresh invite (`kick`, `new_invite`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invite: Option<Invite>,
    /// `close`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closed: Option<bool>,
}

/// The `format` of an export document.
pub const EXPORT_FORMAT: &str = "mcp-multiplayer-transcript";
/// The export document's version (`docs/transcripts.md`).
pub const EXPORT_VERSION: u32 = 1;

/// A channel as an export describes it. Only `channel_id` is covered by the
/// chain; the transcript's own `channel:*` entries are what a verifier trusts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ExportedChannel {
    pub channel_id: String,
    pub name: String,
    pub created_at: String,
    pub closed: bool,
    pub allow_network: bool,
    pub slots: Vec<SlotDecl>,
}

/// Where a page of an export lies, when the channel did not fit one answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ExportPage {
    /// The entries follow this seq.
    pub after: Seq,
    /// The last entry's seq: pass it as `after` for the next page.
    pub cursor: Seq,
    /// More entries follow.
    pub more: bool,
}

/// `export_transcript` and `GET /channels/{id}/export`: the channel as the
/// caller's seat sees it, in one self-contained document anyone can verify
/// offline (`mcp-multiplayer verify`). `docs/transcripts.md` defines it.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct TranscriptExport {
    /// Always `mcp-multiplayer-transcript`.
    pub format: String,
    /// The document's version: 1.
    pub version: u32,
    pub exported_at: String,
    /// The seat whose view this is (which private bodies it holds).
    pub exported_as: String,
    pub channel: ExportedChannel,
    /// Every message from seq 1 (or after `page.after`), as the seat reads it.
    pub entries: Vec<MessageView>,
    /// Every bot the channel has had: exact source, manifest, params, hashes.
    pub bots: Vec<BotCode>,
    /// The daemon's signatures on heads of this transcript, ascending; the
    /// last is at the last entry.
    pub signed_heads: Vec<SignedHead>,
    /// The daemon's public keys, oldest first, with the period each signed.
    pub keys: Vec<PublicKey>,
    /// `{}`: the revealed seeds a replay needs are the chain's `bot:reveal`
    /// entries; kept for what network bots read, which is not recorded.
    pub replay: Map<String, Value>,
    /// Present on a page of a channel too big for one answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<ExportPage>,
}

/// `attach_bot`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Attached {
    pub bot_id: String,
    pub name: String,
    /// `builtin` or `custom`.
    pub origin: BotOrigin,
    pub code_hash: String,
    pub manifest_hash: String,
    pub network: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_keep_their_wire_shape() {
        let cases = [
            (
                Event::ChannelCreated {
                    name: "n".into(),
                    slots: vec![SlotDecl {
                        label: "bot:r".into(),
                        kind: SlotKind::Bot,
                    }],
                    allow_network: false,
                    transcript_format: None,
                },
                json!({"type": "channel:created", "name": "n",
                       "slots": [{"label": "bot:r", "kind": "bot"}], "allow_network": false}),
            ),
            (
                Event::ChannelCreated {
                    name: "n".into(),
                    slots: vec![],
                    allow_network: true,
                    transcript_format: Some(TRANSCRIPT_FORMAT),
                },
                json!({"type": "channel:created", "name": "n", "slots": [],
                       "allow_network": true, "transcript_format": 2}),
            ),
            (
                Event::BotState {
                    bot_id: "bot:r".into(),
                },
                json!({"type": "bot:state", "bot_id": "bot:r"}),
            ),
            (Event::ChannelClosed, json!({"type": "channel:closed"})),
            (
                Event::SeatMoved { slot: "a".into() },
                json!({"type": "seat:moved", "slot": "a"}),
            ),
            (
                Event::BotError {
                    bot_id: "bot:r".into(),
                    seq: 4,
                    reason: "x".into(),
                },
                json!({"type": "bot:error", "bot_id": "bot:r", "seq": 4, "reason": "x"}),
            ),
            (
                Event::BotManifest {
                    bot_id: "bot:r".into(),
                    manifest: Manifest {
                        name: "Echo".into(),
                        version: "1".into(),
                        summary: "s".into(),
                        hooks: vec!["on_message".into()],
                        params: Map::new(),
                        network: true,
                    },
                },
                json!({"type": "bot:manifest", "bot_id": "bot:r", "name": "Echo", "version": "1",
                       "summary": "s", "hooks": ["on_message"], "params": {}, "network": true}),
            ),
        ];
        for (event, wire) in cases {
            assert_eq!(serde_json::to_value(&event).unwrap(), wire);
            let back: Event = serde_json::from_value(wire).unwrap();
            assert_eq!(back, event);
        }
    }

    #[test]
    fn only_bot_error_and_bot_state_are_control_messages() {
        assert_eq!(Event::ChannelClosed.kind(), MessageKind::System);
        let e = Event::BotError {
            bot_id: "b".into(),
            seq: 1,
            reason: "r".into(),
        };
        assert_eq!(e.kind(), MessageKind::Control);
        let s = Event::BotState { bot_id: "b".into() };
        assert_eq!(s.kind(), MessageKind::Control);
    }

    #[test]
    fn kinds_round_trip_through_their_stored_spelling() {
        for k in [
            MessageKind::User,
            MessageKind::Bot,
            MessageKind::System,
            MessageKind::Control,
        ] {
            assert_eq!(MessageKind::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_value(k).unwrap(), json!(k.as_str()));
        }
        assert_eq!(MessageKind::parse("admin"), None);
        assert_eq!(SlotKind::parse("bot"), Some(SlotKind::Bot));
        assert_eq!(SlotKind::parse("seat"), None);
    }
}

/// Who a `share_channel` link is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PageAudience {
    /// Anyone holding the link: read-only, public messages and the entries
    /// (without bodies) of private ones.
    Spectators,
    /// You: a one-time link that opens the page as your seat, private
    /// messages to you included.
    Me,
}

/// `share_channel`: a link to the channel's web page.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Shared {
    /// Open in a browser. Anyone holding it sees what the audience sees:
    /// hand it only to whom you mean to.
    pub url: String,
    /// Names the link for `revoke_shares` (not secret).
    pub link_id: String,
    pub channel_id: String,
    pub audience: PageAudience,
    /// The seat a link for you opens the page as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seat: Option<String>,
    /// RFC 3339 UTC: the link stops working then.
    pub expires_at: String,
}

/// `revoke_shares`: how many page links stopped working.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct SharesRevoked {
    pub channel_id: String,
    pub revoked: u64,
}
