#!/usr/bin/python3
"""Check that two renderings of the service agree on every hardening key.

The project ships the unit twice: `systemd/mcp-multiplayer.service` for any
distribution, and the unit `nix/module.nix` renders on NixOS. Their paths
differ (ExecStart, credentials); their confinement must not. This compares
the keys below after normalising booleans, lists and syscall groups (the
effective SystemCallFilter= set, as systemd computes it, is compared, not its
spelling).

Usage: compare-hardening.py UNIT_A UNIT_B
Exit 0 when they agree, 1 with the differences.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import unitfile  # noqa: E402

HARDENING_KEYS = [
    "User", "Group", "DynamicUser", "SupplementaryGroups",
    "CapabilityBoundingSet", "AmbientCapabilities", "NoNewPrivileges",
    "ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices",
    "PrivateMounts", "PrivateUsers", "PrivateNetwork", "PrivateIPC",
    "ProtectClock", "ProtectHostname", "ProtectKernelTunables",
    "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups",
    "ProtectProc", "ProcSubset", "LockPersonality", "MemoryDenyWriteExecute",
    "RestrictRealtime", "RestrictSUIDSGID", "RemoveIPC", "KeyringMode",
    "NotifyAccess", "Delegate", "DevicePolicy", "DeviceAllow",
    "RootDirectory", "RootImage", "RestrictAddressFamilies",
    "RestrictNamespaces", "SystemCallArchitectures", "SystemCallFilter",
    "SystemCallErrorNumber", "IPAddressDeny", "IPAddressAllow", "UMask",
    "StateDirectory", "StateDirectoryMode", "KillMode", "LimitNOFILE",
    "ReadWritePaths", "ReadOnlyPaths", "InaccessiblePaths", "BindPaths",
    "BindReadOnlyPaths",
]

BOOLS = {"1": "yes", "yes": "yes", "true": "yes", "on": "yes",
         "0": "no", "no": "no", "false": "no", "off": "no"}

# Keys whose repeated assignments accumulate (order does not matter).
SET_KEYS = {"IPAddressDeny", "IPAddressAllow", "RestrictAddressFamilies",
            "CapabilityBoundingSet", "AmbientCapabilities", "DeviceAllow",
            "SupplementaryGroups", "ReadWritePaths", "ReadOnlyPaths",
            "InaccessiblePaths", "BindPaths", "BindReadOnlyPaths",
            "SystemCallArchitectures"}


def normalise(unit: unitfile.Unit, key: str, groups) -> object:
    values = unit.values("Service", key)
    if not values:
        return None
    if key == "SystemCallFilter":
        f = unitfile.effective_filter(unit, groups)
        return ("allow" if f.allow_list else "deny", frozenset(f.names))
    if key == "RestrictNamespaces":
        return frozenset(unitfile.allowed_namespaces(unit))
    if key in SET_KEYS:
        items: set[str] = set()
        for v in values:
            if not v:
                items = set()  # an empty assignment resets
            else:
                items |= set(v.split())
        return frozenset(items)
    last = values[-1]
    if key == "UMask":
        return int(last, 8)
    return BOOLS.get(last.lower(), last)


def show(v: object) -> str:
    if v is None:
        return "(unset)"
    if isinstance(v, frozenset):
        return " ".join(sorted(v)) or "(empty)"
    if isinstance(v, tuple):
        return f"{v[0]} list of {len(v[1])} syscalls"
    return str(v)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: compare-hardening.py UNIT_A UNIT_B", file=sys.stderr)
        return 2
    a, b = unitfile.parse_unit(argv[1]), unitfile.parse_unit(argv[2])
    groups = unitfile.syscall_groups()
    diffs = []
    set_keys = 0
    for key in HARDENING_KEYS:
        va, vb = normalise(a, key, groups), normalise(b, key, groups)
        if va is not None:
            set_keys += 1
        if va != vb:
            detail = ""
            if isinstance(va, tuple) and isinstance(vb, tuple) and va[0] == vb[0]:
                only_a, only_b = sorted(va[1] - vb[1]), sorted(vb[1] - va[1])
                detail = f" (only in A: {' '.join(only_a) or '-'}; only in B: {' '.join(only_b) or '-'})"
            elif isinstance(va, frozenset) and isinstance(vb, frozenset):
                detail = (f" (only in A: {' '.join(sorted(va - vb)) or '-'};"
                          f" only in B: {' '.join(sorted(vb - va)) or '-'})")
            diffs.append(f"  {key}: A={show(va)} B={show(vb)}{detail}")
    if diffs:
        print(f"hardening differs between A={argv[1]} and B={argv[2]}:")
        print("\n".join(diffs))
        return 1
    print(f"{argv[1]} and {argv[2]} agree on {set_keys} hardening keys")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
