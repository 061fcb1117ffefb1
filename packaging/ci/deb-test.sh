#!/usr/bin/env bash
# The .deb, installed, run, upgraded, removed and purged under a real systemd.
#
# The machine is not touched: the test runs in a copy-on-write view of it.
# An overlay whose lower layer is this machine's root file system and whose
# upper layer is a fresh tmpfs becomes / of private PID, mount, UTS, IPC and
# network namespaces (pivot_root), with its own /proc, /dev, /run, /tmp and a
# cgroup2 mount, and systemd boots as its PID 1 (as nix/ci/live-unit-test.sh
# does). Every file the package and its scripts write lands in the upper
# layer, which is read afterwards from outside: it is exactly what changed.
#
# Inside:
#   1. `apt-get install ./PKG.deb` (offline: its dependencies are those of
#      this machine): postinst makes the account, the directories, the
#      passphrase and the harness bytecode, and starts the unit;
#   2. the daemon runs under the packaged unit as its unprivileged user;
#      /healthz reports the sandbox self-check ok; two clients (tokens from
#      `mcp-multiplayer token create`) play a GuessBot game;
#   3. `apt-get install --reinstall` (the upgrade path: prerm upgrade,
#      postinst configure with the old version, a restart) keeps the channel;
#   4. `apt-get remove`: the service is gone, binaries, bots and unit are gone,
#      config, passphrase and database stay;
#   5. `apt-get purge`: config, passphrase and state are gone too, and of
#      everything the package changed only Debian's own records remain (dpkg
#      and apt state and logs, and the system account, which Debian keeps).
#
# The view differs from the machine in one file: the machine's image has a
# policy-rc.d that forbids service starts from maintainer scripts (as Docker
# images do); it is removed, as a real host has none. And one test-only
# drop-in, as in the live unit test (plus the daemon's output to a file, for
# diagnostics): in this nested systemd the credential directory reaches the
# service without the ACL a real host's systemd adds, so the daemon reads a
# service-owned copy of the passphrase (MCP_MULTIPLAYER_PASSPHRASE_FILE). It
# is in place before the package, so that postinst starts the unit with it.
#
# Usage: deb-test.sh PKG.deb   (as root; holds the apt lock while it runs, so
# that no install on the host changes the lower layer under the overlay)
set -euo pipefail
DEB=$(realpath "$1")
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PY=/usr/bin/python3
APT_LOCK=${MCPMP_APT_LOCK:-/tmp/mcpmp-apt.lock}
D=$(mktemp -d /tmp/mcpm-deb.XXXXXX)
# The upper layer may not lie inside the lower one (the root file system).
U=$(mktemp -d /dev/shm/mcpm-deb.XXXXXX)
CG=/sys/fs/cgroup
[[ -d $CG/unified ]] && CG=$CG/unified # hybrid hierarchy: the cgroup2 part
mapfile -t cg_before < <(find "$CG" -mindepth 1 -maxdepth 1 -type d | sort)
UNSHARE_PID=
PID1=

cleanup() {
    if [[ -n $PID1 ]] && kill -0 "$PID1" 2>/dev/null; then
        nsenter -t "$PID1" -m -p -- systemctl poweroff --no-block >/dev/null 2>&1 || kill -KILL "$PID1" 2>/dev/null || true
    fi
    [[ -n $UNSHARE_PID ]] && wait "$UNSHARE_PID" 2>/dev/null || true
    mapfile -t cg_after < <(find "$CG" -mindepth 1 -maxdepth 1 -type d | sort)
    for d in $(comm -13 <(printf '%s\n' "${cg_before[@]}") <(printf '%s\n' "${cg_after[@]}")); do
        find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
    rm -rf "$D" "$U"
}
trap cleanup EXIT

exec 8>"$APT_LOCK"
flock 8

mkdir -p "$U/upper" "$U/work" "$D/root" "$D/in"
cp "$DEB" "$D/in/mcp-multiplayer.deb"
cp "$ROOT/nix/tests/client.py" "$D/in/"
printf '[Unit]\nDescription=deb test target\nDefaultDependencies=no\n' >"$D/in/mcpm-deb.target"

