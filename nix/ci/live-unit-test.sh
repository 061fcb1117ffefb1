#!/usr/bin/env bash
# Bot hooks under the unit's restrictions, enforced by a real systemd.
#
# The CI machine's PID 1 is not systemd, so this boots one: systemd as PID 1
# of private PID, mount, UTS, IPC and network namespaces (as a container
# manager would), with its own /run, a cgroup2 mount, and copy-on-write
# overlays over /etc and /usr/local and a tmpfs over /var/lib, so that the
# installation below never touches the host. Inside it:
#
# A. Runner jobs. A template unit made of UNIT's [Service] section verbatim,
#    except ExecStart (the runner on a job file), Type=oneshot, no Restart=,
#    no LoadCredential=/StateDirectory= (not needed by the runner alone), and
#    DefaultDependencies=no (ordering only). Jobs:
#    - echo:   EchoBot without network (user, mnt, pid, ipc, uts, net
#              namespaces, Landlock, seccomp);
#    - net:    a bot connecting to a public address (the runner's connect
#              supervisor: seccomp user notification, its own socket
#              installed with SECCOMP_IOCTL_NOTIF_ADDFD);
#    - ipdeny: a bot connecting to a link-local address that the job's
#              allow_cidrs lets through the runner, so only the unit's
#              IPAddressDeny= can refuse it; a control run of the same job
#              without the unit shows the address is reachable.
#    Both addresses sit on the loopback of the test's own network namespace,
#    with one listener: no packet leaves the machine.
#
# B. With DAEMON: the daemon installed as docs/operations.md says (sysusers,
#    tmpfiles, /usr/local/bin, /usr/local/share, the example config with
#    public_url set, a passphrase credential) and started by UNIT itself, with
#    one drop-in: DefaultDependencies=no, output to a file, and
#    MCP_MULTIPLAYER_PASSPHRASE_FILE pointing at a copy of the passphrase owned
#    by the service user. (LoadCredential= stays and is loaded, but in this
#    nested systemd the credential directory reaches the service as root's
#    0700 directory without the ACL systemd grants on a real host, so the
#    daemon reads the copy instead: credential delivery itself is not what
#    this test checks.) Two clients
#    (tokens from `mcp-multiplayer token create`) play a GuessBot game over
#    MCP, so every bot hook runs through the real daemon under the unit (and
#    some of them, counted by /metrics, in a fork template's children); then
#    a restart, and the channel must be intact.
#
# Usage: live-unit-test.sh UNIT_FILE RUNNER_BINARY [DAEMON_BINARY]   (as root)
set -euo pipefail
UNIT=$(realpath "$1")
RUNNER=$(realpath "$2")
DAEMON=${3:+$(realpath "$3")}
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
    # cgroups the inner systemd created and left behind (empty by now)
    mapfile -t cg_after < <(find "$CG" -mindepth 1 -maxdepth 1 -type d | sort)
    for d in $(comm -13 <(printf '%s\n' "${cg_before[@]}") <(printf '%s\n' "${cg_after[@]}")); do
        find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
    rm -rf "$D"
}
trap cleanup EXIT

# --- files for the namespace ---------------------------------------------------
L=$D/live
mkdir -p "$L"
cp "$RUNNER" "$L/sandbox-runner"
cp -r "$ROOT/bots" "$L/bots"
rm -rf "$L/bots/tests" "$L/bots/harness/tests" && find "$L/bots" -name __pycache__ -prune -exec rm -rf {} +
cp "$ROOT/systemd/mcp-multiplayer.sysusers" "$ROOT/systemd/mcp-multiplayer.tmpfiles" \
    "$ROOT/systemd/config.toml" "$ROOT/nix/tests/client.py" "$L/"
cp "$UNIT" "$L/mcp-multiplayer.service"
[[ -n $DAEMON ]] && cp "$DAEMON" "$L/mcp-multiplayer"

"$PY" - "$ROOT/bots/echo.py" "$L" <<'PYEOF'
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
                    "harness_dir": "/run/mcpm-live/bots/harness", "python_path": [],
                    "sandbox_uid": 64200, "sandbox_gid": 64200},
    }
