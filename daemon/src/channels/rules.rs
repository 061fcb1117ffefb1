//! The rules of channels as plain functions: who may act, from which seat,
//! on what; what a valid name, slot or body is; what a reader may see.
//!
//! They take records the store returned and decide, with no I/O, so they run
//! unchanged inside a write (where the decision and its effect commit
//! together) and in unit tests without a database.

use super::error::{Code, ToolError};
use crate::model::Seq;
use crate::model::{
    BotInfo, BotOrigin, ChannelSummary, ChannelView, Clamped, MessageView, Principal, SlotKind,
    SlotView,
};
use crate::secrets;
use crate::store::{BotRecord, ChannelKey, ChannelRecord, Shown, SlotRecord, StoredMessage};
use crate::transcript::CanonicalJson;
use serde_json::{Value, json};

/// Most slots one channel may have.
pub const MAX_SLOTS: usize = 16;
/// Longest channel name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Longest slot name, in bytes (ASCII).
pub const MAX_SLOT_NAME: usize = 32;
/// Messages one `sync_messages` returns by default and at most.
pub const DEFAULT_SYNC_LIMIT: usize = 100;
pub const MAX_SYNC_LIMIT: usize = 500;
/// Channels one `list_channels` page holds by default and at most.
pub const DEFAULT_LIST_LIMIT: usize = 50;
pub const MAX_LIST_LIMIT: usize = 200;

/// The reader an export downloaded from a spectator link names
/// (`exported_as`); no player seat may carry it, so an export's reader is
/// never ambiguous.
pub const RESERVED_SEAT: &str = "spectator";

/// The sender of every entry the daemon itself writes (`channel:created`,
/// `seat:kicked`, `bot:error`, ...); no player seat may carry it, so a
/// player's post never shows as the daemon's.
pub const DAEMON_SENDER: &str = "system";

/// Labels the daemon gives a meaning of its own, each with the reason a
/// refusal states: no player slot may take one, in any letter case (a
/// `System` seat would read as the daemon to a model as well).
const RESERVED_SLOT_NAMES: &[(&str, &str)] = &[
    (
        RESERVED_SEAT,
        "an export downloaded from a spectator link names its reader so",
    ),
    (
        DAEMON_SENDER,
        "the daemon's own entries, such as seat and bot events, carry it as their sender",
    ),
];

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
    ///
    /// # Errors
    /// `BAD_REQUEST` naming the entry and the accepted forms.
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
            && name.len() <= MAX_SLOT_NAME
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            return Err(ToolError::bad(format!(
                "slot {s:?}: a slot name is 1-{MAX_SLOT_NAME} letters, digits, '_' or '-'"
            )));
        }
        if kind == SlotKind::Invite
            && let Some((reserved, why)) = RESERVED_SLOT_NAMES
                .iter()
                .find(|(r, _)| name.eq_ignore_ascii_case(r))
        {
            return Err(ToolError::bad(format!(
                "slot {s:?}: \"{reserved}\" is reserved ({why}); choose another name for this player slot"
            )));
        }
        let label = match kind {
            SlotKind::Invite => name.to_string(),
            SlotKind::Bot => format!("bot:{name}"),
        };
        Ok(SlotSpec { kind, label })
    }
}

/// The slots a new channel gets: the requested ones, plus `bot:referee` when
/// a bot comes without a bot slot; at least one player slot, at most
/// [`MAX_SLOTS`], no label twice, `join_as` one of the player slots.
///
/// # Errors
/// `BAD_REQUEST` or `UNKNOWN_SLOT` saying which rule failed.
pub fn channel_slots(
    mut slots: Vec<SlotSpec>,
    with_bot: bool,
    join_as: Option<&str>,
) -> Result<Vec<SlotSpec>, ToolError> {
    if with_bot && !slots.iter().any(|s| s.kind == SlotKind::Bot) {
        slots.push(SlotSpec {
            kind: SlotKind::Bot,
            label: "bot:referee".into(),
        });
    }
    if !slots.iter().any(|s| s.kind == SlotKind::Invite) {
        return Err(ToolError::bad(
            "slots must name at least one player slot, e.g. [\"invite:alice\", \"invite:bob\"]",
        ));
    }
    if slots.len() > MAX_SLOTS {
        return Err(ToolError::bad(format!("at most {MAX_SLOTS} slots")));
    }
    let mut seen = std::collections::HashSet::new();
    for s in &slots {
        if !seen.insert(s.label.as_str()) {
            return Err(ToolError::bad(format!(
                "slot {:?} is listed twice",
                s.label
            )));
        }
    }
    if let Some(j) = join_as
        && !slots
            .iter()
            .any(|s| s.kind == SlotKind::Invite && s.label == j)
    {
        return Err(ToolError::new(
            Code::UnknownSlot,
            format!("join_as {j:?} is not one of the player slots of this channel"),
        ));
    }
    Ok(slots)
}

