#!/usr/bin/env bash
# The OCI image, built from the Dockerfile and run with podman (rootful, as
# a Docker host runs its containers), as docs/install.md says:
#   1. the image builds on a Debian 12 base (made here with debootstrap and
#      imported: no registry is reachable from CI) from the static binaries;
#   2. run with the documented flags (the seccomp profile in
#      packaging/oci/seccomp.json, no capabilities, no-new-privileges, a
#      read-only root, a passphrase secret, a state volume): the daemon runs
#      unprivileged, /healthz reports the sandbox self-check ok, and two
#      clients play a GuessBot game through the published port;
#   3. the same container under the runtime's default seccomp profile fails
#      its sandbox self-check: the profile is what makes bots work;
#   4. the profile allows every syscall the runner names
#      (`sandbox-runner policy --json`) for any caller.
#
# Usage: oci-test.sh STATIC_RELEASE_DIR   (as root)
set -euo pipefail
BIN=$(realpath "$1")
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PY=/usr/bin/python3
BASE_ROOT=${MCPM_OCI_BASE_ROOT:-/var/cache/mcp-multiplayer-oci-base}
BASE_IMAGE=localhost/mcp-multiplayer-test-base:bookworm
IMAGE=localhost/mcp-multiplayer:test
NAME=mcpm-oci-$$
W=$(mktemp -d /tmp/mcpm-oci.XXXXXX)
# This machine's settings for podman, not the image's: runc (crun refuses a
# hybrid cgroup hierarchy), and no default ulimits (raising them needs
# CAP_SYS_RESOURCE, which a CI container may not have).
printf '[containers]\ndefault_ulimits = []\n[engine]\nruntime = "runc"\n' >"$W/containers.conf"
export CONTAINERS_CONF=$W/containers.conf
cleanup() {
    podman rm -f "$NAME" "$NAME-default" >/dev/null 2>&1 || true
    rm -rf "$W"
}
trap cleanup EXIT

# --- 4. the profile covers the runner's lists -----------------------------------
"$BIN/sandbox-runner" policy --json >"$W/policy.json"
"$PY" - "$ROOT/packaging/oci/seccomp.json" "$W/policy.json" <<'PYEOF'
import json, sys
profile, policy = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert profile["defaultAction"] == "SCMP_ACT_ERRNO", profile["defaultAction"]
free = set()
for rule in profile["syscalls"]:
    if rule["action"] == "SCMP_ACT_ALLOW" and not (rule.get("args") or rule.get("includes") or rule.get("excludes")):
        free |= set(rule["names"])
named = set(policy["confine_syscalls"]) | set(policy["bot_syscalls"]) | set(policy.get("template_syscalls", []))
missing = sorted(named - free)
assert not missing, f"packaging/oci/seccomp.json does not allow {missing} (regenerate it: packaging/oci/seccomp-profile.py)"
print(f"  ok: the profile allows all {len(free & named)} syscalls the runner names")
PYEOF

