#!/usr/bin/env bash
# The Python harness's own suite (bots/harness/tests): the language layer's
# refusals, the facade reachability walk, the ctx API and the fd-3 framing,
# all through the real entry point `/usr/bin/python3 -I -S -B harness.py`.
set -euo pipefail
cd "$(dirname "$0")/../.."

need=()
/usr/bin/python3 -c 'import pytest' 2>/dev/null || need+=(python3-pytest)
# requests & co. for the network-module positive controls (the tests put
# /usr/lib/python3/dist-packages on the harness's sys_path, as the runner
# does with its /pylib binds).
/usr/bin/python3 -c 'import requests' 2>/dev/null || need+=(python3-requests)
if [ "${#need[@]}" -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi

exec /usr/bin/python3 -m pytest -q -p no:cacheprovider bots/harness/tests