/// A channel name: a [`label`] of at most [`MAX_NAME_CHARS`] characters.
///
/// # Errors
/// `BAD_REQUEST` saying what was wrong, as [`label`].
pub fn channel_name(name: &str) -> Result<String, ToolError> {
    label("name", name, MAX_NAME_CHARS)
}

/// Characters that display as nothing: zero-width spaces and joiners, word
/// joiner, byte-order mark, invisible operators, soft hyphen, combining
/// grapheme joiner, Mongolian vowel separator and the Hangul fillers.
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200D}'
            | '\u{2060}'..='\u{2064}'
            | '\u{3164}'
            | '\u{FEFF}'
            | '\u{FFA0}'
    )
}

/// Bidirectional embeddings, overrides and isolates: they make text display
/// in another order than it is stored (the "Trojan Source" characters), so a
/// label holding one may read as something else. The implicit marks (LRM,
/// RLM, ALM) reorder nothing on their own and stay allowed.
fn bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// A free-text label another participant reads (a channel name): normalised
/// to Unicode NFC, so that one text has one stored form whatever the
/// client's keyboard composed, and trimmed of whitespace and invisible
/// characters at both ends. Refused when it holds a control character or a
/// line or paragraph separator (a label is one line), or a bidirectional
/// embedding, override or isolate; when nothing visible is left; or when it
/// is longer than `max_chars` characters. `what` names the argument in the
/// refusal.
///
/// # Errors
/// `BAD_REQUEST` with a sentence naming the character (as `U+XXXX`) and what
/// to send instead.
pub fn label(what: &str, raw: &str, max_chars: usize) -> Result<String, ToolError> {
    use icu_normalizer::ComposingNormalizerBorrowed;
    let nfc = ComposingNormalizerBorrowed::new_nfc().normalize(raw);
    let text = nfc.trim_matches(|c: char| c.is_whitespace() || invisible(c));
    if let Some(c) = text
        .chars()
        .find(|&c| c.is_control() || c == '\u{2028}' || c == '\u{2029}')
    {
        return Err(ToolError::bad(format!(
            "{what} contains the control character U+{:04X}; send it as one line of plain text",
            u32::from(c)
        )));
    }
    if let Some(c) = text.chars().find(|&c| bidi_control(c)) {
        return Err(ToolError::bad(format!(
            "{what} contains the bidirectional control U+{:04X}, which makes text display in another order than it is written; send it without it",
            u32::from(c)
        )));
    }
    if text.chars().all(|c| c.is_whitespace() || invisible(c)) {
        return Err(ToolError::bad(format!(
            "{what} has no visible characters; give it 1-{max_chars} characters of text"
        )));
    }
    let n = text.chars().count();
    if n > max_chars {
        return Err(ToolError::bad(format!(
            "{what} is {n} characters long; the limit is {max_chars}"
        )));
    }
    Ok(text.to_string())
}

/// A number argument brought into `min..=max`: the value to use, and the
/// note that says so when it was outside.
pub fn clamp(argument: &str, requested: i64, min: i64, max: i64) -> (i64, Option<Clamped>) {
    let used = requested.clamp(min, max);
    let note = (used != requested).then(|| Clamped {
        argument: argument.to_string(),
        requested,
        used,
    });
    (used, note)
}