json.dump(job("EchoBot", open(echo).read(), False), open(f"{out}/echo.json", "w"))
json.dump(job("NetProbe", net_bot, True, {"host": "1.2.3.4"}), open(f"{out}/net.json", "w"))
json.dump(job("NetProbe", net_bot, True, {"host": "169.254.77.1"}, ["169.254.0.0/16"]),
          open(f"{out}/ipdeny.json", "w"))
PYEOF

# A. the runner template unit: UNIT's [Service] with the changes listed above
{
    printf '[Unit]\nDescription=mcp-multiplayer unit restrictions, live\nDefaultDependencies=no\n\n[Service]\n'
    sed -n '/^\[Service\]/,/^\[/p' "$UNIT" | grep -v '^\[' |
        grep -Ev '^(ExecStart|Type|Restart|RestartSec|LoadCredential|StateDirectory|StateDirectoryMode)='
    printf 'Type=oneshot\nExecStart=/run/mcpm-live/sandbox-runner\n'
    printf 'StandardInput=file:/run/mcpm-live/%%i.json\n'
    printf 'StandardOutput=truncate:/run/mcpm-live/%%i.out\nStandardError=truncate:/run/mcpm-live/%%i.err\n'
} >"$L/mcpm-live@.service"
printf '[Unit]\nDescription=live test target\nDefaultDependencies=no\n' >"$L/mcpm-live.target"

cat >"$D/boot.sh" <<'BOOT'
#!/bin/bash
set -e
D=$1
mount --make-rprivate /
mount -t tmpfs -o mode=755 live-run /run
mkdir -p /run/systemd/system /run/mcpm-live /run/ovl/etc/up /run/ovl/etc/work /run/ovl/local/up /run/ovl/local/work
cp -a "$D/live/." /run/mcpm-live/
cp /run/mcpm-live/mcpm-live@.service /run/mcpm-live/mcpm-live.target /run/systemd/system/
# The daemon's Wants=network-online.target would start the host's network
# units in here; masked, the want is simply dropped.
ln -s /dev/null /run/systemd/system/network-online.target
mount -t overlay live-etc -o lowerdir=/etc,upperdir=/run/ovl/etc/up,workdir=/run/ovl/etc/work /etc
mount -t overlay live-local -o lowerdir=/usr/local,upperdir=/run/ovl/local/up,workdir=/run/ovl/local/work /usr/local
mount -t tmpfs -o mode=755 live-varlib /var/lib
umount -l /sys/fs/cgroup
mount -t cgroup2 cgroup2 /sys/fs/cgroup
# This network namespace is the test's own. The addresses the bots dial live
# on a peer namespace behind a veth pair, not on this one: the runner refuses
# every address of its own host. The peer answers on port 80 at a public and a
# link-local address.
ip link set lo up
ip netns add livepeer
ip link add live0 type veth peer name live1
ip link set live1 netns livepeer
ip addr add 10.77.0.1/30 dev live0
ip link set live0 up
ip route add 1.2.3.4/32 via 10.77.0.2
ip route add 169.254.77.1/32 via 10.77.0.2
ip -n livepeer link set lo up
ip -n livepeer addr add 10.77.0.2/30 dev live1
ip -n livepeer link set live1 up
ip -n livepeer addr add 1.2.3.4/32 dev lo
ip -n livepeer addr add 169.254.77.1/32 dev lo
ip -n livepeer route add default via 10.77.0.1
ip netns exec livepeer /usr/bin/python3 -c '
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
    PID1=$(awk '{print $1}' "/proc/$UNSHARE_PID/task/$UNSHARE_PID/children" 2>/dev/null || true)
    [[ -n $PID1 ]] && [[ $(readlink "/proc/$PID1/exe" 2>/dev/null) == */systemd ]] && break
    kill -0 "$UNSHARE_PID" 2>/dev/null || break
    PID1=
    sleep 0.05 # waiting for a process to exec: nothing to block on
done
in_ns() { nsenter -t "$PID1" -m -p -n -- "$@"; }
for _ in $(seq 400); do
    [[ -n $PID1 ]] || break
    in_ns test -S /run/systemd/private && break
    kill -0 "$PID1" 2>/dev/null || break
    sleep 0.05 # the manager's socket appears when it is up: nothing to block on
