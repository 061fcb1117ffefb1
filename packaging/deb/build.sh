#!/usr/bin/env bash
# Builds the Debian package of both binaries, the bots and harness, the
# systemd unit with its sysusers.d and tmpfiles.d snippets, and an example
# config. Prints the path of the .deb (target/debian/ by default).
#
#   packaging/deb/build.sh [cargo-deb options]
#
# Needs cargo-deb (`cargo install --locked cargo-deb --version 3.8.0`). The
# unit and config are those of systemd/, with the manual install's
# /usr/local paths turned into the package's /usr ones: generated here, so
# that there is one copy of each to keep.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
CARGO_DEB=${CARGO_DEB:-cargo-deb}
command -v "$CARGO_DEB" >/dev/null || {
    echo "build.sh: no cargo-deb; install it: cargo install --locked cargo-deb --version 3.8.0" >&2
    exit 1
}

GEN=packaging/deb/generated
rm -rf "$GEN"
mkdir -p "$GEN"
sed -e 's|/usr/local/bin/|/usr/bin/|g' systemd/mcp-multiplayer.service >"$GEN/mcp-multiplayer.service"
sed -e 's|/usr/local/bin/|/usr/bin/|g' -e 's|/usr/local/share/|/usr/share/|g' systemd/config.toml >"$GEN/config.toml"
# Comments may still speak of the manual install; settings may not.
if grep -Hn '^[^#]*/usr/local' "$GEN"/*; then
    echo "build.sh: a /usr/local path is left in a setting of the package's unit or config (above)" >&2
    exit 1
fi

cargo build --release --locked -p mcp-multiplayer -p sandbox-runner
# --no-build: both binaries are built above (cargo-deb would build the
# daemon's package only).
"$CARGO_DEB" --no-build -p mcp-multiplayer "$@"
