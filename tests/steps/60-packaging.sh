#!/usr/bin/env bash
# Packaging checks (issue 6): the systemd unit and the Nix files, offline.
#
# No CI machine reaches nixpkgs or cache.nixos.org, so the flake cannot be
# built here. What can be checked is checked, on real tools:
#   1. every .nix file parses (nix-instantiate --parse, Debian's nix-bin)
#   2. deadnix --fail finds no unused code
#   3. nix/module.nix evaluates against nix/ci/lib.nix (a stand-in for
#      nixpkgs' lib) and renders the NixOS unit
#   4. systemd-analyze verify prints nothing, for the shipped and rendered unit
#   5. systemd-analyze security --offline exposure <= 2.0 for both (printed)
#   6. both units agree on every hardening key
#   7. neither unit forbids a syscall or namespace the sandbox-runner needs
#      (its own lists: `sandbox-runner policy --json`)
#   8. bot hooks succeed under the unit (nix/ci/live-unit-test.sh: a real
#      systemd, PID 1 of private namespaces, runs the runner with the shipped
#      unit's [Service] settings, then the daemon installed as the docs say
#      and started by the shipped unit, and two MCP clients play GuessBot)
# and each check is shown to fail on a deliberately broken input.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
PY=/usr/bin/python3
CI=nix/ci
THRESHOLD=20 # systemd-analyze's --threshold is in tenths: 20 = exposure 2.0
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

