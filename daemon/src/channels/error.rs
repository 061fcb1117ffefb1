//! Tool errors: a stable code an agent can branch on and a sentence saying
//! what was wrong and what to do next.

use crate::store::StoreError;
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

/// Stable error codes. The wire form is SCREAMING_SNAKE_CASE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
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
    /// Over a rate limit; `data.retry_after_ms` says when to try again.
    RateLimited,
    /// Over a standing quota (open channels, a channel's size); the message
    /// says what to do.
    QuotaExceeded,
    BotError,
    /// The bearer token was revoked or expired while a call waited.
    TokenInvalid,
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
            Code::QuotaExceeded => "QUOTA_EXCEEDED",
            Code::BotError => "BOT_ERROR",
            Code::TokenInvalid => "TOKEN_INVALID",
            Code::Internal => "INTERNAL",
        }
    }
}

/// A tool that ran and failed.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ToolError {
    pub code: Code,
    /// What was wrong and what to do.
    pub message: String,
    /// Extra structured detail (e.g. the caller's seats for `SLOT_REQUIRED`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

/// The structured content of a failed tool call: `{"error": {...}}`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ToolFailure<'a> {
    pub error: &'a ToolError,
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
}

impl std::fmt::Display for ToolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl From<StoreError> for ToolError {
    fn from(e: StoreError) -> Self {
        if e.is_disk_full() || e.is_read_only() || e.is_io_failure() {
            tracing::error!(error = %e, "the database takes no writes");
            return Self::new(
                Code::Internal,
                "The server cannot store anything right now (its disk is full, read-only or failing); nothing was changed. Try again later: the operator's health check shows it.",
            );
        }
        ToolError::internal(e)
    }
}
