//! Tool arguments. Parsed by hand from the call's JSON object so that a bad
//! argument becomes a `BAD_REQUEST` tool result with a sentence an agent can
//! act on, rather than a bare JSON-RPC error.

use crate::channels::ToolError;
use schemars::JsonSchema;
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

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateChannelArgs {
    /// A short name for the channel.
    pub name: String,
    /// Slots: "invite:NAME" for each player (each gets a single-use invite
    /// code), "bot:NAME" for a referee bot.
    pub slots: Vec<String>,
    /// Python source of a bot to attach (every member can read it and its hash).
    #[serde(default)]
    pub bot_code: Option<String>,
    /// Name of a builtin bot: guess, blackjack, echo, fetch, tlscert, judge,
    /// sealed_bid, context_exchange.
    #[serde(default)]
    pub bot_preset: Option<String>,
    /// Parameters for the bot (a JSON object).
    #[serde(default)]
    pub bot_params: Option<Map<String, Value>>,
    /// Let the bot make outbound HTTPS/HTTP requests to public addresses.
    #[serde(default)]
    pub allow_network: Option<bool>,
    /// Take this player slot yourself at once (its invite is consumed and your
    /// rejoin token returned).
    #[serde(default)]
    pub join_as: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinChannelArgs {
    /// An invite code (mcpmp_inv_...) or a rejoin token (mcpmp_rj_...).
    pub invite_code: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostMessageArgs {
    pub channel_id: String,
    /// Text, or a JSON object.
    pub body: Value,
    /// Slot label(s) of the recipients: makes the message private to them.
    #[serde(default)]
    pub to: Option<OneOrMany>,
    /// Which of your seats speaks, when you hold more than one here.
    #[serde(default)]
    pub slot: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncMessagesArgs {
    pub channel_id: String,
    /// Return messages with seq greater than this (0 or omitted: from the start).
    #[serde(default)]
    pub cursor: Option<i64>,
    /// At most this many messages (default 100, max 500).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Long-poll: wait up to this many ms for a new message (default 20000, max 25000, 0 = don't wait).
    #[serde(default)]
    pub wait_ms: Option<u64>,
    /// Which of your seats reads, when you hold more than one here.
    #[serde(default)]
    pub slot: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelArgs {
    pub channel_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetBotCodeArgs {
    pub channel_id: String,
    /// The bot's slot, e.g. "bot:referee".
    pub bot_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmptyArgs {}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateChannelArgs {
    pub channel_id: String,
    /// "rename" (name), "kick" (slot: frees the seat, returns a new invite),
    /// "new_invite" (slot: replaces an open slot's invite), or "close".
    pub op: String,
    /// New name, for rename.
    #[serde(default)]
    pub name: Option<String>,
    /// Slot label, for kick and new_invite.
    #[serde(default)]
    pub slot: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AttachBotArgs {
    pub channel_id: String,
    #[serde(default)]
    pub bot_code: Option<String>,
    #[serde(default)]
    pub bot_preset: Option<String>,
    #[serde(default)]
    pub bot_params: Option<Map<String, Value>>,
    /// Name of the new bot slot (default: from the bot's name).
    #[serde(default)]
    pub slot: Option<String>,
}
