#!/usr/bin/env bash
# Packaging checks: the systemd unit and the Nix files, offline.
#
# No CI machine reaches cache.nixos.org, so the flake cannot be built here.
# What can be checked is checked, on real tools:
#   1. the flake against a real nixpkgs (../shared/nix/nixpkgs-eval.tar.gz,
#      by nix/ci/nix-eval.sh, Nix 2.26 in a Debian 13 root): every .nix file
#      parses, `nix flake check --no-build --all-systems`, the drvPaths of the
#      package and the VM test, and the NixOS module in one small system per
#      scenario of nix/ci/module-scenarios.nix, checked by
#      nix/ci/check-nix-eval.py: the firewall opens the port the daemon
#      listens on, the daemon's state_dir is writable under the unit, the
#      module writes only keys the daemon knows, bad configurations are
#      refused with a clear message, and copies of the module with either
#      settings bug put back are caught
#   2. deadnix --fail finds no unused code; nixfmt --check finds every file
#      formatted
#   3. systemd-analyze verify prints nothing, for the shipped and the NixOS unit
#   4. systemd-analyze security --offline exposure <= 2.0 for both (printed)
#   5. both units agree on every key (paths and NixOS's own additions aside)
#   6. neither unit forbids a syscall or namespace the sandbox-runner needs
#      (its own lists: `sandbox-runner policy --json`)
#   7. bot hooks succeed under the unit (nix/ci/live-unit-test.sh: a real
#      systemd, PID 1 of private namespaces, runs the runner with the shipped
#      unit's [Service] settings, then the daemon installed as the docs say
#      and started by the shipped unit, and two MCP clients play GuessBot,
#      some of its hooks in a fork template's children)
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
deps_nixfmt

mapfile -t NIX_FILES < <(git ls-files -co --exclude-standard -- '*.nix' | sort)
((${#NIX_FILES[@]} >= 5)) || fail "expected the flake and nix/ files, found: ${NIX_FILES[*]}"

# --- the checks, as functions so the self-tests below reuse them -----------
check_deadnix() { "$DEADNIX" --fail "$@"; }
check_nixfmt() { "$NIXFMT" --check "$@"; }
check_verify() { "$CI/verify-unit.sh" "$1"; }
check_security() {
    local line
    line=$(systemd-analyze security --offline=yes --no-pager "$1" | tail -n1) || true
    echo "  $1: $line"
    systemd-analyze security --offline=yes --threshold=$THRESHOLD "$1" >/dev/null
}
check_agree() { "$PY" "$CI/compare-units.py" "$1" "$2"; }
check_coverage() { "$PY" "$CI/check-unit-policy.py" "$1" "$2"; }

SHIPPED=systemd/mcp-multiplayer.service
RENDERED=$WORK/nixos/mcp-multiplayer.service

say "1. the flake against a real nixpkgs (nix/ci/nix-eval.sh)"
"$CI/nix-eval.sh" "$WORK/eval" || fail "the evaluation did not run"
sed 's/^/  /' "$WORK/eval/times"
"$PY" "$CI/check-nix-eval.py" "$WORK/eval" systemd/config.toml || fail "the flake or the NixOS module is wrong (see above)"
mkdir -p "$WORK/nixos"
cp "$WORK/eval/scenario-default.service" "$RENDERED"

say "2. deadnix --fail, nixfmt --check (${#NIX_FILES[@]} files)"
check_deadnix "${NIX_FILES[@]}" || fail "deadnix found unused code"
check_nixfmt "${NIX_FILES[@]}" || fail "not nixfmt-formatted (fix: $NIXFMT FILE)"
echo "  ok"

say "3. systemd-analyze verify (must print nothing)"
check_verify "$SHIPPED" || fail "verify complained about $SHIPPED"
check_verify "$RENDERED" || fail "verify complained about the NixOS unit"
echo "  ok: shipped and NixOS"

say "4. systemd-analyze security --offline=yes --threshold=$THRESHOLD"
sec_ok=1
check_security "$SHIPPED" || sec_ok=0
check_security "$RENDERED" || sec_ok=0

say "5. the shipped and the NixOS unit agree, key by key"
check_agree "$SHIPPED" "$RENDERED" || fail "the shipped and the NixOS unit differ"

say "6. the units cannot kill the sandbox"
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
export CARGO_TARGET_DIR
cargo build --quiet -p sandbox-runner -p mcp-multiplayer
RUNNER=$CARGO_TARGET_DIR/debug/sandbox-runner
DAEMON=$CARGO_TARGET_DIR/debug/mcp-multiplayer
"$RUNNER" policy --json >"$WORK/policy.json" || fail "sandbox-runner policy --json failed"
cov_ok=1
check_coverage "$SHIPPED" "$WORK/policy.json" || cov_ok=0
check_coverage "$RENDERED" "$WORK/policy.json" || cov_ok=0

say "7. a bot hook under the unit's restrictions"
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
# (The flake and module checks of 1. show their own self-tests above: the
# broken-* scenarios and the configurations that must be refused.)
printf '{ lib, pkgs }: { x = lib.id; }\n' >"$B/unused.nix"
expect_fail "an unused binding (deadnix)" "[Uu]nused" check_deadnix "$B/unused.nix"
printf '{ x = 1;   y=2; }\n' >"$B/unformatted.nix"
expect_fail "an unformatted file (nixfmt)" "not formatted" check_nixfmt "$B/unformatted.nix"
mkdir -p "$B/typo" "$B/bare" "$B/nolandlock" "$B/nons" "$B/differ" "$B/restart"
sed 's/^ProtectSystem=/ProtectSytem=/' "$SHIPPED" >"$B/typo/mcp-multiplayer.service"
expect_fail "a misspelt key (verify)" "Unknown key .ProtectSytem" check_verify "$B/typo/mcp-multiplayer.service"
printf '[Service]\nExecStart=/usr/local/bin/mcp-multiplayer serve\n' >"$B/bare/mcp-multiplayer.service"
expect_fail "an unhardened unit over the threshold (security)" "exposure level for mcp-multiplayer.service: [3-9]\\." check_security "$B/bare/mcp-multiplayer.service"
sed 's/^NoNewPrivileges=yes/NoNewPrivileges=no/' "$SHIPPED" >"$B/differ/mcp-multiplayer.service"
expect_fail "a unit differing in one hardening key (agreement)" "NoNewPrivileges: A=yes B=no" \
    check_agree "$SHIPPED" "$B/differ/mcp-multiplayer.service"
sed 's/^Restart=on-failure/Restart=always/' "$RENDERED" >"$B/restart/mcp-multiplayer.service"
expect_fail "a NixOS unit differing in a key outside hardening (agreement)" "Restart: A=on-failure B=always" \
    check_agree "$SHIPPED" "$B/restart/mcp-multiplayer.service"
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
((sec_ok)) || { echo "FAIL: exposure above 2.0 (see 4.)"; status=1; }
((cov_ok)) || { echo "FAIL: a unit forbids something the runner needs (see 6.)"; status=1; }
((live_ok)) || { echo "FAIL: the bot hook did not succeed under the unit (see 7.)"; status=1; }
((status)) || echo "all packaging checks passed"
exit $status