done
if [[ -z $PID1 ]] || ! in_ns test -S /run/systemd/private; then
    echo "live: could not boot systemd as PID 1 of a namespace:" >&2
    cat "$D/systemd.log" >&2
    exit 1
fi
in_ns timeout 60 systemctl is-system-running --wait >/dev/null 2>&1 || true
echo "  systemd $(in_ns systemctl --version | awk 'NR==1{print $2}') is PID 1 of private PID/mount/net namespaces"

# The account, exactly as installed: sysusers.d and tmpfiles.d snippets.
in_ns install -D -m 0644 /run/mcpm-live/mcp-multiplayer.sysusers /etc/sysusers.d/mcp-multiplayer.conf
in_ns install -D -m 0644 /run/mcpm-live/mcp-multiplayer.tmpfiles /etc/tmpfiles.d/mcp-multiplayer.conf
in_ns systemd-sysusers mcp-multiplayer.conf >/dev/null 2>&1
in_ns systemd-tmpfiles --create mcp-multiplayer.conf
in_ns systemctl daemon-reload

status=0
run_job() {
    local name=$1
    if ! in_ns timeout 60 systemctl start "mcpm-live@$name.service" 2>/dev/null; then
        echo "  FAIL: mcpm-live@$name.service did not succeed:"
        { in_ns systemctl status --no-pager "mcpm-live@$name.service" 2>&1 | sed 's/^/    /' | head -12; } || true
        { in_ns cat "/run/mcpm-live/$name.err" 2>/dev/null | sed 's/^/    stderr: /' | head -20; } || true
        { in_ns cat "/run/mcpm-live/$name.out" 2>/dev/null | sed 's/^/    stdout: /' | head -5; } || true
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
assert result == "connected", result
print(f"  ok: network hook under the unit (connect supervisor, ADDFD): 1.2.3.4:80 -> {result}")
PYEOF
fi
# Control: the same job without the unit (the runner alone, as root, in the
# same network namespace) connects, so a refusal below is the unit's doing.
ctl=$(in_ns sh -c '/run/mcpm-live/sandbox-runner < /run/mcpm-live/ipdeny.json' 2>/dev/null || true)
if ! grep -q '"result":"connected"' <<<"$ctl"; then
    echo "  FAIL: the control run without the unit did not reach 169.254.77.1: $ctl"
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

# --- B. the daemon itself, under the unit --------------------------------------
if [[ -n $DAEMON && $status == 0 ]]; then
    daemon_fail() {
        echo "  FAIL: $*"
        { in_ns systemctl status --no-pager mcp-multiplayer.service 2>&1 | sed 's/^/    /' | head -12; } || true
        { in_ns tail -n 30 /run/mcpm-live/daemon.log 2>&1 | sed 's/^/    log: /'; } || true
        status=1
    }
    in_ns sh -ec '
        install -m 0755 /run/mcpm-live/mcp-multiplayer /run/mcpm-live/sandbox-runner /usr/local/bin/
        install -d /usr/local/share/mcp-multiplayer
        cp -r /run/mcpm-live/bots /usr/local/share/mcp-multiplayer/bots
        install -m 0644 /run/mcpm-live/mcp-multiplayer.service /etc/systemd/system/
        sed "s|^public_url = .*|public_url = \"http://127.0.0.1:8201\"|" /run/mcpm-live/config.toml > /run/mcpm-live/config.edited
        install -m 0640 -o root -g mcp-multiplayer /run/mcpm-live/config.edited /etc/mcp-multiplayer/config.toml
        ( umask 077; head -c 24 /dev/urandom | base64 > /etc/mcp-multiplayer/passphrase )
        install -m 0400 -o mcp-multiplayer /etc/mcp-multiplayer/passphrase /run/mcpm-live/passphrase
        mkdir -p /run/systemd/system/mcp-multiplayer.service.d
        printf "[Unit]\nDefaultDependencies=no\n[Service]\nStandardOutput=append:/run/mcpm-live/daemon.log\nStandardError=append:/run/mcpm-live/daemon.log\nEnvironment=MCP_MULTIPLAYER_PASSPHRASE_FILE=/run/mcpm-live/passphrase\n" \
            > /run/systemd/system/mcp-multiplayer.service.d/live.conf
        systemctl daemon-reload'
    healthy() {
        for _ in $(seq 300); do
            in_ns "$PY" -c 'import urllib.request; urllib.request.urlopen("http://127.0.0.1:8201/healthz", timeout=1)' 2>/dev/null && return 0
            in_ns systemctl is-failed -q mcp-multiplayer.service && return 1
            sleep 0.1 # polling the port: the unit is Type=exec, it signals nothing when it listens
        done
        return 1
    }
    if ! in_ns systemctl start mcp-multiplayer.service || ! healthy; then
        daemon_fail "the daemon did not come up under the unit"
    else
        pid=$(in_ns systemctl show -P MainPID mcp-multiplayer.service)
        echo "  daemon up under the unit: user $(in_ns ps -o user:24= -p "$pid" | tr -d " "), $(in_ns grep CapEff "/proc/$pid/status" | tr -s '\t ' ' ')"
        # The daemon's own start-up self-check runs one hook through the runner.
        sandbox=$(in_ns "$PY" -c '
import json, time, urllib.request
for _ in range(300):
    h = json.load(urllib.request.urlopen("http://127.0.0.1:8201/healthz", timeout=2))
    if h.get("sandbox") != "checking":
        break
    time.sleep(0.1)  # the self-check reports through /healthz only
print(json.dumps(h.get("sandbox")))')
        if [[ $sandbox == '"ok"' ]]; then
            echo "  ok: /healthz under the unit: sandbox self-check $sandbox"
        else
            daemon_fail "/healthz sandbox self-check under the unit: $sandbox"
        fi
        echo "  loaded unit, online analysis (the test drop-in's DefaultDependencies=no makes four items N/A): $(in_ns systemd-analyze security --no-pager mcp-multiplayer.service | tail -n1)"
        mint='runuser -u mcp-multiplayer -- mcp-multiplayer token create %s --config /etc/mcp-multiplayer/config.toml'
        alice=$(in_ns sh -c "$(printf "$mint" alice)" 2>/dev/null)
        bob=$(in_ns sh -c "$(printf "$mint" bob)" 2>/dev/null)
        if ! game=$(in_ns timeout 120 "$PY" /run/mcpm-live/client.py play http://127.0.0.1:8201 "$alice" "$bob" 2>&1); then
            daemon_fail "the GuessBot game under the unit: $game"
        else
            echo "  ok: two clients played GuessBot through the daemon under the unit: $game"
            # GuessBot is a seeded bot: after its first hooks the daemon runs
            # them in a fork template's children (fork_templates is on by
            # default), whose confinement the unit must allow too.
            forked=$(in_ns "$PY" -c '
import re, urllib.request
text = urllib.request.urlopen("http://127.0.0.1:8201/metrics", timeout=2).read().decode()
m = re.search(r"^mcp_multiplayer_hooks_forked_total (\d+)$", text, re.M)
print(m.group(1) if m else "absent")')
            if [[ $forked =~ ^[1-9][0-9]*$ ]]; then
                echo "  ok: $forked of the game's hooks ran in a fork template's children under the unit"
            else
                daemon_fail "no hook of the game ran in a fork template under the unit (mcp_multiplayer_hooks_forked_total: $forked)"
            fi
            read -r cid count head < <("$PY" -c 'import json,sys; g=json.loads(sys.argv[1]); print(g["channel_id"], json.dumps(g["count"]), json.dumps(g["head"]))' "$game")
            if ! in_ns systemctl restart mcp-multiplayer.service || ! healthy; then
                daemon_fail "the daemon did not come back after a restart"
            elif ! out=$(in_ns timeout 60 "$PY" /run/mcpm-live/client.py check http://127.0.0.1:8201 "$alice" "$cid" "$count" "$head" 2>&1); then
                daemon_fail "after the restart: $out"
            else
                echo "  ok: after a restart, $out"
            fi
        fi
    fi
fi
exit $status
