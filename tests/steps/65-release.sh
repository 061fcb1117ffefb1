#!/usr/bin/env bash
# Release artifacts, built and installed the way self-hosters get them
# (docs/install.md), each one exercised for real:
#   1. the release build: stripped, each binary <= 15 MB (sizes printed; the
#      README records them)
#   2. static x86_64 binaries (x86_64-unknown-linux-musl): no dynamic
#      loader, no shared library; the sandbox suite against the static runner
#      as root (root mode) and as uid 65534 (user-namespace mode); the static
#      daemon serves, passes its sandbox self-check and referees a GuessBot
#      game, in both modes (packaging/ci/smoke.py)
#   3. the .deb (packaging/deb/build.sh, cargo-deb): its contents, then
#      installed with apt in a copy-on-write view of this machine booted with
#      a real systemd, the daemon started by the packaged unit, a GuessBot game
#      through it, an upgrade that keeps the channel, `remove` keeping config
#      and state, `purge` leaving nothing (packaging/ci/deb-test.sh)
#   4. the OCI image (Dockerfile) built and run with podman: with the
#      documented flags the sandbox self-check passes and a GuessBot game is
#      played; with the container default seccomp profile the self-check
#      fails, so the profile is needed (packaging/ci/oci-test.sh)
#   5. aarch64, with MCPM_AARCH64=1 only: the static daemon built with
#      cargo-zigbuild (the runner does not build for aarch64 yet; see
#      packaging/ci/aarch64.sh and docs/install.md)
# Run as root, under the shared lock (it creates a network namespace, boots
# systemd in namespaces and runs containers).
#
# Time on the 2-core machine: about 3 minutes when nothing needs building
# (tools, image base and builds present). From cold add two release builds,
# glibc and musl, about 6.5 CPU-minutes each (9-10 minutes each while other
# builds share the machine), cargo-deb's install (about 1.5 CPU-minutes) and
# the image's Debian base (debootstrap, under 2 minutes; kept in /var/cache).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
PY=/usr/bin/python3
MUSL=x86_64-unknown-linux-musl  # as DEPS_MUSL in tests/steps/deps.sh
MAX_BYTES=$((15 * 1000 * 1000))
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
T=$CARGO_TARGET_DIR