/// A user message's body: a non-empty string or a JSON object, at most
/// `max_bytes` of canonical JSON. Returns its canonical form, the one that is
/// stored and hashed.
///
/// # Errors
/// `BAD_REQUEST` saying what to send instead.
pub fn message_body(body: &Value, max_bytes: usize) -> Result<CanonicalJson, ToolError> {
    match body {
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
    let canon = CanonicalJson::of(body);
    if canon.len() > max_bytes {
        return Err(ToolError::bad(format!(
            "body is {} bytes of JSON; the limit is {max_bytes} bytes. Split it into several messages.",
            canon.len()
        )));
    }
    Ok(canon)
}

/// The recipients of a private message, sorted and without duplicates.
///
/// # Errors
/// `BAD_REQUEST` for an empty list.
pub fn recipients(to: Option<Vec<String>>) -> Result<Option<Vec<String>>, ToolError> {
    match to {
        Some(v) if v.is_empty() => Err(ToolError::bad(
            "to is empty; omit it for a public message or list the recipients' slot labels",
        )),
        Some(mut v) => {
            v.sort();
            v.dedup();
            Ok(Some(v))
        }
        None => Ok(None),
    }
}

/// Every recipient is a slot of the channel.
///
/// # Errors
/// `UNKNOWN_SLOT` naming the first one that is not, with the slots.
pub fn recipients_exist(to: &[String], slots: &[SlotRecord]) -> Result<(), ToolError> {
    for t in to {
        if !slots.iter().any(|s| &s.label == t) {
            let labels: Vec<&str> = slots.iter().map(|s| s.label.as_str()).collect();
            return Err(ToolError::new(
                Code::UnknownSlot,
                format!("to names {t:?}, which is not a slot of this channel"),
            )
            .with_data(json!({"slots": labels})));
        }
    }
    Ok(())
}

/// A sync's cursor and limit; a limit outside 1..=[`MAX_SYNC_LIMIT`] is
/// brought into that range (the tool layer reports that to the caller).
///
/// # Errors
/// `BAD_REQUEST` for a negative cursor.
pub fn sync_window(cursor: Option<i64>, limit: Option<usize>) -> Result<(i64, usize), ToolError> {
    let cursor = cursor.unwrap_or(0);
    if cursor < 0 {
        return Err(ToolError::bad("cursor must be 0 or a seq you received"));
    }
    let limit = limit.unwrap_or(DEFAULT_SYNC_LIMIT).clamp(1, MAX_SYNC_LIMIT);
    Ok((cursor, limit))
}

/// The opaque cursor of the `list_channels` page that ends with `ch`.
pub fn list_cursor(ch: &ChannelRecord) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("c1:{}:{}", ch.created_at, ch.id))
}

/// Where the page after `cursor` starts.
///
/// # Errors
/// `BAD_REQUEST` for anything [`list_cursor`] did not make.
pub fn parse_list_cursor(cursor: &str) -> Result<ChannelKey, ToolError> {
    use base64::Engine;
    let bad = || {
        ToolError::bad(
            "cursor is not one list_channels returned; pass next_cursor from the previous page, or omit it for the first page",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor.trim())
        .map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let rest = text.strip_prefix("c1:").ok_or_else(bad)?;
    let (at, id) = rest.split_once(':').ok_or_else(bad)?;
    Ok(ChannelKey {
        created_at: at.parse().map_err(|_| bad())?,
        id: id.to_string(),
    })
}

/// The channel, or `CHANNEL_NOT_FOUND`.
///
/// # Errors
/// `CHANNEL_NOT_FOUND` pointing at `list_channels`.
pub fn found(ch: Option<ChannelRecord>, id: &str) -> Result<ChannelRecord, ToolError> {
    ch.ok_or_else(|| {
        ToolError::new(
            Code::ChannelNotFound,
            format!("No channel {id:?}. list_channels shows the channels you are in."),
        )
    })
}

/// The refusal for a principal with no seat.
pub fn not_member() -> ToolError {
    ToolError::new(
        Code::NotMember,
        "You hold no seat in this channel. Join it with an invite code (join_channel) first.",
    )
}

/// The caller's credential is still good (checked again by calls that wait).
///
/// # Errors
/// `TOKEN_INVALID`: the token was revoked or expired since the call began.
pub fn require_credential(valid: bool) -> Result<(), ToolError> {
    if valid {
        Ok(())
    } else {
        Err(ToolError::new(
            Code::TokenInvalid,
            "Your access token was revoked or expired while this call waited; nothing written after that is shown to it. Sign in again (or use a new token) and call again with the same cursor.",
        ))
    }
}

/// Whether `who` administers the channel.
pub fn is_admin(ch: &ChannelRecord, who: &Principal) -> bool {
    ch.admin == who.id
}

/// The one admin check.
///
/// # Errors
/// `NOT_ADMIN` with what only the admin can do.
pub fn require_admin(ch: &ChannelRecord, who: &Principal, what: &str) -> Result<(), ToolError> {
    if is_admin(ch, who) {
        Ok(())
    } else {
        Err(ToolError::new(
            Code::NotAdmin,
            format!("Only the channel's admin (its creator) can {what}."),
        ))
    }
}

/// May see the channel: holds a seat or administers it.
///
/// # Errors
/// `NOT_MEMBER`.
pub fn require_reader(
    ch: &ChannelRecord,
    who: &Principal,
    seats: &[String],
) -> Result<(), ToolError> {
    if seats.is_empty() && !is_admin(ch, who) {
        Err(not_member())
    } else {
        Ok(())
    }
}

/// The channel is open for posts and joins.
///
/// # Errors
/// `CHANNEL_CLOSED`, finishing the sentence `doing`.
pub fn require_open(ch: &ChannelRecord, doing: &str) -> Result<(), ToolError> {
    if ch.closed {
        Err(ToolError::new(
            Code::ChannelClosed,
            format!("This channel is closed; {doing}."),
        ))
    } else {
        Ok(())
    }
}

/// The seat the caller acts from: the only one it holds, or the one `slot`
/// names.
///
/// # Errors
/// `NOT_MEMBER` without a seat; `UNKNOWN_SLOT` for a seat it does not hold;
/// `SLOT_REQUIRED` when it holds several and named none (both with its seats).
pub fn resolve_seat(seats: &[String], slot: Option<&str>) -> Result<String, ToolError> {
    match (slot, seats) {
        (_, []) => Err(not_member()),
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
        (None, [only]) => Ok(only.clone()),
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

/// A player slot of the channel (the target of kick and new_invite).
///
/// # Errors
/// `UNKNOWN_SLOT` with the channel's slots.
pub fn player_slot<'a>(slots: &'a [SlotRecord], label: &str) -> Result<&'a SlotRecord, ToolError> {
    slots
        .iter()
        .find(|s| s.label == label && s.kind == SlotKind::Invite)
        .ok_or_else(|| {
            let labels: Vec<&str> = slots.iter().map(|s| s.label.as_str()).collect();
            ToolError::new(
                Code::UnknownSlot,
                format!("{label:?} is not a player slot of this channel"),
            )
            .with_data(json!({"slots": labels}))
        })
}

/// Who reads a channel's messages, as far as private bodies go: a seat's
/// label, and the `seq` from which that seat's private messages are its
/// holder's to read ([`SlotRecord::private_from`]: the seat's last kick).
///
/// A seat label alone is not an identity: a kicked seat is refilled by
/// whoever redeems its fresh invite, possibly the admin who kicked. So the
/// private messages sent to or from a seat before it was kicked stay sealed
/// for every later holder of that seat, the same principal again included;
/// a seat moved by its holder's rejoin token keeps its history.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SeatReader {
    label: String,
    private_from: Seq,
}

