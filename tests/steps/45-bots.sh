#!/usr/bin/env bash
# Builtin bots: pytest suite driving every bot through bots/harness/harness.py
# (language layer + ctx API), `harness.py --check` on each, and whole games
# inside the real sandbox-runner.
set -euo pipefail
cd "$(dirname "$0")/../.."

. tests/steps/deps.sh
deps_debian # pytest, requests, openssl, pyflakes3
deps_kernel # the sandboxed games

pyflakes3 bots/*.py bots/tests/*.py

# bots/tests/test_check.py runs `harness.py --check` on every builtin.
# bots/tests/test_sandboxed.py plays the games inside the real sandbox-runner:
# build it (a no-op after step 30 built it) and point the tests at it.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$(pwd)/target}"
cargo build --locked -q -p sandbox-runner
export SANDBOX_RUNNER="$CARGO_TARGET_DIR/debug/sandbox-runner"
export PYTHONDONTWRITEBYTECODE=1
exec /usr/bin/python3 -m pytest -q -p no:cacheprovider bots/tests