cat >"$D/boot.sh" <<'BOOT'
#!/bin/bash
set -e
D=$1 U=$2
R=$D/root
mount --make-rprivate /
mount -t overlay mcpm-deb -o "lowerdir=/,upperdir=$U/upper,workdir=$U/work" "$R"
mount -t proc proc "$R/proc"
mount --rbind /sys "$R/sys"
umount -l "$R/sys/fs/cgroup"
mount -t cgroup2 cgroup2 "$R/sys/fs/cgroup"
mount --rbind /dev "$R/dev"
mount -t tmpfs -o mode=1777 mcpm-deb-shm "$R/dev/shm"
mount -t tmpfs -o mode=755 mcpm-deb-run "$R/run"
mount -t tmpfs -o mode=1777 mcpm-deb-tmp "$R/tmp"
mkdir -p "$R/run/mcpm-deb" "$R/run/systemd/system" "$R/run/old-root"
cp -a "$D/in/." "$R/run/mcpm-deb/"
cp "$D/in/mcpm-deb.target" "$R/run/systemd/system/"
# The unit's Wants=network-online.target would start the host's network
# units in here; masked, the want is simply dropped.
ln -s /dev/null "$R/run/systemd/system/network-online.target"
# The test-only drop-in (see the header): in /run, so it is no package's file.
mkdir -p "$R/run/systemd/system/mcp-multiplayer.service.d"
printf '[Unit]\nDefaultDependencies=no\n[Service]\nEnvironment=MCP_MULTIPLAYER_PASSPHRASE_FILE=/run/mcpm-deb/passphrase\nExecStartPre=+/bin/sh -c "install -m 0400 -o mcp-multiplayer /etc/mcp-multiplayer/passphrase /run/mcpm-deb/passphrase"\nStandardOutput=append:/run/mcpm-deb/daemon.log\nStandardError=append:/run/mcpm-deb/daemon.log\n' \
    >"$R/run/systemd/system/mcp-multiplayer.service.d/test.conf"
# This machine's image forbids starting services from maintainer scripts
# (a policy-rc.d that exits 101, as Docker images have); a real host has none.
rm -f "$R/usr/sbin/policy-rc.d"
cd "$R"
pivot_root . run/old-root
umount -l /run/old-root
ip link set lo up
export container=mcpm-deb
exec /lib/systemd/systemd --system --unit=mcpm-deb.target --log-target=console --log-level=warning
BOOT
chmod +x "$D/boot.sh"

# --- boot --------------------------------------------------------------------------
unshare --pid --fork --mount --uts --ipc --net "$D/boot.sh" "$D" "$U" >"$D/systemd.log" 2>&1 &
UNSHARE_PID=$!
for _ in $(seq 200); do
    PID1=$(awk '{print $1}' "/proc/$UNSHARE_PID/task/$UNSHARE_PID/children" 2>/dev/null || true)
    [[ -n $PID1 ]] && [[ $(readlink "/proc/$PID1/exe" 2>/dev/null) == */systemd ]] && break
    kill -0 "$UNSHARE_PID" 2>/dev/null || break
    PID1=
    sleep 0.05 # waiting for a process to exec: nothing to block on
done
in_ns() { nsenter -t "$PID1" -m -p -n -u -i -- "$@"; }
for _ in $(seq 400); do
    [[ -n $PID1 ]] || break
    in_ns test -S /run/systemd/private && break
    kill -0 "$PID1" 2>/dev/null || break
    sleep 0.05 # the manager's socket appears when it is up: nothing to block on
done
if [[ -z $PID1 ]] || ! in_ns test -S /run/systemd/private; then
    echo "deb: could not boot systemd as PID 1 of a namespace:" >&2
    cat "$D/systemd.log" >&2
    exit 1
fi
in_ns timeout 60 systemctl is-system-running --wait >/dev/null 2>&1 || true
echo "  systemd $(in_ns systemctl --version | awk 'NR==1{print $2}') is PID 1 over a copy-on-write view of this machine"

