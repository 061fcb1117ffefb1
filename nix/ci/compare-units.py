#!/usr/bin/python3
"""Check that the shipped unit and the NixOS module's unit agree, key by key.

The project ships the service twice: `systemd/mcp-multiplayer.service` for
any distribution, and the unit `nix/module.nix` renders on NixOS. Every key
of every section of either unit is compared:

  * hardening keys after normalising booleans, lists and syscall groups (the
    effective SystemCallFilter= set, as systemd computes it, is compared,
    not its spelling);
  * the other keys after normalising booleans and, for dependency lists,
    order;
  * by design, paths differ: ExecStart= and LoadCredential= must agree once
    every absolute path is replaced by its last component with the store
    hash taken off; and NixOS adds keys of its own (NIXOS_ADDITIONS), which
    may only appear in unit B.

Usage: compare-units.py UNIT_A UNIT_B   (A the shipped unit, B the NixOS one)
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


# Keys NixOS writes into every service, and what they may hold.
NIXOS_ADDITIONS = {
    ("Unit", "X-Restart-Triggers"): None,
    ("Service", "Environment"): {"LOCALE_ARCHIVE", "PATH", "TZDIR"},
}
# Keys whose values are command lines or name:path pairs.
PATH_KEYS = {"ExecStart", "ExecStartPre", "ExecStartPost", "ExecReload", "ExecStop", "LoadCredential"}
# Keys whose values are lists where order does not matter.
LIST_KEYS = {"After", "Before", "Wants", "Requires", "WantedBy", "RequiredBy", "Documentation",
             "Conflicts", "BindsTo", "PartOf"}


def strip_paths(value: str) -> str:
    """`/nix/store/HASH-mcp-multiplayer-0.1.0/bin/mcp-multiplayer serve --config
    /nix/store/HASH-x.toml` -> `mcp-multiplayer serve --config <path>`: the
    program by name, every other absolute path as `<path>`."""
    words = []
    for i, w in enumerate(value.split()):
        prefix, _, path = w.rpartition(":") if ":/" in w else ("", "", w)
        if path.startswith("/"):
            path = path.rsplit("/", 1)[-1] if i == 0 and not prefix else "<path>"
        words.append(f"{prefix}:{path}" if prefix else path)
    return " ".join(words)


def generic(unit: unitfile.Unit, section: str, key: str) -> object:
    values = unit.values(section, key)
    if not values:
        return None
    if key in PATH_KEYS:
        return " | ".join(strip_paths(v) for v in values)
    if key in LIST_KEYS:
        return frozenset(" ".join(values).split())
    return " | ".join(BOOLS.get(v.lower(), v) for v in values)


def env_names(unit: unitfile.Unit) -> set[str]:
    names = set()
    for v in unit.values("Service", "Environment"):
        for item in v.split('" "') if v.startswith('"') else v.split():
            names.add(item.strip('"').split("=", 1)[0])
    return names


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: compare-units.py UNIT_A UNIT_B", file=sys.stderr)
        return 2
    a, b = unitfile.parse_unit(argv[1]), unitfile.parse_unit(argv[2])
    groups = unitfile.syscall_groups()
    diffs = []
    same = 0
    by_design = []
    for section in sorted(set(a.sections) | set(b.sections)):
        for key in sorted(a.keys(section) | b.keys(section)):
            if (section, key) in NIXOS_ADDITIONS:
                allowed = NIXOS_ADDITIONS[(section, key)]
                if a.values(section, key):
                    diffs.append(f"  [{section}] {key}: set in A, but only NixOS may add it")
                elif allowed is not None and not env_names(b) <= allowed:
                    diffs.append(f"  [{section}] {key}: B sets {' '.join(sorted(env_names(b) - allowed))},"
                                 f" beyond what NixOS adds ({' '.join(sorted(allowed))})")
                else:
                    by_design.append(f"{key} (NixOS)")
                continue
            if section == "Service" and key in HARDENING_KEYS:
                va, vb = normalise(a, key, groups), normalise(b, key, groups)
            else:
                va, vb = generic(a, section, key), generic(b, section, key)
            if va != vb:
                detail = ""
                if isinstance(va, tuple) and isinstance(vb, tuple) and len(va) == 2 and va[0] == vb[0] \
                        and isinstance(va[1], frozenset):
                    only_a, only_b = sorted(va[1] - vb[1]), sorted(vb[1] - va[1])
                    detail = f" (only in A: {' '.join(only_a) or '-'}; only in B: {' '.join(only_b) or '-'})"
                elif isinstance(va, frozenset) and isinstance(vb, frozenset):
                    detail = (f" (only in A: {' '.join(sorted(va - vb)) or '-'};"
                              f" only in B: {' '.join(sorted(vb - va)) or '-'})")
                diffs.append(f"  [{section}] {key}: A={show(va)} B={show(vb)}{detail}")
            else:
                same += 1
                if key in PATH_KEYS and a.values(section, key) != b.values(section, key):
                    by_design.append(f"{key} (paths)")
    if diffs:
        print(f"the units differ: A={argv[1]} B={argv[2]}:")
        print("\n".join(diffs))
        return 1
    print(f"{argv[1]} and {argv[2]} agree on {same} keys"
          f" (differing by design: {', '.join(by_design) or 'none'})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
