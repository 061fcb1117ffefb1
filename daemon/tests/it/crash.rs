//! Crash safety under kill -9 (see crash.rs).
