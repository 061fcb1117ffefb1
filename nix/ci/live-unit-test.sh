#!/usr/bin/env bash
# A bot hook under the unit's restrictions, enforced by a real systemd.
#
# The CI machine's PID 1 is not systemd, so this boots one: systemd 252 as
# PID 1 of a private PID + mount namespace (as a container manager would),
# with its own /run and a cgroup2 mount, and an /etc/passwd copy (bind-mounted
# in that namespace only) that holds the unit's User=. It then starts a test
# unit made of the shipped unit's [Service] section verbatim, except:
#   - ExecStart runs `sandbox-runner` on a job (stdin/stdout from files)
#     instead of the daemon, Type=oneshot, no Restart=;
#   - LoadCredential= and StateDirectory= are dropped (no passphrase file,
#     and the host's /var/lib stays untouched);
#   - DefaultDependencies=no, so only this unit starts (ordering only).
# Everything that confines - User=, PrivateUsers=, ProtectSystem=, the
# syscall filter, RestrictNamespaces=, IPAddressDeny/Allow=, capabilities,
# ProtectProc= ... - is applied by systemd exactly as in production.
#
# Jobs: an EchoBot hook without network (user, mount, pid, ipc, uts, cgroup
# and net namespaces, Landlock, seccomp); a network hook (the runner's connect
# supervisor: seccomp user notification, pidfd_getfd) connecting to a public
# address; and one connecting to a link-local address that the job's
# allow_cidrs lets through the runner, so that only the unit's IPAddressDeny=
# can refuse it (a control run without the unit shows it is reachable). Both
# addresses sit on the loopback of a network namespace this test creates: no
# packet leaves the machine.
#
# Usage: live-unit-test.sh UNIT_FILE RUNNER_BINARY   (as root)
set -euo pipefail
UNIT=$(realpath "$1")
RUNNER=$(realpath "$2")
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PY=/usr/bin/python3
D=$(mktemp -d /tmp/mcpm-live.XXXXXX)
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
    # cgroups the inner systemd created and left empty
    mapfile -t cg_after < <(find "$CG" -mindepth 1 -maxdepth 1 -type d | sort)
    for d in $(comm -13 <(printf '%s\n' "${cg_before[@]}") <(printf '%s\n' "${cg_after[@]}")); do
        find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
    rm -rf "$D"
}
trap cleanup EXIT

user=$(sed -n 's/^User=//p' "$UNIT" | tail -n1)
group=$(sed -n 's/^Group=//p' "$UNIT" | tail -n1)
[[ -n $user && -n $group ]] || { echo "live: $UNIT has no User=/Group=" >&2; exit 2; }

# --- files for the namespace ---------------------------------------------------
mkdir -p "$D/live"
cp "$RUNNER" "$D/live/sandbox-runner"
cp -r "$ROOT/bots/harness" "$D/live/harness"
rm -rf "$D/live/harness/__pycache__" "$D/live/harness/tests"
uid=64180
while getent passwd "$uid" >/dev/null || getent group "$uid" >/dev/null; do uid=$((uid + 1)); done
cp /etc/passwd "$D/passwd"
cp /etc/group "$D/group"
getent passwd "$user" >/dev/null || echo "$user:x:$uid:$uid:live test:/nonexistent:/usr/sbin/nologin" >>"$D/passwd"
getent group "$group" >/dev/null || echo "$group:x:$uid:" >>"$D/group"

"$PY" - "$ROOT/bots/echo.py" "$D/live" <<'PYEOF'
import json, sys
echo, out = sys.argv[1], sys.argv[2]
limits = {"wall_ms": 5000, "cpu_secs": 5, "address_space_bytes": 1 << 30,
          "workspace_bytes": 100 << 20, "workspace_inodes": 4096,
          "file_size_bytes": 32 << 20, "open_files": 64, "threads": 16,
          "max_posts": 20, "max_post_bytes": 65536, "max_state_bytes": 262144,
          "max_output_bytes": 1 << 20}
