//! Integration tests of the daemon: one test binary, shared helpers in
//! `util`. Each test starts a real `mcp-multiplayer serve` on 127.0.0.1:0
//! with its own SQLite file and talks HTTP to it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod util;

mod admin;
mod cli;
mod crash;
mod fork;
mod http;
mod oauth;
mod page;
mod pool;
mod robustness;
mod scale;
mod surface;
mod tools;
mod transcripts;
