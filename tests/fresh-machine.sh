#!/usr/bin/env bash
# Manual check (not part of ./test.sh): does the suite pass on a machine that
# has only what CI is promised? Makes a new Debian 12 (bookworm) root with
# debootstrap holding nothing but the minimal base and Debian's python3, gives
# it this machine's Rust toolchain (rustup's ~/.rustup read-only and
# ~/.cargo/bin, with an empty crate registry: every crate is fetched anew)
# and its pyenv Pythons (~/.pyenv read-only; the harness suite also runs on
# pyenv's 3.13, which no Debian 12 package provides),
# clones the repository into it with ../shared beside the clone, as CI lays
# them out, and runs `.ci/run` there as root with CI=true. Whatever the suite
# needs beyond that must be installed by the suite itself (00-deps.sh).
#
#   usage: tests/fresh-machine.sh [REV]     (as root; REV defaults to HEAD)
#
# Only committed work is tested (a clone of REV). The root is made under
# $FRESH_DIR (default /var/tmp) and deleted afterwards unless FRESH_KEEP=1;
# the log, with each step's time, is written to $FRESH_DIR/mcpmp-fresh.log.
# The suite runs in a private mount namespace whose / is the new root
# (pivot_root), so nothing stays mounted on the host. The suite itself runs under the lock $MCPMP_ROOT_TESTS_LOCK (default
# /tmp/mcpmp-root-tests.lock), since its sandbox step creates host-wide
# network names, and at nice 10. It needs the network to Debian's mirror and
# the crates.io, PyPI and npm registries, like a CI machine's first run.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
REV=$(git -C "$REPO" rev-parse --verify "${1:-HEAD}^{commit}")
SHARED=$(cd "$REPO/../shared" 2>/dev/null && pwd) || { echo "fresh-machine: no ../shared beside $REPO" >&2; exit 2; }
FRESH_DIR=${FRESH_DIR:-/var/tmp}
LOCK=${MCPMP_ROOT_TESTS_LOCK:-/tmp/mcpmp-root-tests.lock}
RUSTUP=${RUSTUP_HOME:-$HOME/.rustup}
PYENV=${PYENV_ROOT:-$HOME/.pyenv}
CARGO_BIN=${CARGO_HOME:-$HOME/.cargo}/bin
LOG=$FRESH_DIR/mcpmp-fresh.log

[[ $(id -u) -eq 0 ]] || { echo "fresh-machine: run as root" >&2; exit 2; }
[[ -x $CARGO_BIN/cargo && -d $RUSTUP/toolchains ]] || { echo "fresh-machine: no rustup toolchain in $RUSTUP" >&2; exit 2; }
command -v debootstrap >/dev/null || {
    echo "fresh-machine: needs debootstrap (apt-get install debootstrap)" >&2
    exit 2
}
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}

ROOT=$(mktemp -d "$FRESH_DIR/mcpmp-fresh.XXXXXX")
chmod 755 "$ROOT" # it becomes /, which every user must traverse
cleanup() { [[ ${FRESH_KEEP:-0} == 1 ]] && echo "root kept: $ROOT" || rm -rf --one-file-system "$ROOT"; }
trap cleanup EXIT
exec > >(tee "$LOG") 2>&1
echo "fresh-machine: $REV into $ROOT"
t0=$SECONDS

# --- the machine: Debian 12 minimal base and python3, nothing else ------------
debootstrap --variant=minbase --include=python3 bookworm "$ROOT" "$mirror" >"$ROOT.debootstrap.log" 2>&1 \
    || { tail -20 "$ROOT.debootstrap.log"; exit 1; }
rm -f "$ROOT.debootstrap.log"
# The machine's network setup, which is not the project's to install: the
# resolver, /etc/hosts, and the local CA certificates and npm settings of a
# machine whose registry traffic passes a TLS-inspecting proxy (picked up
# when the suite installs ca-certificates).
mkdir -p "$ROOT/root/.cargo/bin" "$ROOT/root/.rustup" "$ROOT/root/.pyenv" "$ROOT/work"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
# What Debian's installer (or any image builder) writes and debootstrap does
# not: without it `localhost` does not resolve.
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$ROOT/etc/hosts"
if [[ -d /usr/local/share/ca-certificates ]]; then
    mkdir -p "$ROOT/usr/local/share/ca-certificates"
    cp -a /usr/local/share/ca-certificates/. "$ROOT/usr/local/share/ca-certificates/"
fi
[[ -f $HOME/.npmrc ]] && cp "$HOME/.npmrc" "$ROOT/root/.npmrc"
# Rust: the toolchain only. A new CARGO_HOME with rustup's proxies and no
# registry cache; RUSTUP_HOME is bound read-only below.
cp -a "$CARGO_BIN/." "$ROOT/root/.cargo/bin/"
# The clone and shared/ beside it, as CI has them (shared/ without write bits).
git clone --quiet --no-checkout "$REPO" "$ROOT/work/repo"
git -C "$ROOT/work/repo" checkout --quiet --detach "$REV"
cp -a "$SHARED" "$ROOT/work/shared"
chmod -R a-w "$ROOT/work/shared"
echo "fresh-machine: root ready after $((SECONDS - t0)) s; packages: $(chroot "$ROOT" dpkg-query -W | wc -l)"

# --- the suite, under the lock, in a private mount namespace -----------------
exec 9>"$LOCK"
echo "fresh-machine: waiting for $LOCK"
flock 9
t1=$SECONDS
status=0
nice -n 10 unshare --mount --propagation private -- /bin/bash -euo pipefail -c '
    R=$1 RUSTUP=$2 PYENV=$3
    # The new root becomes / of this mount namespace (pivot_root, not
    # chroot: in a chroot the kernel refuses user namespaces, which the
    # runner creates when started unprivileged).
    mount --bind "$R" "$R"
    mount -t proc proc "$R/proc"
    mount --rbind /sys "$R/sys"
    mount --rbind /dev "$R/dev"
    mount -t tmpfs -o mode=0755 tmpfs "$R/run"
    mount --bind "$RUSTUP" "$R/root/.rustup"
    mount -o remount,bind,ro "$R/root/.rustup"
    if [[ -d $PYENV ]]; then
        mount --bind "$PYENV" "$R/root/.pyenv"
        mount -o remount,bind,ro "$R/root/.pyenv"
    fi
    mkdir -p "$R/.old-root"
    cd "$R"
    pivot_root . .old-root
    umount -l /.old-root
    rmdir /.old-root
    # The PATH a CI run has (pyenv shims first).
    exec /usr/bin/env -i HOME=/root TERM=dumb CI=true LANG=C.UTF-8 PYENV_ROOT=/root/.pyenv \
        PATH=/root/.pyenv/bin:/root/.pyenv/shims:/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        /bin/bash -c "cd /work/repo && bash .ci/run </dev/null"
' fresh "$ROOT" "$RUSTUP" "$PYENV" || status=$?
flock -u 9
echo "fresh-machine: suite exited $status after $((SECONDS - t1)) s"

# Step times from the suite's own headers ("==> STEP (suite at N s)").
cp "$LOG" "$LOG.suite"
awk -v end=$((SECONDS - t1)) '
    /^==> tests\/steps\/.* \(suite at [0-9]+ s\)$/ {
        t = $(NF - 1); sub(/\(/, "", t)
        if (name != "") printf "  %6d s  %s\n", t - prev, name
        name = $2; prev = t
    }
    END { if (name != "") printf "  %6d s  %s (to the end)\n  %6d s  total\n", end - prev, name, end }
' "$LOG.suite"
rm -f "$LOG.suite"
exit $status