net_bot = '''
import socket

class NetProbe:
    def __init__(self, ctx, params):
        self.ctx = ctx
        self.host = params["host"]

    def on_message(self, msg):
        try:
            s = socket.create_connection((self.host, 80), timeout=2)
            s.close()
            result = "connected"
        except OSError as e:
            result = "oserror errno=" + str(e.errno) + " " + str(e)
        self.ctx.post("probe", {"result": result})
'''
def job(name, source, network, params={}, allow=[]):
    return {
        "version": 1,
        "bot": {"name": name, "source": source, "params": params},
        "hook": {"name": "on_message", "message": {"seq": 1, "sender": "alice", "kind": "user",
                                                    "body": "hello from under the unit", "ts": "2026-01-01T00:00:00Z"}},
        "context": {"channel_id": "live", "bot_id": "bot:test",
                    "players": [{"label": "alice", "slot": "invite:alice", "filled": True}]},
        "state": {}, "limits": limits,
        "network": {"allowed": network, "allow_cidrs": allow, "deny_cidrs": []},
        "runtime": {"python": "/usr/bin/python3", "python_args": ["-I", "-S", "-B"],
                    "harness_dir": "/run/mcpm-live/harness", "python_path": [],
                    "sandbox_uid": 64200, "sandbox_gid": 64200},
    }
json.dump(job("EchoBot", open(echo).read(), False), open(f"{out}/echo.json", "w"))
# Both addresses live on the namespace's own loopback, with one listener.
json.dump(job("NetProbe", net_bot, True, {"host": "1.2.3.4"}), open(f"{out}/net.json", "w"))
# The runner is told to let link-local through (an operator exception), so
# only the unit's IPAddressDeny= stands between the bot and this address.
json.dump(job("NetProbe", net_bot, True, {"host": "169.254.77.1"}, ["169.254.0.0/16"]),
          open(f"{out}/ipdeny.json", "w"))
PYEOF

# The test unit: the shipped [Service] section, with the changes listed above.
{
    printf '[Unit]\nDescription=mcp-multiplayer unit restrictions, live\nDefaultDependencies=no\n\n[Service]\n'
    sed -n '/^\[Service\]/,/^\[/p' "$UNIT" | grep -v '^\[' |
        grep -Ev '^(ExecStart|Type|Restart|RestartSec|LoadCredential|StateDirectory|StateDirectoryMode)='
    printf 'Type=oneshot\nExecStart=/run/mcpm-live/sandbox-runner\n'
    printf 'StandardInput=file:/run/mcpm-live/%%i.json\n'
    printf 'StandardOutput=truncate:/run/mcpm-live/%%i.out\nStandardError=truncate:/run/mcpm-live/%%i.err\n'
} >"$D/live/mcpm-live@.service"
printf '[Unit]\nDescription=live test target\nDefaultDependencies=no\n' >"$D/live/mcpm-live.target"

cat >"$D/boot.sh" <<'BOOT'
#!/bin/bash
set -e
D=$1
mount --make-rprivate /
mount -t tmpfs -o mode=755 live-run /run
mkdir -p /run/systemd/system /run/mcpm-live
cp -a "$D/live/." /run/mcpm-live/
cp "$D/live/mcpm-live@.service" "$D/live/mcpm-live.target" /run/systemd/system/
mount --bind "$D/passwd" /etc/passwd
mount --bind "$D/group" /etc/group
umount -l /sys/fs/cgroup
mount -t cgroup2 cgroup2 /sys/fs/cgroup
# This network namespace is the test's own: a "public" and a link-local
# address on its loopback, one listener on port 80 behind both.
ip link set lo up
ip addr add 1.2.3.4/32 dev lo
ip addr add 169.254.77.1/32 dev lo
/usr/bin/python3 -c '
import socket
s = socket.create_server(("0.0.0.0", 80))
while True:
    s.accept()[0].close()
' &
export container=mcpm-live
exec /lib/systemd/systemd --system --unit=mcpm-live.target --log-target=console --log-level=warning
BOOT
chmod +x "$D/boot.sh"

# --- boot --------------------------------------------------------------------
unshare --pid --fork --mount --mount-proc --uts --ipc --net "$D/boot.sh" "$D" >"$D/systemd.log" 2>&1 &
UNSHARE_PID=$!
for _ in $(seq 200); do
    PID1=$(cat "/proc/$UNSHARE_PID/task/$UNSHARE_PID/children" 2>/dev/null | awk '{print $1}')
    [[ -n $PID1 ]] && [[ $(readlink "/proc/$PID1/exe" 2>/dev/null) == */systemd ]] && break
    kill -0 "$UNSHARE_PID" 2>/dev/null || break
    PID1=
    sleep 0.05 # waiting for a process to exec: no event to wait on
