#!/usr/bin/env bash
# Installs everything the later steps need (tests/steps/deps.sh lists it),
# idempotently, before any of them runs: Debian packages, kernel settings for
# user namespaces, the Python `mcp` SDK, the pinned npm clients, headless
# Chromium, deadnix, nixfmt, the Nix evaluation root, the musl target and
# cargo-deb. Safe to run again; quick when done.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/steps/deps.sh

t0=$SECONDS
deps_debian
deps_kernel
deps_python
deps_python313 >/dev/null
deps_node
deps_chromium
deps_deadnix
deps_nixfmt
deps_nix_root
deps_release
echo "deps: everything present ($((SECONDS - t0)) s)"