status=0
fail() {
    echo "  FAIL: $*"
    { in_ns systemctl status --no-pager mcp-multiplayer.service 2>&1 | sed 's/^/    /' | head -15; } || true
    { in_ns tail -n 30 /run/mcpm-deb/daemon.log 2>&1 | sed 's/^/    log: /'; } || true
    exit 1
}
# What the upper layer holds: every path with its type (whiteouts, character
# devices 0/0, are deletions of the machine's files).
snapshot() {
    (cd "$U/upper" && find . -mindepth 1 -printf '%y %p\n' | sort) >"$1"
}
healthy() {
    in_ns "$PY" - <<'PYEOF'
import json, sys, time, urllib.request
for _ in range(300):
    try:
        h = json.load(urllib.request.urlopen("http://127.0.0.1:8201/healthz", timeout=2))
        if h.get("sandbox") != "checking":
            print(json.dumps(h.get("sandbox")))
            sys.exit(0)
    except OSError:
        pass
    time.sleep(0.1)  # the unit is Type=exec and signals nothing when it listens: poll the port
print('"no answer"')
PYEOF
}
apt_in() { in_ns env DEBIAN_FRONTEND=noninteractive apt-get -o Dpkg::Use-Pty=0 -qq "$@"; }

snapshot "$D/before"

# --- 1. install ------------------------------------------------------------------------
if ! apt_in install -y /run/mcpm-deb/mcp-multiplayer.deb >"$D/install.log" 2>&1; then
    cat "$D/install.log"
    fail "apt-get install ./mcp-multiplayer.deb"
fi
grep '^mcp-multiplayer:' "$D/install.log" | sed 's/^/  postinst: /'
in_ns systemctl is-enabled -q mcp-multiplayer.service || fail "the unit is not enabled after install"
in_ns sh -ec '
    test "$(stat -c "%U:%G %a" /etc/mcp-multiplayer)" = "root:mcp-multiplayer 750"
    test "$(stat -c "%U:%G %a" /etc/mcp-multiplayer/config.toml)" = "root:mcp-multiplayer 640"
    test "$(stat -c "%U:%G %a" /etc/mcp-multiplayer/passphrase)" = "root:root 600"
    test "$(stat -c "%U:%G %a" /var/lib/mcp-multiplayer)" = "mcp-multiplayer:mcp-multiplayer 700"
    ls /usr/share/mcp-multiplayer/bots/harness/__pycache__/harness.cpython-*.pyc >/dev/null
    test -x /usr/bin/mcp-multiplayer && test -x /usr/bin/sandbox-runner
    grep -q "^ExecStart=/usr/bin/mcp-multiplayer serve" /usr/lib/systemd/system/mcp-multiplayer.service
' || fail "the installed files do not have the owners, modes or contents expected"
echo "  ok: installed; unit enabled; /etc/mcp-multiplayer 0750 root:mcp-multiplayer, config 0640, passphrase 0600, state 0700, harness bytecode"

