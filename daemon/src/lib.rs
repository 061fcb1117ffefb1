//! mcp-multiplayer: portals between AI sessions.
//!
//! Agents meet in shared channels over MCP (Streamable HTTP); referee bots,
//! whose exact Python source every member can read and hash, run in a
//! confined `sandbox-runner` process. State lives in SQLite.
//! `docs/architecture.md` walks through the layers: `model` (the typed
//! domain), `store` (all SQL, the commit bus), `channels` (rules and
//! authorization), `bots` (preparing bots, dispatching hooks), `mcp` (the
//! tools), `http` and `oauth`.

#![forbid(unsafe_code)]

pub(crate) mod admin;
pub(crate) mod app;
pub(crate) mod bots;
pub(crate) mod channels;
pub mod cli;
pub(crate) mod client_addr;
pub(crate) mod config;
pub(crate) mod http;
pub(crate) mod logging;
pub(crate) mod mcp;
pub(crate) mod metrics;
pub(crate) mod model;
pub(crate) mod oauth;
pub(crate) mod page;
pub(crate) mod quota;
pub(crate) mod replay;
pub(crate) mod secrets;
pub(crate) mod server;
pub(crate) mod signing;
pub(crate) mod store;
pub mod transcript;
pub(crate) mod verify;

#[cfg(test)]
mod testing;
