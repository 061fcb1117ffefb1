#!/usr/bin/env bash
# The same suites against PostgreSQL (docs/scale-out.md): starts Debian's
# PostgreSQL on a temporary data directory as its unprivileged `postgres`
# user, listening on 127.0.0.1 only, and runs the daemon's unit and
# integration suites (the crash test with its 20 kills included) and the
# end-to-end tests of channels, bots, delivery, signed transcripts and
# several daemons with MCPMP_TEST_POSTGRES set: every test gets a schema of
# its own in one database instead of its SQLite file (`testing.rs`,
# `tests/it/util.rs`, `tests/e2e/conftest.py`). The OAuth client suites (55,
# 56, 90's OAuth tests) and the packaging steps stay SQLite-only: they
# exercise clients and packages, not the store, and would add minutes.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/steps/deps.sh
deps_debian
deps_kernel # the e2e bots run in the sandbox
deps_python

pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
work=$(mktemp -d /tmp/mcpmp-postgres-XXXXXX)
chmod 755 "$work"
chown postgres: "$work"
cleanup() {
    runuser -u postgres -- "$pgbin/pg_ctl" -D "$work/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
# A free port on loopback (the kernel picks it; the server binds it next).
port=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# Trust authentication: the server accepts connections from this machine's
# loopback only, for the length of this step.
runuser -u postgres -- "$pgbin/initdb" -D "$work/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
runuser -u postgres -- "$pgbin/pg_ctl" -D "$work/data" -l "$work/server.log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$work -c max_connections=500" start >/dev/null
runuser -u postgres -- "$pgbin/createdb" -h 127.0.0.1 -p "$port" mcpmp
export MCPMP_TEST_POSTGRES="postgres://postgres@127.0.0.1:$port/mcpmp"
echo "PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port ($work)"

cargo build --workspace --locked
cargo test -p mcp-multiplayer --locked --lib
cargo test -p mcp-multiplayer --locked --test it
PYTHONPATH="$PWD/.test-deps/py" /usr/bin/python3 -m pytest -c tests/e2e/pytest.ini -q \
    tests/e2e/test_core.py tests/e2e/test_bots.py tests/e2e/test_trust.py tests/e2e/test_transcripts.py \
    tests/e2e/test_scale.py
