#!/usr/bin/env bash
# Evaluates (never builds) the flake against a real nixpkgs, offline.
#
# No CI machine reaches nixpkgs or a binary cache, so a pinned nixpkgs source
# tarball lies beside the clone (../shared/nix/nixpkgs-eval.tar.gz, a 26.11pre
# tree). Debian 12's Nix is too old for it, so Nix 2.26 runs in a Debian 13
# root (deps_nix_root in tests/steps/deps.sh). The repository's files (as git
# lists them, uncommitted changes included) are copied in with a flake.lock
# that pins nixpkgs to the tarball, and there (each NAME's output in OUT/NAME,
# its stderr in OUT/NAME.log, its exit status in OUT/NAME.status):
#   parse              nix-instantiate --parse on every .nix file
#   flake-check        nix flake check --no-build --all-systems (its log has
#                      the drvPath of every package and check)
#   apps.json          the meta of every app
#   vm.service         the VM test server's mcp-multiplayer.service
#   vm-testscript.py   the VM test's Python script
#   scenarios.json     nix/ci/module-scenarios.nix: the NixOS module in one
#                      small system per scenario, two of them on copies of
#                      the module with a settings bug put back
#   fail-NAME          each scenario that must not evaluate
# Checking the results is the caller's job (tests/steps/60-packaging.sh).
#
# Usage: nix/ci/nix-eval.sh OUT_DIR   (as root; from anywhere)
# Env:   MCPMP_NIXPKGS_TARBALL (default ../shared/nix/nixpkgs-eval.tar.gz
#        beside the repository), MCPM_NIX_ROOT (see deps.sh).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT=$(mkdir -p "$1" && cd "$1" && pwd)
cd "$ROOT"
. tests/steps/deps.sh

# The nixpkgs this project is checked against; a different tarball is refused.
NIXPKGS_SHA256=e46b48a50fceb39e097aed07784bb52f81473d3fdaa04d27bbfea95b8f91fa16
TARBALL=${MCPMP_NIXPKGS_TARBALL:-$ROOT/../shared/nix/nixpkgs-eval.tar.gz}
[[ -f $TARBALL ]] || {
    echo "nix-eval: no nixpkgs tarball at $TARBALL (CI lays ../shared beside the clone; or set MCPMP_NIXPKGS_TARBALL)" >&2
    exit 2
}

deps_nix_root
t0=$SECONDS

# The tarball, once per content, where the root sees it.
NP=$NIX_ROOT/var/cache/nixpkgs-$NIXPKGS_SHA256.tar.gz
if [[ ! -f $NP ]]; then
    mkdir -p "$(dirname "$NP")"
    cp "$TARBALL" "$NP.tmp"
    echo "$NIXPKGS_SHA256  $NP.tmp" | sha256sum -c --quiet || {
        rm -f "$NP.tmp"
        echo "nix-eval: $TARBALL is not the pinned nixpkgs (sha256 $NIXPKGS_SHA256)" >&2
        exit 2
    }
    mv "$NP.tmp" "$NP"
fi

# This run's files inside the root (runs on one machine do not share them).
RUN=$(mktemp -d "$NIX_ROOT/tmp/mcpm-eval.XXXXXX")
trap 'rm -rf "$RUN"' EXIT
git ls-files -co --exclude-standard -z | tar --null -T - -cf - | tar -xf - -C "$RUN" --one-top-level=repo
# The two settings bugs, each put back into a copy of the module. The edit
# must take: a pattern that stopped matching would make the self-test vacuous.
break_module() {
    local name=$1 from=$2 to=$3
    cp -a "$RUN/repo" "$RUN/$name"
    sed -i "s|$from|$to|" "$RUN/$name/nix/module.nix"
    if cmp -s "$RUN/repo/nix/module.nix" "$RUN/$name/nix/module.nix"; then
        echo "nix-eval: could not make $name: nix/module.nix no longer has /$from/" >&2
        exit 2
    fi
}
# The firewall port from a default instead of settings.listen.
break_module broken-firewall \
    'listenPort = lib.toInt (lib.last (lib.splitString ":" cfg.settings.listen));' 'listenPort = 8201;'
