"""Reading systemd unit files and expanding SystemCallFilter= the way systemd does.

Shared by the offline packaging checks in this folder. Standard library only,
so that the checks run on a bare Debian with /usr/bin/python3.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field


@dataclass
class Unit:
    """A unit file: section name -> list of (key, value) in file order."""

    path: str
    sections: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    def values(self, section: str, key: str) -> list[str]:
        """Every value assigned to `key`, in order (an empty one resets)."""
        return [v for k, v in self.sections.get(section, []) if k == key]

    def last(self, section: str, key: str) -> str | None:
        vals = self.values(section, key)
        return vals[-1] if vals else None

    def keys(self, section: str) -> set[str]:
        return {k for k, _ in self.sections.get(section, [])}


def parse_unit(path: str) -> Unit:
    """Parse a unit file: comments (`#`, `;`), line continuations, sections."""
    unit = Unit(path)
    section = None
    pending = ""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    for raw in lines:
        line = pending + raw.strip() if pending else raw.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        if not line or line[0] in "#;":
            continue
        m = re.fullmatch(r"\[([^\]]+)\]", line)
        if m:
            section = m.group(1)
            unit.sections.setdefault(section, [])
            continue
        if "=" not in line or section is None:
            raise ValueError(f"{path}: cannot parse line: {raw!r}")
        key, value = line.split("=", 1)
        unit.sections[section].append((key.strip(), value.strip()))
    return unit


def syscall_groups() -> dict[str, list[str]]:
    """`systemd-analyze syscall-filter`: group name -> members (names or @groups)."""
    out = subprocess.run(
        ["systemd-analyze", "syscall-filter", "--no-pager"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    groups: dict[str, list[str]] = {}
    current = None
    for line in out.splitlines():
        if line.startswith("@"):
            current = line.split()[0]
            groups[current] = []
        elif current and line.startswith("    ") and not line.strip().startswith("#"):
            name = line.strip()
            if name:
                groups[current].append(name)
        elif not line.strip():
            current = None
    if "@system-service" not in groups or "@known" not in groups:
        raise RuntimeError("systemd-analyze syscall-filter printed no groups")
    return groups


def expand(names: list[str], groups: dict[str, list[str]]) -> set[str]:
    """Expand @groups recursively into plain syscall names."""
    result: set[str] = set()
    stack = list(names)
    seen: set[str] = set()
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if n.startswith("@"):
            if n not in groups:
                raise ValueError(f"unknown syscall group {n}")
            stack.extend(groups[n])
        else:
            result.add(n)
    return result


def strip_errno(item: str) -> str:
    """`name:EPERM` -> `name` (a per-entry errno still means "not allowed")."""
    return item.split(":", 1)[0]


@dataclass
class SyscallFilter:
    """The unit's filter after all SystemCallFilter= lines are applied."""

    allow_list: bool | None  # None: no filter at all
    names: set[str]  # allowed names (allow list) or denied names (deny list)
    # per-entry errno overrides in an allow list make the call fail, not pass
    errno_entries: set[str] = field(default_factory=set)

    def allows(self, syscall: str) -> bool:
        if self.allow_list is None:
            return True
        if self.allow_list:
            return syscall in self.names
        return syscall not in self.names


def effective_filter(unit: Unit, groups: dict[str, list[str]]) -> SyscallFilter:
    """Apply SystemCallFilter= lines in order, as systemd.exec(5) describes.

    The first non-empty line decides: without `~` it is an allow list (and
    systemd adds @default to it), with `~` a deny list. Later lines of the
    same kind add to it, lines of the other kind take names out of it. An
    empty assignment resets.
    """
    allow_list: bool | None = None
    names: set[str] = set()
    for value in unit.values("Service", "SystemCallFilter"):
        if not value:
            allow_list, names = None, set()
            continue
        invert = value.startswith("~")
        items = [strip_errno(i) for i in value.lstrip("~").split()]
        expanded = expand(items, groups)
        if allow_list is None:
            allow_list = not invert
            names = set(expanded)
            if allow_list:
                names |= expand(["@default"], groups)
            continue
        # allow list: allow lines add, ~ lines remove; deny list: the reverse
        if allow_list != invert:
            names |= expanded
        else:
            names -= expanded
    return SyscallFilter(allow_list, names)


def truthy(v: str | None) -> bool:
    return v is not None and v.lower() in ("1", "yes", "true", "on")


def implicit_denials(unit: Unit, groups: dict[str, list[str]]) -> dict[str, str]:
    """Syscalls that other options forbid through seccomp, with the option.

    systemd.exec(5): ProtectHostname= blocks sethostname/setdomainname,
    ProtectClock= @clock, ProtectKernelModules= @module, ProtectKernelLogs=
    syslog, PrivateDevices= @raw-io (each only for the whole call; the
    argument-level filters of MemoryDenyWriteExecute=, RestrictRealtime=,
    LockPersonality=, RestrictSUIDSGID= and RestrictNamespaces= are handled
    separately).
    """
    rules = [
        ("ProtectHostname", ["sethostname", "setdomainname"]),
        ("ProtectClock", ["@clock"]),
        ("ProtectKernelModules", ["@module"]),
        ("ProtectKernelLogs", ["syslog"]),
        ("PrivateDevices", ["@raw-io"]),
    ]
    out: dict[str, str] = {}
    for option, names in rules:
        if truthy(unit.last("Service", option)):
            for s in expand(names, groups):
                out.setdefault(s, f"{option}=yes")
    return out


NAMESPACES = ["cgroup", "ipc", "net", "mnt", "pid", "user", "uts"]


def allowed_namespaces(unit: Unit) -> set[str]:
    """RestrictNamespaces=: which namespace types the service may create.

    Later assignments of lists add up; `yes` allows none, `no` all, `~list`
    all but those (systemd.exec(5)).
    """
    allowed = set(NAMESPACES)
    first = True
    for value in unit.values("Service", "RestrictNamespaces"):
        if not value:
            allowed, first = set(NAMESPACES), True
            continue
        low = value.lower()
        if low in ("yes", "true", "1", "on"):
            allowed, first = set(), False
        elif low in ("no", "false", "0", "off"):
            allowed, first = set(NAMESPACES), False
        elif value.startswith("~"):
            allowed = set(NAMESPACES) - set(value[1:].split())
            first = False
        else:
            listed = set(value.split())
            allowed = listed if first else allowed | listed
            first = False
    return allowed