say() { printf '\n== %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || fail "65-release: run as root"

# --- what this step needs (tests/steps/deps.sh: Debian packages, the musl
# target, cargo-deb) --------------------------------------------------------------
. tests/steps/deps.sh
deps_debian
deps_release
export CARGO_DEB

# --- 1. release build ------------------------------------------------------------
say "1. release build (stripped, each binary <= 15 MB)"
t0=$SECONDS
cargo build --release --locked -p mcp-multiplayer -p sandbox-runner
echo "  built in $((SECONDS - t0)) s"
# check_bin FILE: stripped (no debug info, no symbol table) and small enough
check_bin() {
    local size
    size=$(stat -c %s "$1") || return 1
    if readelf -SW "$1" | grep -Eq '\.(debug_info|debug_line|symtab)\b'; then
        echo "  $1: has debug info or a symbol table"
        return 1
    fi
    ((size <= MAX_BYTES)) || { echo "  $1: $size bytes, over $MAX_BYTES"; return 1; }
    printf '  ok: %-16s %s MB, stripped\n' "$(basename "$1")" "$(awk -v s="$size" 'BEGIN { printf "%.1f", s / 1000000 }')"
}
check_release() { check_bin "$1/mcp-multiplayer" && check_bin "$1/sandbox-runner"; }
check_release "$T/release" || fail "the release binaries are not stripped or too big"

# --- 2. static binaries ------------------------------------------------------------
say "2. static x86_64 build ($MUSL)"
t0=$SECONDS
cargo build --release --locked --target "$MUSL" -p mcp-multiplayer -p sandbox-runner
echo "  built in $((SECONDS - t0)) s"
S=$T/$MUSL/release
check_release "$S" || fail "the static binaries are not stripped or too big"
# check_static BIN: no program interpreter, no shared library
check_static() {
    if readelf -lW "$1" | grep -q 'Requesting program interpreter'; then
        echo "  $1 asks for a dynamic loader"
        return 1
    fi
    if readelf -dW "$1" | grep -q '(NEEDED)'; then
        echo "  $1 needs shared libraries: $(readelf -dW "$1" | grep '(NEEDED)')"
        return 1
    fi
    echo "  ok: $(basename "$1") is static ($(readelf -hW "$1" | awk -F: '/Type:/ {gsub(/^ +/, "", $2); print $2}'))"
}
check_static "$S/mcp-multiplayer" || fail "the static daemon is not static"
check_static "$S/sandbox-runner" || fail "the static runner is not static"
if check_static "$T/release/mcp-multiplayer" >/dev/null; then
    fail "check_static passed a dynamically linked binary"
fi
echo "  ok: fails on the glibc build (dynamically linked)"

# The sandbox suite's test binary (a debug build, as in 30-sandbox.sh), run
# against the static runner in a copy nobody-readable, with the same kind of
# test host in a network namespace (its own names and addresses).
TEST_BIN=$(cargo test --locked -p sandbox-runner --test sandbox --no-run --message-format=json 2>/dev/null |
    "$PY" -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "sandbox" and m.get("executable"):
        print(m["executable"])')
[[ -x $TEST_BIN ]] || fail "no sandbox test binary"
if check_bin "$T/debug/sandbox-runner" >/dev/null; then
    fail "check_bin passed a debug build"
fi
echo "  ok: the size and strip check fails on a debug build"
W=$(mktemp -d /tmp/mcpm-rel.XXXXXX)
NS=mcpmrel$$
cleanup() {
    [[ -n ${SERVER_PID:-} ]] && kill "$SERVER_PID" 2>/dev/null || true
    ip netns del "$NS" 2>/dev/null || true
    ip route del local 10.213.253.1 dev lo 2>/dev/null || true
    rm -rf "$W"
}
trap cleanup EXIT
cp "$TEST_BIN" "$W/sandbox-tests"
cp "$S/sandbox-runner" "$S/mcp-multiplayer" "$W/"
cp -r bots "$W/bots"
rm -rf "$W/bots/tests" "$W/bots/harness/tests"
find "$W/bots" -name __pycache__ -prune -exec rm -rf {} +
"$PY" -m compileall -q --invalidation-mode checked-hash "$W/bots/harness"
mkdir -p "$W/www" "$W/tmp" "$W/state-root" "$W/state-user"
echo "hello from the test host" >"$W/www/index.html"
chmod -R a+rX "$W"
chmod 1777 "$W/tmp"

ip link del mcpmrel-h 2>/dev/null || true # left over from an interrupted run
ip netns add "$NS"
ip link add mcpmrel-h type veth peer name mcpmrel-p
ip link set mcpmrel-p netns "$NS"
ip addr add 10.213.252.1/30 dev mcpmrel-h
ip link set mcpmrel-h up
ip -n "$NS" addr add 10.213.252.2/30 dev mcpmrel-p
ip -n "$NS" link set mcpmrel-p up
ip -n "$NS" link set lo up
ip route del local 10.213.253.1 dev lo 2>/dev/null || true
ip route add local 10.213.253.1 dev lo
ip netns exec "$NS" "$PY" -m http.server 80 --bind 10.213.252.2 --directory "$W/www" >/dev/null 2>&1 &
SERVER_PID=$!
ip netns exec "$NS" "$PY" - <<'PYEOF'
import socket, time
for _ in range(250):
    try:
        socket.create_connection(("10.213.252.2", 80), timeout=1).close()
        break
    except OSError:
        time.sleep(0.02)  # the server's socket appears when it is up: nothing to block on
else:
    raise SystemExit("test host did not come up")
PYEOF
# Unprivileged user namespaces, for the runs as uid 65534.
[[ ! -e /proc/sys/kernel/unprivileged_userns_clone ]] || echo 1 >/proc/sys/kernel/unprivileged_userns_clone
[[ ! -e /proc/sys/kernel/apparmor_restrict_unprivileged_userns ]] || echo 0 >/proc/sys/kernel/apparmor_restrict_unprivileged_userns

suite_env=(SANDBOX_TEST_HTTP_ADDR=10.213.252.2 SANDBOX_TEST_HTTP_CIDR=10.213.252.0/30
    SANDBOX_TEST_HOST_SIDE_ADDR=10.213.252.1 SANDBOX_TEST_LOCAL_ROUTE_ADDR=10.213.253.1
    SANDBOX_TEST_RUNNER="$W/sandbox-runner" SANDBOX_TEST_HARNESS_DIR="$W/bots/harness"
    SANDBOX_TEST_REQUIRE_HOST=1)
say "2a. sandbox suite against the static runner, root mode"
(cd "$W" && env "${suite_env[@]}" TMPDIR="$W/tmp" ./sandbox-tests -q) || fail "sandbox suite (static runner, root mode)"
say "2b. sandbox suite against the static runner, user-namespace mode (uid 65534)"
(cd "$W" && setpriv --reuid=65534 --regid=65534 --clear-groups \
    env -i PATH=/usr/bin:/bin HOME="$W/tmp" TMPDIR="$W/tmp" "${suite_env[@]}" ./sandbox-tests -q) ||
    fail "sandbox suite (static runner, user-namespace mode)"

say "2c. the static daemon: serve, sandbox self-check, a GuessBot game, SIGTERM"
smoke=("$PY" packaging/ci/smoke.py --daemon "$W/mcp-multiplayer" --runner "$W/sandbox-runner" --bots "$W/bots")
echo -n "  root mode: " && "${smoke[@]}" --state "$W/state-root" || fail "static daemon smoke test, root mode"
echo -n "  user-namespace mode (uid 65534): " && "${smoke[@]}" --state "$W/state-user" --uid 65534 ||
    fail "static daemon smoke test, user-namespace mode"

# --- 3. the .deb ---------------------------------------------------------------------
say "3. the Debian package"
DEB=$(packaging/deb/build.sh --quiet 2>"$W/deb-build.log" | tail -n1) || { cat "$W/deb-build.log"; fail "packaging/deb/build.sh"; }
[[ -f $DEB ]] || { cat "$W/deb-build.log"; fail "packaging/deb/build.sh printed no .deb path ($DEB)"; }
echo "  built $DEB ($(stat -c %s "$DEB") bytes)"
packaging/ci/deb-test.sh "$DEB" || fail "the .deb under systemd"
# The same test must fail on a package whose purge forgets the state.
dpkg-deb -R "$DEB" "$W/broken-deb"
sed -i '/^    rm -rf \/var\/lib\/mcp-multiplayer$/d' "$W/broken-deb/DEBIAN/postrm"
dpkg-deb -b "$W/broken-deb" "$W/broken.deb" >/dev/null
if packaging/ci/deb-test.sh "$W/broken.deb" >"$W/broken-deb.log" 2>&1; then
    cat "$W/broken-deb.log"
    fail "deb-test.sh passed a package whose purge leaves /var/lib/mcp-multiplayer"
fi
grep -q 'left after purge: /var/lib/mcp-multiplayer' "$W/broken-deb.log" ||
    { cat "$W/broken-deb.log"; fail "deb-test.sh failed on the broken package, but not for its leftover state"; }
echo "  ok: fails on a package whose purge leaves /var/lib/mcp-multiplayer"

# --- 4. the OCI image ------------------------------------------------------------------
say "4. the OCI image (Dockerfile) with podman"
packaging/ci/oci-test.sh "$S" || fail "the OCI image"

# --- 5. aarch64 --------------------------------------------------------------------------
say "5. aarch64 (aarch64-unknown-linux-musl)"
packaging/ci/aarch64.sh || fail "the aarch64 build (MCPM_AARCH64=1)"

say "all release checks passed"
