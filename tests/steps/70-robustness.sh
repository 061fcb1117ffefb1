#!/usr/bin/env bash
# Robustness under hostile load, against a real daemon: quotas, slow and
# idle connection floods at the open-file limit, SIGTERM with calls in
# flight and a closed or full stderr, secrets in a trace log, a full disk
# and a read-only database (tmpfs mounts, another uid), memory under large
# parallel reads and idle sessions. Needs root (mounts, setpriv); the tests
# clean up their mounts. Run under the shared lock:
#   flock /tmp/mcpmp-root-tests.lock tests/steps/70-robustness.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "$(id -u)" -ne 0 ]; then
  echo "70-robustness: needs root (tmpfs mounts, running the daemon as another uid)" >&2
  exit 1
fi
cargo build --workspace --locked
# One at a time: several tests measure the daemon's memory or fill its
# file table, which parallel neighbours would disturb.
cargo test -p mcp-multiplayer --locked --test it -- --include-ignored --test-threads=1 \
  robustness:: admin::
