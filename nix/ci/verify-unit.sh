#!/usr/bin/env bash
# systemd-analyze verify on a unit file, failing on any output.
#
# verify insists that ExecStart's program exists and is executable. The units
# point at /usr/local/bin/... or /nix/store/..., which a test machine does not
# have (a fresh one has no /nix at all), so when the program is missing the
# unit is verified as a copy, under the same file name, whose ExecStart=
# program path alone points at an empty executable stub in a temporary
# directory. Every key and every other value is verified as written.
#
# Usage: verify-unit.sh UNIT_FILE
set -euo pipefail
unit=$1
exe=$(sed -n 's/^ExecStart=[-@:+!]*\([^ ]*\).*/\1/p' "$unit" | tail -n1)
[[ $exe == /* ]] || { echo "verify-unit: no absolute ExecStart in $unit" >&2; exit 2; }

if [[ ! -x $exe ]]; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    stub=$tmp/bin/$(basename "$exe")
    mkdir -p "$tmp/bin" "$tmp/unit"
    printf '#!/bin/sh\nexit 0\n' >"$stub"
    chmod 755 "$stub"
    # Only the program path of ExecStart= lines (the prefixes -@:+! kept).
    awk -v exe="$exe" -v stub="$stub" '
        /^ExecStart=/ { i = index($0, exe); if (i) $0 = substr($0, 1, i - 1) stub substr($0, i + length(exe)) }
        { print }
    ' "$unit" >"$tmp/unit/$(basename "$unit")"
    unit=$tmp/unit/$(basename "$unit")
fi
out=$(systemd-analyze verify "$unit" 2>&1) || { echo "$out"; exit 1; }
if [[ -n $out ]]; then
    echo "$out"
    exit 1
fi
