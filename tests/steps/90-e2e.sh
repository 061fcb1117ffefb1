#!/usr/bin/env bash
# End-to-end tests: real daemon, real sandbox, the official Python MCP SDK as
# the clients. Runs last so its summary line closes the suite's output.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --workspace --locked
PYTHONPATH="$PWD/.test-deps/py" python3 -m pytest -c tests/e2e/pytest.ini tests/e2e -q
