#!/usr/bin/env bash
# Installs what the test suite needs and the machine may lack, idempotently:
# Debian packages (apt), the official Python `mcp` SDK and pytest (into
# .test-deps/py, never into the system). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/../.."

need_apt=()
for pkg in python3-requests python3-pytest iproute2 ca-certificates; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if ! python3 -m pip --version >/dev/null 2>&1; then need_apt+=(python3-pip); fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages: ${need_apt[*]} (run as root, or install them)" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

PYDEPS=.test-deps/py
stamp="$PYDEPS/.installed-mcp-2.3.0-pytest-anyio"
if [ ! -f "$stamp" ]; then
  python3 -m pip install --quiet --disable-pip-version-check --target "$PYDEPS" \
    "mcp==2.3.0" "pytest>=8,<10" "anyio>=4"
  touch "$stamp"
fi
