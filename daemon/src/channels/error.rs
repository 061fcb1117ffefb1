//! Tool errors: a stable code an agent can branch on and a sentence saying
//! what was wrong and what to do (DESIGN §4).

use crate::store::{FromStoreError, StoreError};
use serde_json::{Value, json};

/// Stable error codes. The wire form is SCREAMING_SNAKE_CASE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    InviteInvalid,
    RejoinTokenInvalid,
    ChannelNotFound,
    ChannelClosed,
    NotMember,
    NotAdmin,
    SlotAlreadyFilled,
    /// The caller holds several seats here and did not say which acts.
    SlotRequired,
    /// A slot label that does not exist in the channel.
    UnknownSlot,
    BadRequest,
    RateLimited,
    BotError,
    Internal,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::InviteInvalid => "INVITE_INVALID",
            Code::RejoinTokenInvalid => "REJOIN_TOKEN_INVALID",
            Code::ChannelNotFound => "CHANNEL_NOT_FOUND",
            Code::ChannelClosed => "CHANNEL_CLOSED",
            Code::NotMember => "NOT_MEMBER",
            Code::NotAdmin => "NOT_ADMIN",
            Code::SlotAlreadyFilled => "SLOT_ALREADY_FILLED",
            Code::SlotRequired => "SLOT_REQUIRED",
            Code::UnknownSlot => "UNKNOWN_SLOT",
            Code::BadRequest => "BAD_REQUEST",
            Code::RateLimited => "RATE_LIMITED",
            Code::BotError => "BOT_ERROR",
            Code::Internal => "INTERNAL",
        }
    }
}

/// A tool that ran and failed.
#[derive(Debug, Clone)]
pub struct ToolError {
    pub code: Code,
    pub message: String,
    /// Extra structured detail (e.g. the caller's seats for `SLOT_REQUIRED`).
    pub data: Option<Value>,
}

impl ToolError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        ToolError {
            code,
            message: message.into(),
            data: None,
        }
    }

    pub fn bad(message: impl Into<String>) -> Self {
        Self::new(Code::BadRequest, message)
    }

    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    /// Logs the detail once and returns the generic error clients see.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            Code::Internal,
            "The server hit an internal error; the operator's log has the detail. Nothing was changed; try again.",
        )
    }

    /// The structured content of the tool result.
    pub fn to_json(&self) -> Value {
        let mut v = json!({"error": {"code": self.code.as_str(), "message": self.message}});
        if let Some(d) = &self.data {
            v["error"]["data"] = d.clone();
        }
        v
    }
}

impl std::fmt::Display for ToolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl From<rusqlite::Error> for ToolError {
    fn from(e: rusqlite::Error) -> Self {
        ToolError::internal(e)
    }
}

impl FromStoreError for ToolError {
    fn from_store(e: StoreError) -> Self {
        ToolError::internal(e)
    }
}
