#!/usr/bin/env bash
# Rust unit and integration tests of the whole workspace.
set -euo pipefail
cargo build --workspace --locked
cargo test --workspace --locked
