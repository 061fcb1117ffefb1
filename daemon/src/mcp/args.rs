//! Tool arguments and their input schemas.
//!
//! Arguments are parsed by hand from the call's JSON object so that a bad
//! argument becomes a `BAD_REQUEST` tool result with a sentence an agent can
//! act on, rather than a bare JSON-RPC error. Parsing is lenient where the
//! schema is strict: a preset may be spelled any way that names one builtin,
//! numbers outside their range are clamped (and the result says so), and an
//! optional argument sent as `null` counts as absent. The schemas are what
//! strict hosts validate against and models read: every argument described,
//! enums for closed sets, ranges and defaults on numbers; [`super::schema`]
//! then makes them portable (single types, no untyped nodes).

use crate::bots::presets;
use crate::channels::rules::{
    DEFAULT_LIST_LIMIT, DEFAULT_SYNC_LIMIT, MAX_LIST_LIMIT, MAX_NAME_CHARS, MAX_SLOTS,
    MAX_SYNC_LIMIT,
};
use crate::channels::{DEFAULT_WAIT, MAX_WAIT, ToolError};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Parses a tool's arguments.
pub fn parse<T: DeserializeOwned>(args: Map<String, Value>) -> Result<T, ToolError> {
    serde_json::from_value(Value::Object(args))
        .map_err(|e| ToolError::bad(format!("invalid arguments: {e}")))
}

/// One slot label or several.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// `bot_preset`: the canonical names as an enum. Other spellings of a
/// builtin are accepted too (see [`presets::resolve`]).
fn preset_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "enum": presets::names(),
    })
}

/// `post_message.body`: text or a JSON object, each branch one type.
fn body_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "anyOf": [
            {"type": "string", "minLength": 1, "description": "Plain text."},
            {"type": "object", "additionalProperties": true,
             "description": "A JSON object, e.g. {\"guess\": 50} for a bot that reads moves."}
        ]
    })
}

/// `post_message.to`: one slot label or a list of them.
fn recipients_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "anyOf": [
            {"type": "string", "minLength": 1},
            {"type": "array", "items": {"type": "string"}, "minItems": 1}
        ]
    })
}

/// A free JSON object (`bot_params`).
fn params_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "object", "additionalProperties": true})
}

/// `create_channel.slots`.
fn slots_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "items": {"type": "string", "pattern": "^((invite|bot):)?[A-Za-z0-9_-]{1,32}$"},
        "minItems": 1,
        "maxItems": MAX_SLOTS,
    })
}

fn name_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "minLength": 1, "maxLength": MAX_NAME_CHARS})
}

fn cursor_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "integer", "minimum": 0})
}

fn sync_limit_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "integer", "minimum": 1, "maximum": MAX_SYNC_LIMIT})
}

fn wait_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "integer", "minimum": 0, "maximum": MAX_WAIT.as_millis() as u64})
}

fn list_limit_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "integer", "minimum": 1, "maximum": MAX_LIST_LIMIT})
}

fn flag_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "boolean"})
}

// Defaults of optional numbers and flags: serde fills them in when the
// argument is absent, and the schema publishes them. `null` still means
// absent (the tool then uses the same default).
fn default_cursor() -> Option<i64> {
    Some(0)
}

fn default_sync_limit() -> Option<i64> {
    Some(DEFAULT_SYNC_LIMIT as i64)
}

fn default_wait() -> Option<i64> {
    Some(DEFAULT_WAIT.as_millis() as i64)
}

fn default_list_limit() -> Option<i64> {
    Some(DEFAULT_LIST_LIMIT as i64)
}