impl SeatReader {
    /// The reader sitting at `label` as `slots` (read in the same snapshot
    /// as the messages) record it. A label that is no slot of the channel
    /// (a spectator's empty one) reads no private body at all.
    pub fn of(slots: &[SlotRecord], label: &str) -> SeatReader {
        let private_from = slots
            .iter()
            .find(|s| s.label == label)
            .map_or(Seq::MAX, |s| s.private_from);
        SeatReader {
            label: label.to_string(),
            private_from,
        }
    }

    /// A reader who holds no seat (a spectator link's): public bodies only.
    pub fn spectator() -> SeatReader {
        SeatReader {
            label: String::new(),
            private_from: Seq::MAX,
        }
    }

    /// A seat never kicked, reading as `label`: a bot's own slot (a bot
    /// slot is never kicked: [`player_slot`] admits player slots only), or
    /// a message's sender in the daemon's own records (`replay`, which the
    /// operator runs on the database). No seat holder reads through this.
    pub fn unsealed(label: &str) -> SeatReader {
        SeatReader {
            label: label.to_string(),
            private_from: 0,
        }
    }
}

/// Whether `reader` may read a message's body: a public message, or a
/// private one its seat sent or received since the seat was last kicked.
/// The one readability predicate: every view of a message
/// ([`message_view`]) and every page's byte budget ([`shown_to`]) asks it.
pub fn readable_by(m: &StoredMessage, reader: &SeatReader) -> bool {
    match &m.to {
        None => true,
        Some(to) => {
            m.seq >= reader.private_from && (m.sender == reader.label || to.contains(&reader.label))
        }
    }
}

/// How `reader` receives a message, for the byte budget of its pages
/// ([`ReadTx::messages_page`](crate::store::ReadTx::messages_page)): a page
/// is cut on what the reader is sent, so where it ends says nothing about
/// the length of a body the reader may not read.
pub fn shown_to(m: &StoredMessage, reader: &SeatReader) -> Shown {
    if readable_by(m, reader) {
        Shown::Whole
    } else {
        Shown::Redacted
    }
}

/// A message as `reader` may see it: whole if readable, otherwise without
/// its body, which the chain covers by `body_hash`.
pub fn message_view(m: &StoredMessage, reader: &SeatReader) -> MessageView {
    let mut v = MessageView {
        seq: m.seq,
        channel_id: m.channel_id.clone(),
        sender: m.sender.clone(),
        kind: m.kind,
        ts: m.ts.clone(),
        hash: m.hash.clone(),
        cause: m.cause,
        state_hash: m.state_hash.clone(),
        body: None,
        to: m.to.clone(),
        body_salt: None,
        body_hash: None,
        redacted: None,
    };
    if readable_by(m, reader) {
        v.body = Some(m.body.to_value());
        if m.to.is_some() {
            v.body_salt = m.body_salt.clone();
        }
    } else {
        v.body_hash = Some(m.body_hash.clone());
        v.redacted = Some(true);
    }
    v
}

