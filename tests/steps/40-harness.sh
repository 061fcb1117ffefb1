#!/usr/bin/env bash
# The Python harness's own suite (bots/harness/tests): the language layer's
# refusals and attack tests, the reachability walk, the ctx API and the fd-3
# framing, all through the real entry point `python3 -I -S -B harness.py`.
#
# It runs twice: on Debian's Python 3.11 (/usr/bin/python3, what the .deb
# and the systemd unit use) and on Python 3.13 (what nixpkgs ships). The
# suite runs the harness on the interpreter that runs pytest, so each run
# checks that interpreter. The 3.13 one is pyenv's build
# (`pyenv prefix 3.13.0`), a real binary; HARNESS_PYTHON313 may name
# another. Without a 3.13 interpreter the step fails and says so.
set -euo pipefail
cd "$(dirname "$0")/../.."

# pytest; requests & co. for the network-module positive controls (the tests
# put /usr/lib/python3/dist-packages on the harness's sys_path, as the runner
# does with its /pylib binds).
. tests/steps/deps.sh
deps_debian

pyflakes3 bots/harness/*.py bots/harness/tests/*.py

py313=$(deps_python313)

echo "--- harness suite on $(/usr/bin/python3 --version) (/usr/bin/python3)"
/usr/bin/python3 -m pytest -q -p no:cacheprovider bots/harness/tests

# pytest itself comes from Debian's python3-pytest, which is pure Python:
# only its folder is added to 3.13's path, for pytest's own process (the
# harness runs with -I and an empty environment, as in the sandbox).
echo "--- harness suite on $("$py313" --version) ($py313)"
PYTHONPATH=/usr/lib/python3/dist-packages \
    "$py313" -m pytest -q -p no:cacheprovider -W ignore::DeprecationWarning bots/harness/tests