# --- 2. the daemon under the packaged unit --------------------------------------------------
sandbox=$(healthy)
[[ $sandbox == '"ok"' ]] || fail "/healthz under the packaged unit: sandbox $sandbox"
pid=$(in_ns systemctl show -P MainPID mcp-multiplayer.service)
echo "  ok: started by postinst; /healthz sandbox self-check ok; runs as $(in_ns ps -o user:24= -p "$pid" | tr -d ' '), $(in_ns grep CapEff "/proc/$pid/status" | tr -s '\t ' ' ')"
mint() { in_ns runuser -u mcp-multiplayer -- mcp-multiplayer token create "$1" --config /etc/mcp-multiplayer/config.toml 2>/dev/null; }
alice=$(mint alice) && bob=$(mint bob) || fail "token create"
game=$(in_ns timeout 180 "$PY" /run/mcpm-deb/client.py play http://127.0.0.1:8201 "$alice" "$bob" 2>&1) ||
    fail "the GuessBot game: $game"
echo "  ok: two clients played GuessBot through the packaged daemon: $game"
read -r cid count head < <("$PY" -c 'import json,sys; g=json.loads(sys.argv[1]); print(g["channel_id"], json.dumps(g["count"]), json.dumps(g["head"]))' "$game")

# --- 3. upgrade path ---------------------------------------------------------------------------
old_pid=$pid
apt_in install -y --reinstall /run/mcpm-deb/mcp-multiplayer.deb >"$D/reinstall.log" 2>&1 ||
    { cat "$D/reinstall.log"; fail "apt-get install --reinstall"; }
[[ $(healthy) == '"ok"' ]] || fail "the daemon did not come back after the upgrade"
pid=$(in_ns systemctl show -P MainPID mcp-multiplayer.service)
[[ $pid != "$old_pid" ]] || fail "the upgrade did not restart the daemon"
out=$(in_ns timeout 60 "$PY" /run/mcpm-deb/client.py check http://127.0.0.1:8201 "$alice" "$cid" "$count" "$head" 2>&1) ||
    fail "after the upgrade: $out"
echo "  ok: reinstall (prerm upgrade, postinst configure) restarted the daemon; $out"

# --- 4. remove -------------------------------------------------------------------------------------
apt_in remove -y mcp-multiplayer >"$D/remove.log" 2>&1 || { cat "$D/remove.log"; fail "apt-get remove"; }
if in_ns systemctl is-active -q mcp-multiplayer.service; then fail "the service still runs after remove"; fi
in_ns sh -ec '
    for gone in /usr/bin/mcp-multiplayer /usr/bin/sandbox-runner /usr/share/mcp-multiplayer \
        /usr/lib/systemd/system/mcp-multiplayer.service /usr/lib/sysusers.d/mcp-multiplayer.conf; do
        if test -e "$gone"; then echo "left after remove: $gone"; exit 1; fi
    done
    for kept in /etc/mcp-multiplayer/config.toml /etc/mcp-multiplayer/passphrase \
        /var/lib/mcp-multiplayer/mcp-multiplayer.db; do
        test -e "$kept" || { echo "removed by remove, kept until purge: $kept"; exit 1; }
    done
' || fail "apt-get remove left the wrong files"
grep -q 'not empty so not removed' "$D/remove.log" && { cat "$D/remove.log"; fail "dpkg could not remove a directory"; }
echo "  ok: remove stopped the service and removed programs, bots and unit; config, passphrase and database stay"

# --- 5. purge ----------------------------------------------------------------------------------------
apt_in purge -y mcp-multiplayer >"$D/purge.log" 2>&1 || { cat "$D/purge.log"; fail "apt-get purge"; }
in_ns sh -ec 'for p in /etc/mcp-multiplayer /var/lib/mcp-multiplayer; do
    if test -e "$p"; then echo "left after purge: $p"; exit 1; fi; done' || fail "purge left files"
snapshot "$D/after"
# Debian's own records of the install, and what the booted systemd writes
# for itself; anything else new in the upper layer is a leftover.
"$PY" - "$D/before" "$D/after" <<'PYEOF' || fail "purge left changes to the machine"
import os, re, sys
before = set(open(sys.argv[1]).read().splitlines())
after = set(open(sys.argv[2]).read().splitlines())
# Debian's own records (dpkg and apt state, caches and logs), the account
# databases (the system account stays), and what systemd keeps for itself.
records = re.compile(r"""^\./(
      var/lib/dpkg/ | var/lib/apt/ | var/cache/(apt|debconf|ldconfig)/ | var/log/
    | etc/(passwd|group|shadow|gshadow)-?$ | etc/\.pwd\.lock$ | etc/ld\.so\.cache$
    | var/lib/systemd/ | etc/machine-id$
)""", re.X)
problems = []
for entry in sorted(after - before):
    kind, path = entry.split(" ", 1)
    if kind == "d" and os.path.isdir("/" + path[2:]):
        continue  # a directory of the machine copied up because something in it changed
    if kind == "c":
        problems.append(f"{path} (a file of the machine deleted)")
    elif "mcp-multiplayer" in path and not path.startswith(("./var/lib/dpkg/", "./var/log/")):
        problems.append(f"{path} (named after the package)")
    elif not records.match(path):
        problems.append(path)
if problems:
    print("  changes left after purge:\n    " + "\n    ".join(problems))
    sys.exit(1)
PYEOF
in_ns getent passwd mcp-multiplayer >/dev/null || fail "the system account was removed (Debian keeps it)"
echo "  ok: purge removed config, passphrase and state; left only dpkg/apt records and the system account"
exit $status