/// The channel as `who` sees it.
pub fn channel_view(
    ch: &ChannelRecord,
    slots: &[SlotRecord],
    bots: &[BotRecord],
    who: &Principal,
) -> ChannelView {
    ChannelView {
        channel_id: ch.id.clone(),
        name: ch.name.clone(),
        closed: ch.closed,
        allow_network: ch.allow_network,
        you_are_admin: is_admin(ch, who),
        slots: slots
            .iter()
            .map(|s| SlotView {
                label: s.label.clone(),
                kind: s.kind,
                filled: match s.kind {
                    SlotKind::Bot => s.has_bot,
                    SlotKind::Invite => s.holder.is_some(),
                },
                admin: s.holder.as_deref() == Some(ch.admin.as_str()),
                yours: s.holder.as_deref() == Some(who.id.as_str()),
            })
            .collect(),
        bots: bots.iter().map(bot_info).collect(),
        message_count: ch.last_seq,
        head_hash: ch.head_hash.clone(),
        created_at: secrets::rfc3339_ms(ch.created_at),
        signing_key: None,
    }
}

/// A bot as views list it.
pub fn bot_info(b: &BotRecord) -> BotInfo {
    BotInfo {
        bot_id: b.bot_id.clone(),
        name: b.name.clone(),
        origin: BotOrigin::of(b.preset.as_deref()),
        code_hash: b.code_hash.clone(),
        manifest_hash: b.manifest_hash.clone(),
        network: b.network,
    }
}

