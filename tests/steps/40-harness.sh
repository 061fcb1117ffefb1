#!/usr/bin/env bash
# The Python harness's own suite (bots/harness/tests): the language layer's
# refusals, the facade reachability walk, the ctx API and the fd-3 framing,
# all through the real entry point `/usr/bin/python3 -I -S -B harness.py`.
set -euo pipefail
cd "$(dirname "$0")/../.."

# pytest; requests & co. for the network-module positive controls (the tests
# put /usr/lib/python3/dist-packages on the harness's sys_path, as the runner
# does with its /pylib binds).
. tests/steps/deps.sh
deps_debian

exec /usr/bin/python3 -m pytest -q -p no:cacheprovider bots/harness/tests
