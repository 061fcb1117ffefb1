#!/usr/bin/env bash
# End-to-end tests: real daemon, real sandbox, the official Python MCP SDK and
# the pinned third-party OAuth clients. Runs last so its summary line closes
# the suite's output. The channel page's browser tests (test_page.py) are
# step 80's.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/steps/deps.sh
deps_debian
deps_kernel # a test runs the daemon as uid 65534 (user-namespace mode)
deps_python
deps_node
cargo build --workspace --locked
# test_replay.py runs one daemon's bots on Python 3.13 (what nixpkgs ships).
HARNESS_PYTHON313=$(deps_python313)
export HARNESS_PYTHON313
PYTHONPATH="$PWD/.test-deps/py" /usr/bin/python3 -m pytest -c tests/e2e/pytest.ini tests/e2e -q --ignore=tests/e2e/test_page.py