/// One entry of the caller's channel list.
pub fn summary(ch: &ChannelRecord, who: &Principal, seats: Vec<String>) -> ChannelSummary {
    ChannelSummary {
        channel_id: ch.id.clone(),
        name: ch.name.clone(),
        closed: ch.closed,
        admin: is_admin(ch, who),
        your_seats: seats,
        message_count: ch.last_seq,
        created_at: secrets::rfc3339_ms(ch.created_at),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::model::{Manifest, MessageKind};
    use serde_json::Map;

    fn codes<T: std::fmt::Debug>(r: Result<T, ToolError>) -> Code {
        r.unwrap_err().code
    }

    #[test]
    fn a_slot_is_a_player_by_default_and_a_bot_by_prefix() {
        let s = SlotSpec::parse("alice").unwrap();
        assert_eq!((s.kind, s.label.as_str()), (SlotKind::Invite, "alice"));
        let s = SlotSpec::parse("invite:bob-2").unwrap();
        assert_eq!((s.kind, s.label.as_str()), (SlotKind::Invite, "bob-2"));
        let s = SlotSpec::parse("bot:ref_1").unwrap();
        assert_eq!((s.kind, s.label.as_str()), (SlotKind::Bot, "bot:ref_1"));
    }

    #[test]
    fn slot_names_are_short_plain_ascii() {
        let long = "x".repeat(MAX_SLOT_NAME + 1);
        for bad in [
            "",
            "seat:x",
            "invite:",
            "bot:",
            "a b",
            "é",
            "a:b:c",
            "spectator",
            "invite:spectator",
            long.as_str(),
        ] {
            let e = SlotSpec::parse(bad).unwrap_err();
            assert_eq!(e.code, Code::BadRequest, "{bad:?}");
        }
        assert!(SlotSpec::parse(&"x".repeat(MAX_SLOT_NAME)).is_ok());
    }

    /// The attack (red team F4): the creator names a player seat "system"
    /// (or "System"), so that its posts show sender "system" like the
    /// daemon's own entries. Stopped by `SlotSpec::parse`, which refuses
    /// every label the daemon gives a meaning of its own
    /// (`RESERVED_SLOT_NAMES`: the daemon's sender and the spectator reader)
    /// in any letter case, saying why and what to do.
    #[test]
    fn a_player_seat_may_not_take_a_name_the_daemon_uses() {
        for name in [
            "system",
            "invite:system",
            "System",
            "SYSTEM",
            "spectator",
            "invite:Spectator",
        ] {
            let e = SlotSpec::parse(name).unwrap_err();
            assert_eq!(e.code, Code::BadRequest, "{name:?}");
            assert!(e.message.contains("is reserved ("), "{}", e.message);
            assert!(e.message.contains("choose another name"), "{}", e.message);
        }
        let e = SlotSpec::parse("system").unwrap_err();
        assert!(e.message.contains("daemon's own entries"), "{}", e.message);
        // Only whole names: a seat may still be called "systems" or "sys".
        assert!(SlotSpec::parse("systems").is_ok());
        assert!(SlotSpec::parse("sys").is_ok());
        // A bot slot is labelled "bot:NAME", never a bare reserved name.
        assert_eq!(SlotSpec::parse("bot:system").unwrap().label, "bot:system");
    }

    /// The kick's seal, as the rule reads it: before `private_from` a seat's
    /// private messages (sent or received) are hashes to its holder; from it
    /// on they are theirs; a label that is no slot reads no private body.
    #[test]
    fn a_seat_reads_its_private_messages_from_its_last_kick_on() {
        let slots = [SlotRecord {
            label: "bob".into(),
            kind: SlotKind::Invite,
            holder: Some("p_admin".into()),
            has_bot: false,
            private_from: 5,
        }];
        let bob = SeatReader::of(&slots, "bob");
        let at = |seq: Seq, sender: &str, to: Option<Vec<String>>| StoredMessage {
            seq,
            ..stored(sender, to)
        };
        for m in [
            at(4, "bob", Some(vec!["bot:sealed".into()])),
            at(4, "alice", Some(vec!["bob".into()])),
        ] {
            assert!(!readable_by(&m, &bob));
            assert_eq!(shown_to(&m, &bob), Shown::Redacted);
            let v = message_view(&m, &bob);
            assert_eq!((v.body, v.body_salt, v.redacted), (None, None, Some(true)));
            assert_eq!(v.body_hash.as_deref(), Some("sha256:x"));
        }
        assert!(readable_by(&at(5, "alice", Some(vec!["bob".into()])), &bob));
        assert!(readable_by(&at(1, "alice", None), &bob), "public");
        let not_a_slot = SeatReader::of(&slots, "carol");
        assert!(!readable_by(
            &at(9, "carol", Some(vec!["carol".into()])),
            &not_a_slot
        ));
    }

    #[test]
    fn a_bot_without_a_bot_slot_gets_the_referee_slot() {
        let with = channel_slots(vec![SlotSpec::parse("a").unwrap()], true, None).unwrap();
        assert_eq!(with.last().unwrap().label, "bot:referee");
        let own = vec![
            SlotSpec::parse("a").unwrap(),
            SlotSpec::parse("bot:j").unwrap(),
        ];
        let kept = channel_slots(own.clone(), true, Some("a")).unwrap();
        assert_eq!(kept, own, "an existing bot slot is used, none added");
        let without = channel_slots(vec![SlotSpec::parse("a").unwrap()], false, None).unwrap();
        assert_eq!(without.len(), 1);
    }

    #[test]
    fn names_are_trimmed_and_bounded_in_characters() {
        assert_eq!(channel_name("  poker night ").unwrap(), "poker night");
        let max = "é".repeat(MAX_NAME_CHARS);
        assert_eq!(channel_name(&max).unwrap(), max, "characters, not bytes");
        assert_eq!(codes(channel_name(&format!("{max}é"))), Code::BadRequest);
        assert_eq!(codes(channel_name("\t\n")), Code::BadRequest);
    }

    #[test]
    fn names_are_stored_in_nfc_whatever_the_client_composed() {
        // "é" as e + combining acute (NFD) and as one code point (NFC).
        let decomposed = "cafe\u{0301} night";
        assert_eq!(channel_name(decomposed).unwrap(), "caf\u{e9} night");
        assert_eq!(
            channel_name(decomposed).unwrap(),
            channel_name("caf\u{e9} night").unwrap()
        );
        // Counted after composing: 100 decomposed é are 100 characters.
        let long = "e\u{0301}".repeat(MAX_NAME_CHARS);
        assert_eq!(channel_name(&long).unwrap().chars().count(), MAX_NAME_CHARS);
    }

    #[test]
    fn invisible_control_and_bidi_override_names_are_refused_with_the_character() {
        let refused = [
            ("\u{200B}", "no visible characters"),
            (
                "\u{200B}\u{200C}\u{200D}\u{2060}\u{FEFF}",
                "no visible characters",
            ),
            (" \u{00A0}\u{3000}\u{200B} ", "no visible characters"),
            ("\u{3164}\u{115F}", "no visible characters"),
            ("a\u{0000}b", "U+0000"),
            ("line\none", "U+000A"),
            ("bell\u{0007}", "U+0007"),
            ("del\u{007F}x", "U+007F"),
            ("c1\u{0085}x", "U+0085"),
            ("para\u{2029}graph", "U+2029"),
            ("invoice\u{202E}fdp.exe", "U+202E"),
            ("\u{202A}x", "U+202A"),
            ("iso\u{2066}late\u{2069}", "U+2066"),
            ("x\u{2068}y", "U+2068"),
        ];
        for (name, why) in refused {
            let e = channel_name(name).unwrap_err();
            assert_eq!(e.code, Code::BadRequest, "{name:?}");
            assert!(e.message.contains(why), "{name:?}: {}", e.message);
            assert!(e.message.starts_with("name "), "{}", e.message);
        }
        // Joiners inside a word, right-to-left text with its marks, emoji
        // sequences: all real names.
        for ok in [
            "\u{05E9}\u{05DC}\u{05D5}\u{05DD} \u{200F}night",
            "\u{0645}\u{06CC}\u{200C}\u{062E}\u{0648}\u{0627}\u{0647}\u{0645}",
            "family \u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}",
        ] {
            assert_eq!(channel_name(ok).unwrap(), ok);
        }
        assert_eq!(channel_name("\u{200B}poker\u{FEFF} ").unwrap(), "poker");
    }

    #[test]
    fn a_list_cursor_round_trips_and_anything_else_is_refused() {
        let ch = record("p", false);
        let key = parse_list_cursor(&list_cursor(&ch)).unwrap();
        assert_eq!((key.created_at, key.id.as_str()), (ch.created_at, "ch"));
        for bad in ["", "nope", "YzE6", "YzE6eDpjaA", "Yzk6MDpjaA", "%%%"] {
            let e = parse_list_cursor(bad).unwrap_err();
            assert_eq!(e.code, Code::BadRequest, "{bad:?}");
            assert!(e.message.contains("next_cursor"), "{}", e.message);
        }
    }

    #[test]
    fn out_of_range_numbers_are_clamped_and_noted() {
        assert_eq!(clamp("wait_ms", 30_000, 0, 25_000).0, 25_000);
        let note = clamp("wait_ms", 30_000, 0, 25_000).1.unwrap();
        assert_eq!(
            (note.argument.as_str(), note.requested, note.used),
            ("wait_ms", 30_000, 25_000)
        );
        assert_eq!(
            clamp("limit", -5, 1, 500),
            (1, clamp("limit", -5, 1, 500).1)
        );
        assert_eq!(clamp("limit", -5, 1, 500).1.unwrap().used, 1);
        assert_eq!(clamp("limit", 500, 1, 500), (500, None));
        assert_eq!(clamp("limit", 1, 1, 500), (1, None));
    }

    #[test]
    fn the_acting_seat_is_the_only_one_or_the_named_one() {
        let one = vec!["red".to_string()];
        let two = vec!["red".to_string(), "blue".to_string()];
        assert_eq!(resolve_seat(&one, None).unwrap(), "red");
        assert_eq!(resolve_seat(&two, Some("blue")).unwrap(), "blue");
        assert_eq!(codes(resolve_seat(&[], None)), Code::NotMember);
        assert_eq!(codes(resolve_seat(&[], Some("red"))), Code::NotMember);
        let e = resolve_seat(&two, None).unwrap_err();
        assert_eq!(e.code, Code::SlotRequired);
        assert_eq!(e.data.unwrap()["your_seats"], json!(["red", "blue"]));
        let e = resolve_seat(&one, Some("blue")).unwrap_err();
        assert_eq!(e.code, Code::UnknownSlot);
        assert_eq!(e.data.unwrap()["your_seats"], json!(["red"]));
    }

    #[test]
    fn a_body_is_measured_as_its_canonical_json() {
        let b = message_body(&json!({"b": 1.0, "a": "x"}), 100).unwrap();
        assert_eq!(b.as_str(), r#"{"a":"x","b":1}"#);
        assert!(message_body(&json!({"b": 1.0, "a": "x"}), b.len()).is_ok());
        assert_eq!(
            codes(message_body(&json!({"b": 1.0, "a": "x"}), b.len() - 1)),
            Code::BadRequest
        );
    }

    #[test]
    fn recipients_are_sorted_without_duplicates_and_never_empty() {
        let to = recipients(Some(vec!["b".into(), "a".into(), "b".into()])).unwrap();
        assert_eq!(to, Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(recipients(None).unwrap(), None);
        assert_eq!(codes(recipients(Some(vec![]))), Code::BadRequest);
    }

    #[test]
    fn a_sync_window_defaults_to_the_start_and_a_hundred() {
        assert_eq!(sync_window(None, None).unwrap(), (0, DEFAULT_SYNC_LIMIT));
        assert_eq!(
            sync_window(Some(7), Some(MAX_SYNC_LIMIT)).unwrap(),
            (7, MAX_SYNC_LIMIT)
        );
        assert_eq!(sync_window(None, Some(0)).unwrap().1, 1);
        assert_eq!(sync_window(None, Some(10_000)).unwrap().1, MAX_SYNC_LIMIT);
        assert_eq!(codes(sync_window(Some(-1), None)), Code::BadRequest);
    }

    fn record(admin: &str, closed: bool) -> ChannelRecord {
        ChannelRecord {
            id: "ch".into(),
            name: "n".into(),
            admin: admin.into(),
            created_at: 0,
            closed,
            allow_network: false,
            last_seq: 3,
            head_hash: "h".into(),
        }
    }

    fn who(id: &str) -> Principal {
        Principal {
            id: id.into(),
            name: id.into(),
            credential: crate::model::Credential::Unauthenticated,
        }
    }

    #[test]
    fn admins_and_members_read_strangers_do_not() {
        let ch = record("p_admin", false);
        assert!(require_reader(&ch, &who("p_admin"), &[]).is_ok());
        assert!(require_reader(&ch, &who("p_x"), &["a".into()]).is_ok());
        assert_eq!(
            codes(require_reader(&ch, &who("p_x"), &[])),
            Code::NotMember
        );
        assert!(require_admin(&ch, &who("p_admin"), "x").is_ok());
        assert_eq!(codes(require_admin(&ch, &who("p_x"), "x")), Code::NotAdmin);
        assert!(require_open(&ch, "x").is_ok());
        assert_eq!(
            codes(require_open(&record("p", true), "x")),
            Code::ChannelClosed
        );
    }

    fn stored(sender: &str, to: Option<Vec<String>>) -> StoredMessage {
        StoredMessage {
            channel_id: "ch".into(),
            seq: 4,
            sender: sender.into(),
            kind: MessageKind::User,
            body: CanonicalJson::of(&json!({"bid": 450})),
            body_salt: to.as_ref().map(|_| "00ff".to_string()),
            to,
            body_hash: "sha256:x".into(),
            ts: "t".into(),
            hash: "h".into(),
            cause: None,
            state_hash: None,
        }
    }

    #[test]
    fn only_the_sender_and_recipients_read_a_private_body() {
        let m = stored("alice", Some(vec!["bot:sealed".into()]));
        for reader in ["alice", "bot:sealed"] {
            let v = message_view(&m, &SeatReader::unsealed(reader));
            assert_eq!(v.body, Some(json!({"bid": 450})), "{reader}");
            assert_eq!(v.body_salt.as_deref(), Some("00ff"));
            assert_eq!((v.body_hash, v.redacted), (None, None));
        }
        let v = message_view(&m, &SeatReader::unsealed("bob"));
        assert_eq!((v.body, v.body_salt), (None, None));
        assert_eq!(v.body_hash.as_deref(), Some("sha256:x"));
        assert_eq!(v.redacted, Some(true));
        let public = message_view(&stored("alice", None), &SeatReader::unsealed("bob"));
        assert_eq!(public.body, Some(json!({"bid": 450})));
        assert_eq!(
            (public.to, public.body_salt, public.redacted),
            (None, None, None)
        );
    }

    #[test]
    fn a_bot_slot_is_filled_by_its_bot_a_player_slot_by_its_holder() {
        let slots = vec![
            SlotRecord {
                label: "alice".into(),
                kind: SlotKind::Invite,
                holder: Some("p_admin".into()),
                has_bot: false,
                private_from: 0,
            },
            SlotRecord {
                label: "bob".into(),
                kind: SlotKind::Invite,
                holder: None,
                has_bot: false,
                private_from: 0,
            },
            SlotRecord {
                label: "bot:r".into(),
                kind: SlotKind::Bot,
                holder: None,
                has_bot: true,
                private_from: 0,
            },
        ];
        let bots = vec![BotRecord {
            bot_id: "bot:r".into(),
            name: "R".into(),
            preset: None,
            code_hash: "c".into(),
            manifest: Manifest {
                name: "R".into(),
                version: "1".into(),
                summary: String::new(),
                hooks: vec![],
                params: Map::new(),
                network: false,
            },
            manifest_hash: "m".into(),
            network: false,
            cursor: 0,
        }];
        let v = channel_view(&record("p_admin", false), &slots, &bots, &who("p_admin"));
        let flags: Vec<(bool, bool, bool)> = v
            .slots
            .iter()
            .map(|s| (s.filled, s.admin, s.yours))
            .collect();
        assert_eq!(
            flags,
            vec![
                (true, true, true),
                (false, false, false),
                (true, false, false)
            ]
        );
        assert!(v.you_are_admin);
        assert_eq!(v.message_count, 3);
        assert_eq!(v.bots[0].bot_id, "bot:r");
        let stranger = channel_view(&record("p_admin", false), &slots, &bots, &who("p_x"));
        assert!(!stranger.you_are_admin && !stranger.slots.iter().any(|s| s.yours));
    }
}