# --- 1. base and build ------------------------------------------------------------
if ! podman image exists "$BASE_IMAGE"; then
    if [[ ! -f $BASE_ROOT/.complete ]]; then
        mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
        mirror=${mirror:-http://deb.debian.org/debian}
        echo "  making the Debian 12 base in $BASE_ROOT (debootstrap from $mirror)"
        rm -rf "$BASE_ROOT"
        debootstrap --variant=minbase bookworm "$BASE_ROOT" "$mirror" >"$W/debootstrap.log" 2>&1 ||
            { tail -20 "$W/debootstrap.log"; exit 1; }
        touch "$BASE_ROOT/.complete"
    fi
    tar --exclude=./.complete --exclude=./proc/* --exclude=./sys/* --exclude=./dev/* \
        -C "$BASE_ROOT" -c . | podman import -q - "$BASE_IMAGE" >/dev/null
fi
C=$W/context
mkdir -p "$C/target/x86_64-unknown-linux-musl/release" "$C/bots/harness" "$C/bots/tests"
cp "$ROOT/Dockerfile" "$ROOT/.dockerignore" "$C/"
cp "$BIN/mcp-multiplayer" "$BIN/sandbox-runner" "$C/target/x86_64-unknown-linux-musl/release/"
cp "$ROOT"/bots/*.py "$C/bots/"
cp "$ROOT"/bots/harness/*.py "$C/bots/harness/"
echo "must not reach the image" >"$C/bots/tests/excluded.txt" # .dockerignore keeps it out
t0=$SECONDS
# --network=host: the build's apt-get reaches the Debian mirror as this host does.
podman build -q --network=host --build-arg BASE_IMAGE="$BASE_IMAGE" -t "$IMAGE" "$C" >"$W/build.log" 2>&1 ||
    { cat "$W/build.log"; echo "  FAIL: podman build"; exit 1; }
echo "  ok: image built in $((SECONDS - t0)) s ($(podman image inspect -f '{{.Size}}' "$IMAGE") bytes)"
if podman run --rm --entrypoint /bin/sh "$IMAGE" -c 'ls /usr/share/mcp-multiplayer/bots/tests' >/dev/null 2>&1; then
    echo "  FAIL: .dockerignore let bots/tests into the image"
    exit 1
fi

# --- 2. run with the documented flags ------------------------------------------------
uid=$(podman run --rm --entrypoint id "$IMAGE" -u)
[[ $uid == 10001 ]] || { echo "  FAIL: the image's user is uid $uid, not the documented 10001"; exit 1; }
mkdir -p "$W/state" "$W/secrets"
chown "$uid:$uid" "$W/state"
chmod 0700 "$W/state"
(umask 077 && head -c 24 /dev/urandom | base64 >"$W/secrets/passphrase")
chown "$uid" "$W/secrets/passphrase"
port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# run_container NAME PORT [FLAGS...]: the image with the documented mounts
run_container() {
    local name=$1 p=$2
    shift 2
    podman run -d --name "$name" -p "127.0.0.1:$p:8201" \
        --cap-drop ALL --security-opt no-new-privileges --read-only --tmpfs /tmp \
        -v "$W/state:/var/lib/mcp-multiplayer" \
        -v "$W/secrets/passphrase:/run/secrets/mcp-multiplayer-passphrase:ro" \
        "$@" "$IMAGE" >/dev/null
}
# sandbox_status PORT: the self-check's result in /healthz, once it is known
sandbox_status() {
    "$PY" - "$1" <<'PYEOF'
import json, sys, time, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}/healthz"
for _ in range(300):
    try:
        h = json.load(urllib.request.urlopen(url, timeout=2))
        if h.get("sandbox") != "checking":
            print(json.dumps(h["sandbox"]))
            break
    except OSError:
        pass
    time.sleep(0.1)  # the container's port and self-check report through /healthz only
else:
    print('"no answer"')
PYEOF
}
run_container "$NAME" "$port" --security-opt seccomp="$ROOT/packaging/oci/seccomp.json"
status=$(sandbox_status "$port")
if [[ $status != '"ok"' ]]; then
    echo "  FAIL: /healthz sandbox self-check with the profile: $status"
    podman logs "$NAME" 2>&1 | tail -20 | sed 's/^/    log: /'
    exit 1
fi
pid=$(podman inspect -f '{{.State.Pid}}' "$NAME")
echo "  ok: /healthz sandbox self-check ok; the daemon runs as uid $(awk '/^Uid:/ {print $2}' "/proc/$pid/status")," \
    "$(grep CapEff "/proc/$pid/status" | tr -s '\t ' ' ')"
alice=$(podman exec "$NAME" mcp-multiplayer token create alice 2>/dev/null)
bob=$(podman exec "$NAME" mcp-multiplayer token create bob 2>/dev/null)
if ! game=$(timeout 180 "$PY" "$ROOT/nix/tests/client.py" play "http://127.0.0.1:$port" "$alice" "$bob" 2>&1); then
    echo "  FAIL: the GuessBot game through the container: $game"
    podman logs "$NAME" 2>&1 | tail -20 | sed 's/^/    log: /'
    exit 1
fi
echo "  ok: two clients played GuessBot through the published port: $game"
podman stop -t 30 "$NAME" >/dev/null
code=$(podman inspect -f '{{.State.ExitCode}}' "$NAME")
[[ $code == 0 ]] || { echo "  FAIL: the daemon exited with $code on stop"; exit 1; }
echo "  ok: podman stop: the daemon exited 0"

# --- 3. the runtime's default profile breaks the sandbox ----------------------------------
port2=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
run_container "$NAME-default" "$port2"
status=$(sandbox_status "$port2")
if [[ $status == '"ok"' || $status != *error* ]]; then
    echo "  FAIL: under the default seccomp profile the self-check said $status (expected an error)"
    exit 1
fi
echo "  ok: under the runtime's default profile the self-check fails: $status"