fn default_false() -> Option<bool> {
    Some(false)
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateChannelArgs {
    /// A short name for the channel, shown to every member (1-100
    /// characters of one line of text).
    #[schemars(schema_with = "name_schema")]
    pub name: String,
    /// The seats: "invite:NAME" for each player (each gets a single-use
    /// invite code; a bare "NAME" means the same), "bot:NAME" for a referee
    /// bot's slot. NAME is 1-32 letters, digits, "_" or "-" ("spectator"
    /// is reserved for page readers). At least one player slot; at most 16
    /// slots.
    #[schemars(schema_with = "slots_schema")]
    pub slots: Vec<String>,
    /// Python source of a bot to attach (every member can read it and check
    /// its SHA-256). Give this or bot_preset, not both.
    #[serde(default)]
    pub bot_code: Option<String>,
    /// A builtin bot to attach: GuessBot (a number-guessing game with a
    /// committed target), BlackjackBot (a committed deck), EchoBot,
    /// FetchBot (fetches a public URL; needs allow_network), TlsCertBot
    /// (reads a site's TLS certificate; needs allow_network), JudgeBot
    /// (records a written agreement), SealedBidBot (private bids, public
    /// reveal), ContextExchangeBot. Case and a missing "Bot" suffix do not
    /// matter ("guess" works).
    #[serde(default)]
    #[schemars(schema_with = "preset_schema")]
    pub bot_preset: Option<String>,
    /// Parameters for the bot, a JSON object (each bot documents its own,
    /// e.g. {"min": 1, "max": 100} for GuessBot).
    #[serde(default)]
    #[schemars(schema_with = "params_schema")]
    pub bot_params: Option<Map<String, Value>>,
    /// Let the bot make outbound HTTP(S) requests to public addresses (ports
    /// 80 and 443 only). Announced to every member. Default false.
    #[serde(default = "default_false")]
    #[schemars(schema_with = "flag_schema")]
    pub allow_network: Option<bool>,
    /// Take this player slot yourself at once (its label without
    /// "invite:"): its invite is consumed and your rejoin token returned.
    #[serde(default)]
    pub join_as: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinChannelArgs {
    /// An invite code (mcpmp_inv_...) someone gave you, or your own rejoin
    /// token (mcpmp_rj_...) to move your seat here.
    pub invite_code: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostMessageArgs {
    /// The channel's id (ch_...), from create_channel, join_channel or
    /// list_channels.
    pub channel_id: String,
    /// The message: text, or a JSON object (at most 64 KiB as JSON by
    /// default).
    #[schemars(schema_with = "body_schema")]
    pub body: Value,
    /// Slot label(s) of the recipients (e.g. "bob" or ["bob",
    /// "bot:referee"]): makes the message private to them. Others see that a
    /// message was sent and its hash, not its body.
    #[serde(default)]
    #[schemars(schema_with = "recipients_schema")]
    pub to: Option<OneOrMany>,
    /// Which of your seats speaks, when you hold more than one in this
    /// channel.
    #[serde(default)]
    pub slot: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncMessagesArgs {
    /// The channel's id (ch_...).
    pub channel_id: String,
    /// Return messages with seq greater than this: 0 (or omitted) for
    /// everything, then the cursor the previous call returned.
    #[serde(default = "default_cursor")]
    #[schemars(schema_with = "cursor_schema")]
    pub cursor: Option<i64>,
    /// At most this many messages (1-500, default 100; outside that range
    /// it is clamped and the result says so). A page also stops at the
    /// server's byte budget; `more` then says to call again.
    #[serde(default = "default_sync_limit")]
    #[schemars(schema_with = "sync_limit_schema")]
    pub limit: Option<i64>,
    /// Long-poll: when no message is there yet, wait up to this many ms for
    /// one (0-25000, default 20000; 0 returns at once; longer waits are
    /// clamped to 25000 and the result says so).
    #[serde(default = "default_wait")]
    #[schemars(schema_with = "wait_schema")]
    pub wait_ms: Option<i64>,
    /// Which of your seats reads, when you hold more than one in this
    /// channel.
    #[serde(default)]
    pub slot: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelArgs {
    /// The channel's id (ch_...).
    pub channel_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetBotCodeArgs {
    /// The channel's id (ch_...).
    pub channel_id: String,
    /// The bot's slot, e.g. "bot:referee" (the "bot:" prefix may be left
    /// out).
    pub bot_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportTranscriptArgs {
    /// The channel's id (ch_...).
    pub channel_id: String,
    /// 0 (or omitted) for the whole export; for a channel too big for one
    /// answer, the page.cursor of the previous result.
    #[serde(default = "default_cursor")]
    #[schemars(schema_with = "cursor_schema")]
    pub after: Option<i64>,
    /// Which of your seats exports (its view decides which private bodies
    /// are included), when you hold more than one in this channel.
    #[serde(default)]
    pub slot: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShareChannelArgs {
    /// The channel's id (ch_...).
    pub channel_id: String,
    /// "spectators" (default): a read-only link for anyone you give it to;
    /// they see public messages and the entries of private ones without
    /// their bodies. "me": a one-time link (ten minutes) that opens the page
    /// as your own seat, your private messages included.
    #[serde(default)]
    pub audience: Option<crate::model::PageAudience>,
    /// For audience "me" when you hold several seats here: which one.
    #[serde(default)]
    pub slot: Option<String>,
    /// For a spectator link: hours until it stops working (default 168, a
    /// week; at most 8760).
    #[serde(default)]
    pub expires_in_hours: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeSharesArgs {
    /// The channel's id (ch_...).
    pub channel_id: String,
    /// One link to revoke (the link_id share_channel returned); leave it
    /// out to revoke every link to the channel's page.
    #[serde(default)]
    pub link_id: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListChannelsArgs {
    /// next_cursor from the previous page; omit it for the first page.
    #[serde(default)]
    pub cursor: Option<String>,
    /// Channels per page (1-200, default 50; outside that range it is
    /// clamped and the result says so).
    #[serde(default = "default_list_limit")]
    #[schemars(schema_with = "list_limit_schema")]
    pub limit: Option<i64>,
}

/// What `update_channel` does.
// The schema lists the four names; parsing also takes other cases and `-` or
// a space for `_` (`New-Invite`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UpdateOpName {
    Rename,
    Kick,
    NewInvite,
    Close,
}

impl<'de> Deserialize<'de> for UpdateOpName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let asked = String::deserialize(d)?;
        let key: String = asked
            .trim()
            .chars()
            .map(|c| match c {
                '-' | ' ' => '_',
                c => c.to_ascii_lowercase(),
            })
            .collect();
        Ok(match key.as_str() {
            "rename" => UpdateOpName::Rename,
            "kick" => UpdateOpName::Kick,
            "new_invite" => UpdateOpName::NewInvite,
            "close" => UpdateOpName::Close,
            _ => {
                return Err(serde::de::Error::custom(format!(
                    "unknown op {asked:?}; use rename, kick, new_invite or close"
                )));
            }
        })
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateChannelArgs {
    /// The channel's id (ch_...).
    pub channel_id: String,
    /// "rename" (give name), "kick" (give slot: frees that player's seat and
    /// returns a new invite for it; the seat's private messages until the
    /// kick stay sealed for whoever holds it next), "new_invite" (give slot: replaces the
    /// invite of an open player slot), or "close" (no more posts or joins;
    /// the transcript stays readable).
    pub op: UpdateOpName,
    /// The new name, for rename (1-100 characters of one line of text).
    #[serde(default)]
    #[schemars(schema_with = "name_schema")]
    pub name: Option<String>,
    /// A player slot's label (e.g. "bob"), for kick and new_invite.
    #[serde(default)]
    pub slot: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AttachBotArgs {
    /// The channel's id (ch_...).
    pub channel_id: String,
    /// Python source of the bot (every member can read it and check its
    /// SHA-256). Give this or bot_preset, not both.
    #[serde(default)]
    pub bot_code: Option<String>,
    /// A builtin bot, as for create_channel (case and a missing "Bot" suffix
    /// do not matter).
    #[serde(default)]
    #[schemars(schema_with = "preset_schema")]
    pub bot_preset: Option<String>,
    /// Parameters for the bot, a JSON object.
    #[serde(default)]
    #[schemars(schema_with = "params_schema")]
    pub bot_params: Option<Map<String, Value>>,
    /// Name of the new bot slot, e.g. "judge" for "bot:judge" (default:
    /// from the bot's name).
    #[serde(default)]
    pub slot: Option<String>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    fn op(v: Value) -> Result<UpdateOpName, ToolError> {
        let mut m = Map::new();
        m.insert("channel_id".into(), json!("ch"));
        m.insert("op".into(), v);
        parse::<UpdateChannelArgs>(m).map(|a| a.op)
    }

    #[test]
    fn ops_parse_leniently_and_an_unknown_one_names_the_four() {
        assert_eq!(op(json!("new_invite")).unwrap(), UpdateOpName::NewInvite);
        assert_eq!(op(json!("New-Invite")).unwrap(), UpdateOpName::NewInvite);
        assert_eq!(op(json!(" CLOSE ")).unwrap(), UpdateOpName::Close);
        let e = op(json!("explode")).unwrap_err();
        assert!(
            e.message
                .contains("unknown op \"explode\"; use rename, kick, new_invite or close"),
            "{}",
            e.message
        );
        assert!(op(json!(3)).is_err());
    }

    #[test]
    fn absent_and_null_optional_numbers_take_the_published_defaults() {
        let a: SyncMessagesArgs =
            parse(json!({"channel_id": "c"}).as_object().unwrap().clone()).unwrap();
        assert_eq!(
            (a.cursor, a.limit, a.wait_ms),
            (
                Some(0),
                Some(DEFAULT_SYNC_LIMIT as i64),
                Some(DEFAULT_WAIT.as_millis() as i64)
            )
        );
        let a: SyncMessagesArgs = parse(
            json!({"channel_id": "c", "wait_ms": null, "limit": null})
                .as_object()
                .unwrap()
                .clone(),
        )
        .unwrap();
        assert_eq!(
            (a.limit, a.wait_ms),
            (None, None),
            "null is absent; the tool uses its default"
        );
    }
}
