"""Writes the seccomp profile the OCI image runs under (packaging/oci/seccomp.json).

Container runtimes install a seccomp filter on the container. Their default
profiles refuse what the sandbox-runner does to confine every bot hook:
Docker's refuses unshare, mount, umount2, pivot_root and namespace flags to
clone without CAP_SYS_ADMIN; Podman's (containers-common) refuses
sethostname, which the runner calls in each hook's own UTS namespace. The
image runs with no capability at all, so neither default can work, and
`--privileged` or `seccomp=unconfined` would drop far more than needed.

This profile is containers-common's default (BASE, e.g. Debian's
/usr/share/containers/seccomp.json) with every syscall the runner names in
`sandbox-runner policy --json` (what it calls while confining, and what it
lets the bot call) allowed for any caller, and nothing else changed: each
of those syscalls is taken out of the base's conditional rules and allowed
by one rule. The runner then applies its own, much smaller, filter to each
hook.

  seccomp-profile.py BASE POLICY_JSON > packaging/oci/seccomp.json
"""

import json
import sys


def main():
    base = json.load(open(sys.argv[1]))
    policy = json.load(open(sys.argv[2]))
    needed = sorted(
        set(policy["confine_syscalls"])
        | set(policy["bot_syscalls"])
        | set(policy.get("template_syscalls", []))
    )
    rules = []
    for rule in base["syscalls"]:
        conditional = rule.get("args") or rule.get("includes") or rule.get("excludes")
        names = rule["names"]
        if conditional:
            names = [n for n in names if n not in needed]
        if names:
            rules.append(dict(rule, names=names))
    rules.append({
        "names": needed,
        "action": "SCMP_ACT_ALLOW",
        "comment": "mcp-multiplayer: what sandbox-runner calls while confining a bot hook, "
                   "and what it lets the hook and a fork template call (sandbox-runner policy --json)",
    })
    json.dump(dict(base, syscalls=rules), sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
