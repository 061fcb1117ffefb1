#!/usr/bin/python3
"""Check that a systemd unit cannot kill the sandbox it hosts.

The daemon runs bot hooks in `sandbox-runner`, which confines itself with
namespaces, Landlock and seccomp. systemd's own seccomp filter and
RestrictNamespaces= sit *above* the runner: a syscall or namespace the unit
forbids makes every hook fail (closed, but failed). This check reads the
runner's own lists (`sandbox-runner policy --json`, the same constants its
seccomp filter is built from) and verifies, against systemd's expansion of
the syscall groups (`systemd-analyze syscall-filter`), that:

  * every syscall the runner makes while confining is allowed by the unit,
  * every syscall the runner's allowlist lets a bot make is allowed too,
  * no other option of the unit (ProtectHostname=, ProtectClock=, ...)
    forbids one of them through its own seccomp rule,
  * RestrictNamespaces= lets the service create every namespace the runner
    unshares,
  * RestrictAddressFamilies= leaves the families the runner and bots use
    (the runner's own list: AF_NETLINK to learn the host's addresses and
    routes, AF_INET/AF_INET6 for bots).

Usage: check-unit-policy.py UNIT POLICY_JSON
Exit 0 when covered, 1 with a list of what is not.
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import unitfile  # noqa: E402


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[-2], file=sys.stderr)
        return 2
    unit = unitfile.parse_unit(argv[1])
    with open(argv[2], encoding="utf-8") as f:
        policy = json.load(f)
    for key in ("confine_syscalls", "bot_syscalls", "namespaces"):
        if not isinstance(policy.get(key), list) or not policy[key]:
            print(f"{argv[2]}: '{key}' missing or empty", file=sys.stderr)
            return 2

    groups = unitfile.syscall_groups()
    known = unitfile.expand(["@known"], groups)
    filt = unitfile.effective_filter(unit, groups)
    implicit = unitfile.implicit_denials(unit, groups)
    problems: list[str] = []

    if filt.allow_list is None:
        problems.append("the unit has no SystemCallFilter= (expected an allow list)")
    for kind in ("confine_syscalls", "bot_syscalls", "template_syscalls"):
        for s in sorted(set(policy.get(kind, []))):
            if s not in known:
                problems.append(f"{kind}: '{s}' is unknown to this systemd (not in @known)")
            elif not filt.allows(s):
                problems.append(f"{kind}: '{s}' is not allowed by SystemCallFilter=")
            elif s in implicit:
                problems.append(f"{kind}: '{s}' is forbidden by {implicit[s]}")

    ns_allowed = unitfile.allowed_namespaces(unit)
    for ns in sorted(set(policy["namespaces"])):
        if ns not in unitfile.NAMESPACES:
            problems.append(f"namespaces: '{ns}' is not a namespace systemd knows")
        elif ns not in ns_allowed:
            problems.append(f"namespaces: '{ns}' is not allowed by RestrictNamespaces=")

    needed = set(policy["address_families"]["runner"]) | set(policy["address_families"]["bot"])
    families = unit.values("Service", "RestrictAddressFamilies")
    if families:
        last = families[-1]
        if last.startswith("~"):
            missing = needed & set(last[1:].split())
        else:
            missing = needed - set(" ".join(f for f in families if f).split())
        for fam in sorted(missing):
            problems.append(f"RestrictAddressFamilies= refuses {fam}, which the runner or network bots use")

    n_conf = len(set(policy["confine_syscalls"]))
    n_bot = len(set(policy["bot_syscalls"]))
    n_tpl = len(set(policy.get("template_syscalls", [])))
    if problems:
        print(f"{argv[1]}: the unit would stop the sandbox:")
        for p in problems:
            print(f"  - {p}")
        return 1
    print(
        f"{argv[1]}: covers the runner's {n_conf} confinement syscalls, "
        f"{n_bot} bot syscalls, {n_tpl} fork-template syscalls and namespaces "
        f"{' '.join(sorted(set(policy['namespaces'])))}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
