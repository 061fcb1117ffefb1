#!/usr/bin/env bash
# The static aarch64 build (aarch64-unknown-linux-musl), as far as it goes.
#
# The daemon builds: Debian has no C cross compiler for musl on aarch64,
# which the bundled SQLite needs, so Zig's C compiler (the `ziglang` package
# on PyPI) compiles C and links, driven by `cargo-zigbuild` (also on PyPI),
# both installed into the per-user tool directory. This checks that the
# result is a static, stripped aarch64 executable. Nothing here can run it.
#
# The sandbox-runner does not build for aarch64: its seccomp name table lists
# x86_64 syscalls that aarch64 does not have (access, open, stat, ...); it
# needs a table per architecture first. Without a runner an aarch64 daemon
# runs no bots, so this is no release artifact yet.
#
# It takes a release build of the daemon (several minutes on two cores), so
# it runs only when asked: MCPM_AARCH64=1.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
TARGET=aarch64-unknown-linux-musl
TOOLS=${MCPM_TOOLS_DIR:-$HOME/.cache/mcp-multiplayer-tools}
Z=$TOOLS/zig
ZIGLANG=0.17.0
ZIGBUILD=0.24.0
T=${CARGO_TARGET_DIR:-$ROOT/target}

if [[ ${MCPM_AARCH64:-0} != 1 ]]; then
    echo "  not run (MCPM_AARCH64=1 runs it): the daemon builds with cargo-zigbuild;" \
        "the sandbox-runner's seccomp table is x86_64-only (docs/install.md)"
    exit 0
fi
stamp=$Z/.installed-ziglang-$ZIGLANG-cargo-zigbuild-$ZIGBUILD
if [[ ! -f $stamp ]]; then
    rm -rf "$Z"
    /usr/bin/python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
        --root-user-action=ignore --target "$Z" "ziglang==$ZIGLANG" "cargo-zigbuild==$ZIGBUILD"
    ln -sf ../ziglang/zig "$Z/bin/zig"
    touch "$stamp"
fi
rustup target list --installed | grep -qx "$TARGET" || rustup target add "$TARGET"

t0=$SECONDS
PATH=$Z/bin:$PATH cargo-zigbuild build --quiet --release --locked --target "$TARGET" -p mcp-multiplayer
echo "  built in $((SECONDS - t0)) s"
f=$T/$TARGET/release/mcp-multiplayer
machine=$(readelf -hW "$f" | awk -F: '/Machine:/ {gsub(/^ +/, "", $2); print $2}')
[[ $machine == AArch64 ]] || { echo "  $f: machine $machine, not AArch64"; exit 1; }
if readelf -lW "$f" | grep -q 'Requesting program interpreter' || readelf -dW "$f" | grep -q '(NEEDED)'; then
    echo "  $f: dynamically linked"
    exit 1
fi
if readelf -SW "$f" | grep -Eq '\.(debug_info|symtab)\b'; then
    echo "  $f: not stripped"
    exit 1
fi
printf '  ok: mcp-multiplayer AArch64, static, stripped, %s MB\n' "$(awk -v s="$(stat -c %s "$f")" 'BEGIN { printf "%.1f", s / 1000000 }')"