say() { printf '\n== %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

# --- tools (tests/steps/deps.sh; quick when present) ------------------------
. tests/steps/deps.sh
deps_debian
deps_kernel
deps_deadnix

mapfile -t NIX_FILES < <(git ls-files -co --exclude-standard -- '*.nix' | sort)
((${#NIX_FILES[@]} >= 6)) || fail "expected the flake and nix/ files, found: ${NIX_FILES[*]}"

# --- the checks, as functions so the self-tests below reuse them -----------
check_parse() { for f in "$@"; do nix-instantiate --parse "$f" >/dev/null || return 1; done; }
check_deadnix() { "$DEADNIX" --fail "$@"; }
# render_unit OUTDIR [NIX_ARGS]: evaluate the module, write OUTDIR/mcp-multiplayer.service
render_unit() {
    local out=$1 args=${2:-"{}"}
    mkdir -p "$out"
    nix-instantiate --eval --strict --json \
        -E "(import $ROOT/$CI/render-unit.nix) $args" >"$out/render.json" || return 1
    "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); open(sys.argv[2],"w").write(d["unit"])' \
        "$out/render.json" "$out/mcp-multiplayer.service"
}
# check_testscript VM_NIX: the VM test's Python test script compiles
check_testscript() {
    nix-instantiate --eval --json -E "(import $1 {
        self = { nixosModules.default = { }; packages.x86_64-linux.default = { }; };
        pkgs = { testers.runNixOSTest = t: t; stdenv.hostPlatform.system = \"x86_64-linux\"; };
    }).testScript" >"$WORK/testscript.json" || return 1
    "$PY" -c 'import json,sys; compile(json.load(open(sys.argv[1])), "testScript", "exec")' "$WORK/testscript.json"
}
check_verify() { "$CI/verify-unit.sh" "$1"; }
check_security() {
    local line
    line=$(systemd-analyze security --offline=yes --no-pager "$1" | tail -n1) || true
    echo "  $1: $line"
    systemd-analyze security --offline=yes --threshold=$THRESHOLD "$1" >/dev/null
}
check_agree() { "$PY" "$CI/compare-hardening.py" "$1" "$2"; }
check_coverage() { "$PY" "$CI/check-unit-policy.py" "$1" "$2"; }

SHIPPED=systemd/mcp-multiplayer.service
RENDERED=$WORK/nixos/mcp-multiplayer.service

say "1. nix-instantiate --parse (${#NIX_FILES[@]} files)"
check_parse "${NIX_FILES[@]}" || fail "a .nix file does not parse"
echo "  ok: ${NIX_FILES[*]}"

say "2. deadnix --fail"
check_deadnix "${NIX_FILES[@]}" || fail "deadnix found unused code"
echo "  ok"

say "3. evaluate nix/module.nix against the lib stand-in"
render_unit "$WORK/nixos" || fail "the module does not evaluate"
"$PY" - "$WORK/nixos/render.json" <<'PYEOF' || fail "the rendered module output is wrong"
import json, sys
d = json.load(open(sys.argv[1]))
s = d["settings"]
assert d["execStart"].split()[1:3] == ["serve", "--config"], d["execStart"]
assert d["execStart"].split()[0].endswith("/bin/mcp-multiplayer"), d["execStart"]
assert s["bots"]["python"].startswith("/nix/store/") and s["bots"]["python"].endswith("/bin/python3"), s
assert any("-requests-" in p for p in s["bots"]["python_path"]), s["bots"]["python_path"]
assert s["auth"]["approval"] == "passphrase" and s["public_url"] == "https://mcp.example.com", s
assert s["log_format"] == "json", "settings must be merged over the generated values"
assert d["user"]["isSystemUser"] and d["firewallPorts"] == [], d
# Every key the module generates is one the example config uses, and the
# daemon (deny_unknown_fields) starts on the example config in check 8.
import tomllib
def paths(t, pre=""):
    for k, v in t.items():
        yield from paths(v, f"{pre}{k}.") if isinstance(v, dict) else [pre + k]
known = set(paths(tomllib.load(open("systemd/config.toml", "rb"))))
unknown = set(paths(s)) - known
assert not unknown, f"the module writes keys systemd/config.toml does not know: {unknown}"
print("  ok: ExecStart, config (python by store path, requests on python_path, known keys), user")
PYEOF
render_unit "$WORK/fw" '{ userConfig = { enable = true; listen = "0.0.0.0:9000"; openFirewall = true; }; }' \
    || fail "the module does not evaluate with openFirewall"
"$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["firewallPorts"]==[9000], d["firewallPorts"]' \
    "$WORK/fw/render.json" || fail "openFirewall does not open the listen port"
check_testscript "$ROOT/nix/tests/vm.nix" || fail "the VM test's script does not compile"
echo "  ok: openFirewall; the VM test's Python script compiles"

say "4. systemd-analyze verify (must print nothing)"
check_verify "$SHIPPED" || fail "verify complained about $SHIPPED"
check_verify "$RENDERED" || fail "verify complained about the rendered unit"
echo "  ok: shipped and rendered"

say "5. systemd-analyze security --offline=yes --threshold=$THRESHOLD"
sec_ok=1
check_security "$SHIPPED" || sec_ok=0
check_security "$RENDERED" || sec_ok=0

say "6. hardening keys agree"
check_agree "$SHIPPED" "$RENDERED" || fail "the shipped and the NixOS unit differ in hardening"

say "7. the units cannot kill the sandbox"
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
export CARGO_TARGET_DIR
cargo build --quiet -p sandbox-runner -p mcp-multiplayer
RUNNER=$CARGO_TARGET_DIR/debug/sandbox-runner
DAEMON=$CARGO_TARGET_DIR/debug/mcp-multiplayer
"$RUNNER" policy --json >"$WORK/policy.json" || fail "sandbox-runner policy --json failed"
cov_ok=1
check_coverage "$SHIPPED" "$WORK/policy.json" || cov_ok=0
check_coverage "$RENDERED" "$WORK/policy.json" || cov_ok=0

say "8. a bot hook under the unit's restrictions"
live_ok=1
"$CI/live-unit-test.sh" "$SHIPPED" "$RUNNER" "$DAEMON" || live_ok=0

# --- every check can fail ----------------------------------------------------
say "self-test: each check fails on a broken input"
# expect_fail WHAT PATTERN CMD...: CMD must fail, and say PATTERN (so that it
# fails for the reason under test, not for another one).
expect_fail() {
    local what=$1 pattern=$2
    shift 2
    if "$@" >"$WORK/expect.log" 2>&1; then
        cat "$WORK/expect.log"
        fail "check did not fail on: $what"
    fi
    grep -Eq -- "$pattern" "$WORK/expect.log" || {
        cat "$WORK/expect.log"
        fail "check failed on $what, but without saying /$pattern/"
    }
    echo "  ok: fails on $what"
}
B=$WORK/broken
mkdir -p "$B"
printf '{ a = 1; b = ; }\n' >"$B/syntax.nix"
expect_fail "a syntax error (parse)" "syntax error" check_parse "$B/syntax.nix"
printf '{ lib, pkgs }: { x = lib.id; }\n' >"$B/unused.nix"
expect_fail "an unused binding (deadnix)" "[Uu]nused" check_deadnix "$B/unused.nix"
expect_fail "a passphraseFile in the Nix store (module assertion)" "must not be in the Nix store" \
    render_unit "$B/store" '{ userConfig = { enable = true; passphraseFile = "/nix/store/aaaa-passphrase"; }; }'
expect_fail "an option that does not exist (evaluation)" "lsiten' does not exist" \
    render_unit "$B/unknown" '{ userConfig = { enable = true; lsiten = "127.0.0.1:1"; }; }'
expect_fail "a wrongly typed option (evaluation)" "openFirewall' is not of type" \
    render_unit "$B/type" '{ userConfig = { enable = true; openFirewall = "yes"; }; }'
mkdir -p "$B/vm"
cp nix/tests/client.py "$B/vm/"
sed 's/^    server.wait_for_open_port(8201)$/    server.wait_for_open_port(8201/' nix/tests/vm.nix >"$B/vm/vm.nix"
expect_fail "a Python syntax error in the VM test script" "SyntaxError|never closed" check_testscript "$B/vm/vm.nix"
mkdir -p "$B/typo" "$B/bare" "$B/nolandlock" "$B/nons" "$B/differ"
sed 's/^ProtectSystem=/ProtectSytem=/' "$SHIPPED" >"$B/typo/mcp-multiplayer.service"
expect_fail "a misspelt key (verify)" "Unknown key .ProtectSytem" check_verify "$B/typo/mcp-multiplayer.service"
printf '[Service]\nExecStart=/usr/local/bin/mcp-multiplayer serve\n' >"$B/bare/mcp-multiplayer.service"
expect_fail "an unhardened unit over the threshold (security)" "exposure level for mcp-multiplayer.service: [3-9]\\." check_security "$B/bare/mcp-multiplayer.service"
sed 's/^NoNewPrivileges=yes/NoNewPrivileges=no/' "$SHIPPED" >"$B/differ/mcp-multiplayer.service"
expect_fail "a unit differing in one hardening key (agreement)" "NoNewPrivileges: A=yes B=no" \
    check_agree "$SHIPPED" "$B/differ/mcp-multiplayer.service"
sed 's/ landlock_create_ruleset landlock_add_rule landlock_restrict_self//' "$SHIPPED" >"$B/nolandlock/mcp-multiplayer.service"
expect_fail "SystemCallFilter without landlock_* (coverage)" "landlock_create_ruleset. is not allowed" \
    check_coverage "$B/nolandlock/mcp-multiplayer.service" "$WORK/policy.json"
sed 's/^RestrictNamespaces=.*/RestrictNamespaces=user mnt pid ipc uts cgroup/' "$SHIPPED" >"$B/nons/mcp-multiplayer.service"
expect_fail "RestrictNamespaces without net (coverage)" "'net' is not allowed by RestrictNamespaces" \
    check_coverage "$B/nons/mcp-multiplayer.service" "$WORK/policy.json"
expect_fail "a unit whose filter lacks landlock_* (live, under systemd)" '"step":"landlock"' \
    "$CI/live-unit-test.sh" "$B/nolandlock/mcp-multiplayer.service" "$RUNNER"

say "summary"
status=0
((sec_ok)) || { echo "FAIL: exposure above 2.0 (see 5.)"; status=1; }
((cov_ok)) || { echo "FAIL: a unit forbids something the runner needs (see 7.)"; status=1; }
((live_ok)) || { echo "FAIL: the bot hook did not succeed under the unit (see 8.)"; status=1; }
((status)) || echo "all packaging checks passed"
exit $status