done
if [[ -z $PID1 ]]; then
    echo "live: could not boot systemd as PID 1 of a namespace:" >&2
    cat "$D/systemd.log" >&2
    exit 1
fi
in_ns() { nsenter -t "$PID1" -m -p -n -- "$@"; }
# systemd's private bus socket appears once the manager is up.
for _ in $(seq 400); do
    in_ns test -S /run/systemd/private && break
    kill -0 "$PID1" 2>/dev/null || break
    sleep 0.05 # no event to wait on from outside the namespace
done
if ! in_ns test -S /run/systemd/private; then
    echo "live: systemd did not come up:" >&2
    cat "$D/systemd.log" >&2
    exit 1
fi
state=$(timeout 60 nsenter -t "$PID1" -m -p -- systemctl is-system-running --wait 2>&1 || true)
echo "  systemd $(systemctl --version | head -n1 | awk '{print $2}') is PID 1 of a private PID namespace (state: $state)"

status=0
run_job() {
    local name=$1
    if ! in_ns timeout 60 systemctl start "mcpm-live@$name.service"; then
        echo "  FAIL: mcpm-live@$name.service did not succeed:"
        in_ns systemctl status --no-pager "mcpm-live@$name.service" 2>&1 | sed 's/^/    /' | head -20
        in_ns cat "/run/mcpm-live/$name.err" 2>/dev/null | sed 's/^/    stderr: /' | head -20
        in_ns cat "/run/mcpm-live/$name.out" 2>/dev/null | sed 's/^/    stdout: /' | head -5
        status=1
        return 1
    fi
    in_ns cat "/run/mcpm-live/$name.out" >"$D/$name.out"
}

if run_job echo; then
    "$PY" - "$D/echo.out" <<'PYEOF' || status=1
import json, sys
out = json.load(open(sys.argv[1]))
assert out["status"] == "ok", out
post = out["posts"][0]
assert post["type"] == "echo" and post["body"]["body"] == "hello from under the unit", out
print(f"  ok: EchoBot hook under the unit (no network): posted {json.dumps(post['body'])}, "
      f"confine {out['timings']['confine_us']} us, hook {out['timings']['hook_us']} us")
PYEOF
fi
if run_job net; then
    "$PY" - "$D/net.out" <<'PYEOF' || status=1
import json, sys
out = json.load(open(sys.argv[1]))
assert out["status"] == "ok", out
result = out["posts"][0]["body"]["result"]
# EPERM/EACCES would mean a filter (systemd's or the runner's) refused the
# supervisor's work; anything else is the network's answer.
assert "errno=1 " not in result and "errno=13 " not in result, result
assert result == "connected", result
print(f"  ok: network hook under the unit (connect supervisor, pidfd_getfd): 1.2.3.4:80 -> {result}")
PYEOF
fi
# Control: the same job without the unit (the runner alone, as root, in the
# same network namespace) does connect, so a refusal below is the unit's.
ctl=$(in_ns sh -c '/run/mcpm-live/sandbox-runner < /run/mcpm-live/ipdeny.json' 2>/dev/null || true)
if ! grep -q '"result":"connected"' <<<"$ctl"; then
    echo "  FAIL: control run without the unit did not connect to 169.254.77.1: $ctl"
    status=1
fi
if run_job ipdeny; then
    "$PY" - "$D/ipdeny.out" <<'PYEOF' || status=1
import json, sys
out = json.load(open(sys.argv[1]))
assert out["status"] == "ok", out
result = out["posts"][0]["body"]["result"]
assert result != "connected", f"IPAddressDeny= did not refuse 169.254.77.1: {result}"
print(f"  ok: IPAddressDeny= refuses 169.254.77.1:80, which the runner alone reaches -> {result}")
PYEOF
fi
# The service's own view, for the record: who it ran as, and its capabilities.
in_ns systemctl show -p User -p ExecMainStatus "mcpm-live@echo.service" | tr '\n' ' ' | sed 's/^/  unit: /'
echo
exit $status
