#!/usr/bin/env bash
# The whole test suite: runs every tests/steps/NN-*.sh in order, stopping at
# the first failure. Each step installs what it needs (idempotently), so this
# works on a fresh Debian machine with Rust and Python 3. Run as root in CI.
set -euo pipefail
cd "$(dirname "$0")"
for step in tests/steps/[0-9][0-9]-*.sh; do
  echo "==> ${step}"
  bash "${step}"
done