# StateDirectory= fixed, whatever settings.state_dir says.
break_module broken-state-dir \
    'stateDirManaged = lib.hasPrefix "/var/lib/" stateDir;' 'stateDirManaged = true; # broken'
sed -i 's|StateDirectory = lib.removePrefix "/var/lib/" stateDir;|StateDirectory = "mcp-multiplayer";|' \
    "$RUN/broken-state-dir/nix/module.nix"
grep -q 'StateDirectory = "mcp-multiplayer";' "$RUN/broken-state-dir/nix/module.nix" || {
    echo "nix-eval: could not make broken-state-dir: StateDirectory= line not found" >&2
    exit 2
}
R=/${RUN#"$NIX_ROOT"/}

unshare --mount --propagation private -- /bin/bash -euo pipefail -c '
    mount -t proc proc "$1/proc"
    exec chroot "$1" /usr/bin/env -i HOME=/root PATH=/usr/bin:/bin LANG=C.UTF-8 \
        NIX_EVAL_TRACE="${NIX_EVAL_TRACE:-}" R="$2" NP="/${3#"$1"/}" /bin/bash -euo pipefail -c "$4"
' nix-eval "$NIX_ROOT" "$R" "$NP" '
[[ -z ${NIX_EVAL_TRACE:-} ]] || set -x
cd "$R"
mkdir out
# run NAME CMD...: stdout to out/NAME, stderr to out/NAME.log, exit status to
# out/NAME.status, time to out/times; never stops the script.
run() {
    local name=$1 t=$SECONDS status=0
    shift
    "$@" >"out/$name" 2>"out/$name.log" || status=$?
    echo "$status" >"out/$name.status"
    printf "%4d s  %s\n" $((SECONDS - t)) "$name" >>out/times
}
(cd repo && find . -name "*.nix" -not -path "./target/*" -not -path "./.test-deps/*" | sort) >out/nix-files
parse_all() { local f bad=0; while read -r f; do nix-instantiate --parse "repo/$f" >/dev/null || bad=1; done <out/nix-files; return $bad; }
run parse parse_all
# Pin nixpkgs to the tarball (no registry, no network); the broken copies
# have the same inputs.
# The lock depends only on flake.nix and the tarball: made once for each pair.
# ($NP is named after the sha256 of the tarball.)
lock_cache=/var/cache/flake-lock-$({ cat repo/flake.nix; echo "$NP"; } | sha256sum | cut -c1-16).json
if [[ -f $lock_cache ]]; then
    cp "$lock_cache" repo/flake.lock
else
    run lock nix flake lock --override-input nixpkgs "file://$NP" "path:$R/repo"
    [[ $(<out/lock.status) != 0 ]] || cp repo/flake.lock "$lock_cache"
fi
cp repo/flake.lock broken-firewall/flake.lock
cp repo/flake.lock broken-state-dir/flake.lock
F=path:$R/repo
# It prints the drvPath of every derivation it evaluates (packages, checks).
run flake-check nix flake check --no-build --all-systems "$F"
run apps.json nix eval --json "$F#apps" --apply "builtins.mapAttrs (_: builtins.mapAttrs (_: app: app.meta or null))"
run vm.service nix eval --raw "$F#checks.x86_64-linux.vm.nodes.server.systemd.units.\"mcp-multiplayer.service\".text"
run vm-testscript.py nix eval --raw "$F#checks.x86_64-linux.vm.config.testScriptString"
flakes="{ repo = \"$R/repo\"; broken-firewall = \"$R/broken-firewall\"; broken-state-dir = \"$R/broken-state-dir\"; }"
run scenarios.json nix eval --json --impure --expr "import $R/repo/nix/ci/module-scenarios.nix { flakes = $flakes; }"
for name in passphrase-in-store unknown-option wrong-type listen-hostname package-without-passthru; do
    run "fail-$name" nix eval --json --impure \
        --expr "import $R/repo/nix/ci/module-scenarios.nix { flakes = $flakes; only = \"$name\"; }"
done
'
cp -a "$RUN/out/." "$OUT/"
echo "nix-eval: done in $((SECONDS - t0)) s"
