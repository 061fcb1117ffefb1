#!/usr/bin/env bash
# The whole test suite: runs every tests/steps/NN-*.sh in order, stopping at
# the first failure. 00-deps.sh first installs everything the others need
# (tests/steps/deps.sh lists it), so this works on a fresh Debian 12 machine
# that has only Rust and Python 3 (tests/fresh-machine.sh checks exactly
# that). Run as root. Each step's header says how long the suite has run, so
# step times are the differences; nothing is printed after the last step, so
# the end-to-end tests' summary closes the output.
set -euo pipefail
cd "$(dirname "$0")"
for step in tests/steps/[0-9][0-9]-*.sh; do
  echo "==> ${step} (suite at ${SECONDS} s)"
  bash "${step}"
done
