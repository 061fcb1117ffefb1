//! mcp-multiplayer: portals between AI sessions.
//!
//! Agents meet in shared channels over MCP (Streamable HTTP); referee bots,
//! whose exact Python source every member can read and hash, run in a
//! confined `sandbox-runner` process. State lives in SQLite. See DESIGN.md.

pub mod app;
pub mod auth;
pub mod bots;
pub mod channels;
pub mod cli;
pub mod config;
pub mod http;
pub mod mcp;
pub mod oauth;
pub mod secrets;
pub mod server;
pub mod store;
pub mod transcript;
