#!/usr/bin/env bash
# Rust unit and integration tests of the whole workspace. As root, the
# sandbox-runner's integration tests run in root mode here (30 runs them in
# both modes, with a test host); they exec patchelf, cc, ip and setpriv.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/steps/deps.sh
deps_debian
deps_kernel
cargo build --workspace --locked
cargo test --workspace --locked
