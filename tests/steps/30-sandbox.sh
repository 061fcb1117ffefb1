#!/usr/bin/env bash
# The sandbox-runner suite in both confinement modes:
#   1. as root          -> root mode (drop to uid/gid 65534, no user namespace)
#   2. as nobody (65534) -> user-namespace mode
# and again on Python 3.13 (what nixpkgs ships).
# All runs use the real harness (bots/harness) and a test HTTP host in a
# network namespace this script creates (10.213.250.0/30, port 80). This
# host's own side of that link (10.213.250.1) and an address it answers for
# through a local route only (10.213.251.1, AnyIP) must stay unreachable.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$(pwd)

if [ "$(id -u)" -ne 0 ]; then
  echo "30-sandbox: must run as root (it tests root mode and switches to nobody)" >&2
  exit 1
fi

# --- what the suite needs (tests/steps/deps.sh) ------------------------------
. tests/steps/deps.sh
deps_debian
deps_kernel # unprivileged user namespaces, for mode 2

# --- build once, as root ------------------------------------------------------
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
cargo build --locked -p sandbox-runner
TEST_BIN=$(cargo test --locked -p sandbox-runner --test sandbox --no-run --message-format=json 2>/dev/null \
  | /usr/bin/python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "sandbox" and m.get("executable"):
        print(m["executable"])')
RUNNER_BIN="$CARGO_TARGET_DIR/debug/sandbox-runner"
[ -x "$TEST_BIN" ] && [ -x "$RUNNER_BIN" ]

# A copy nobody can read whatever the permissions of the clone's parents.
WORK=$(mktemp -d /tmp/sbx-ci.XXXXXX)
NS=sbxci$$
cleanup() {
  [ -n "${SERVER_PID:-}" ] && kill "$SERVER_PID" 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  ip route del local 10.213.251.1 dev lo 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
cp "$TEST_BIN" "$WORK/sandbox-tests"
cp "$RUNNER_BIN" "$WORK/sandbox-runner"
cp -r "$REPO/bots/harness" "$WORK/harness"
rm -rf "$WORK/harness/__pycache__" "$WORK/harness/tests"
# As installed for production (bots/harness/PROTOCOL.md, "Start-up").
/usr/bin/python3 -m compileall -q "$WORK/harness"
mkdir -p "$WORK/www" "$WORK/tmp"
echo "hello from the test host" > "$WORK/www/index.html"
chmod -R a+rX "$WORK"
chmod 1777 "$WORK/tmp"

# --- the test host --------------------------------------------------------------
ip link del sbxci-h 2>/dev/null || true   # left over from an interrupted run
ip netns add "$NS"
ip link add sbxci-h type veth peer name sbxci-p
ip link set sbxci-p netns "$NS"
ip addr add 10.213.250.1/30 dev sbxci-h
ip link set sbxci-h up
ip -n "$NS" addr add 10.213.250.2/30 dev sbxci-p
ip -n "$NS" link set sbxci-p up
ip -n "$NS" link set lo up
ip route del local 10.213.251.1 dev lo 2>/dev/null || true   # interrupted run
ip route add local 10.213.251.1 dev lo
ip netns exec "$NS" /usr/bin/python3 -m http.server 80 --bind 10.213.250.2 \
  --directory "$WORK/www" >/dev/null 2>&1 &
SERVER_PID=$!
ip netns exec "$NS" /usr/bin/python3 - <<'PY'
import socket, time
for _ in range(250):
    try:
        socket.create_connection(("10.213.250.2", 80), timeout=1).close()
        break
    except OSError:
        time.sleep(0.02)
else:
    raise SystemExit("test host did not come up")
PY

export SANDBOX_TEST_HTTP_ADDR=10.213.250.2
export SANDBOX_TEST_HTTP_CIDR=10.213.250.0/30
export SANDBOX_TEST_HOST_SIDE_ADDR=10.213.250.1
export SANDBOX_TEST_LOCAL_ROUTE_ADDR=10.213.251.1
export SANDBOX_TEST_RUNNER="$WORK/sandbox-runner"
export SANDBOX_TEST_HARNESS_DIR="$WORK/harness"
export SANDBOX_TEST_REQUIRE_HOST=1

# The suite as root (root mode) and as nobody (user-namespace mode, with
# only the test's own environment), each with extra VAR=value settings.
suite_as_root() {
  (cd "$WORK" && env TMPDIR="$WORK/tmp" "$@" ./sandbox-tests)
}
suite_as_nobody() {
  (cd "$WORK" && setpriv --reuid=65534 --regid=65534 --clear-groups \
    env -i PATH=/usr/bin:/bin HOME="$WORK/tmp" TMPDIR="$WORK/tmp" \
    SANDBOX_TEST_HTTP_ADDR="$SANDBOX_TEST_HTTP_ADDR" SANDBOX_TEST_HTTP_CIDR="$SANDBOX_TEST_HTTP_CIDR" \
    SANDBOX_TEST_HOST_SIDE_ADDR="$SANDBOX_TEST_HOST_SIDE_ADDR" \
    SANDBOX_TEST_LOCAL_ROUTE_ADDR="$SANDBOX_TEST_LOCAL_ROUTE_ADDR" \
    SANDBOX_TEST_RUNNER="$SANDBOX_TEST_RUNNER" SANDBOX_TEST_HARNESS_DIR="$SANDBOX_TEST_HARNESS_DIR" \
    SANDBOX_TEST_REQUIRE_HOST=1 "$@" ./sandbox-tests)
}

# Each mode three times: fresh runners, every job through a pre-warmed
# runner (`--prewarm`, SANDBOX_TEST_PREWARM=1), and every job without
# network through a fork template (`--template`, SANDBOX_TEST_FORK=1): each
# must hold the same attacks.
for HOW in fresh prewarm fork; do
PREWARM=0; FORK=0
[ "$HOW" = prewarm ] && PREWARM=1
[ "$HOW" = fork ] && FORK=1
echo "--- sandbox suite, root mode (uid $(id -u)), $HOW"
suite_as_root SANDBOX_TEST_PREWARM=$PREWARM SANDBOX_TEST_FORK=$FORK

echo "--- sandbox suite, user-namespace mode (uid 65534), $HOW"
suite_as_nobody SANDBOX_TEST_PREWARM=$PREWARM SANDBOX_TEST_FORK=$FORK
done

# Python 3.13, the interpreter nixpkgs ships (and the flake's package runs
# bots on): the same attacks in both modes, fresh and through fork
# templates. pyenv's build (deps_python313; HARNESS_PYTHON313 may name
# another), which root mode runs where it is (the runner binds its prefix
# into the sandbox).
py313=$(deps_python313)
# The harness's bytecode for 3.13 too, as an installation compiles it.
"$py313" -m compileall -q "$WORK/harness"
chmod -R a+rX "$WORK/harness"
# User-namespace mode is how the systemd unit and the NixOS module run the
# daemon (an unprivileged user), and it cannot enter /root: a copy of the
# 3.13 prefix under $WORK, its run paths pointed at the copy's own lib, as
# an interpreter installed there would have them.
cp -a "$(cd "$(dirname "$py313")/.." && pwd)" "$WORK/py313"
find "$WORK/py313/bin" "$WORK/py313/lib" -maxdepth 4 -type f \( -name 'python3.13' -o -name '*.so*' \) \
    -exec sh -c 'patchelf --print-rpath "$1" >/dev/null 2>&1 && patchelf --set-rpath "$2" "$1"' \
    sh {} "$WORK/py313/lib" \;
chmod -R a+rX "$WORK/py313"
for HOW in fresh fork; do
FORK=0
[ "$HOW" = fork ] && FORK=1
echo "--- sandbox suite, root mode (uid $(id -u)), $HOW, on $("$py313" --version)"
suite_as_root SANDBOX_TEST_PYTHON="$py313" SANDBOX_TEST_FORK=$FORK

echo "--- sandbox suite, user-namespace mode (uid 65534), $HOW, on $("$py313" --version)"
suite_as_nobody SANDBOX_TEST_PYTHON="$WORK/py313/bin/python3.13" SANDBOX_TEST_FORK=$FORK
done
