#!/usr/bin/env bash
# The channel page in a real browser: headless Chromium watches a GuessBot
# game played by two Python-SDK clients through a spectator link (live within
# 2 s, ends verified with the server's signature and the commitment and seed
# checked; its downloaded export passes both offline verifiers), a Blackjack
# hand whose deck the browser re-derives, a tampered database and a signed
# head altered in transit ("Broken at seq N"), hostile strings under the CSP,
# a revoked link, the browser's canonical JSON against the daemon's.
# Screenshots of each state go to target/test-artifacts/page.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/steps/deps.sh
deps_debian
deps_kernel
deps_python
deps_chromium
cargo build --workspace --locked
PYTHONPATH="$PWD/.test-deps/py" /usr/bin/python3 -m pytest -c tests/e2e/pytest.ini tests/e2e/test_page.py -q
echo "page: screenshots in target/test-artifacts/page"
