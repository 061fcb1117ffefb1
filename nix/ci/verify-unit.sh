#!/usr/bin/env bash
# systemd-analyze verify on a unit file, failing on any output.
#
# verify insists that ExecStart's binary exists and is executable. The units
# point at /usr/local/bin/... or /nix/store/..., which a CI machine does not
# have, so in a private mount namespace a tmpfs goes over the nearest existing
# ancestor of that path (only /usr/local/* or /nix/*: never over /usr or /)
# with an empty executable stub in place. The unit file itself is unchanged.
#
# Usage: verify-unit.sh UNIT_FILE   (run as root: it needs a mount namespace)
set -euo pipefail
unit=$1
exe=$(sed -n 's/^ExecStart=[-@:+!]*\([^ ]*\).*/\1/p' "$unit" | tail -n1)
[[ $exe == /* ]] || { echo "verify-unit: no absolute ExecStart in $unit" >&2; exit 2; }

if [[ -x $exe ]]; then
    out=$(systemd-analyze verify "$unit" 2>&1) || { echo "$out"; exit 1; }
else
    anc=$(dirname "$exe")
    while [[ ! -d $anc ]]; do anc=$(dirname "$anc"); done
    case $anc in
        /usr/local | /usr/local/* | /nix | /nix/*) ;;
        *) echo "verify-unit: refusing to cover $anc with a tmpfs" >&2; exit 2 ;;
    esac
    out=$(unshare --mount --propagation private -- sh -c '
        mount -t tmpfs verify-stub "$1" &&
        mkdir -p "$(dirname "$2")" &&
        printf "#!/bin/sh\nexit 0\n" > "$2" && chmod 755 "$2" &&
        exec systemd-analyze verify "$3"' sh "$anc" "$exe" "$unit" 2>&1) || { echo "$out"; exit 1; }
fi
if [[ -n $out ]]; then
    echo "$out"
    exit 1
fi
