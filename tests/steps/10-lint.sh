#!/usr/bin/env bash
# Formatting and lints, as CI demands them.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/steps/deps.sh
deps_debian
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
