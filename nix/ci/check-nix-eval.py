#!/usr/bin/python3
"""Check what nix/ci/nix-eval.sh found when it evaluated the flake.

Usage: check-nix-eval.py EVAL_DIR CONFIG_TOML

Against the real nixpkgs module system, every scenario of
nix/ci/module-scenarios.nix must hold these properties:

  firewall   the ports the firewall opens are exactly the port of the
             `listen` the daemon is configured with, when openFirewall is on,
             and none otherwise;
  state-dir  the `state_dir` the daemon is configured with is writable under
             the unit: it is the StateDirectory= (below /var/lib), or it is in
             ReadWritePaths= and a tmpfiles rule creates it for the service
             user; and it is that user's home;
  keys       every key the module writes is one CONFIG_TOML (the example
             config, whose keys the daemon accepts) knows.

The scenarios `broken-firewall` and `broken-state-dir` evaluate copies of the
module with a settings bug put back; the matching property must fail on each
(so that the check is shown to catch the bug). The scenarios that must not
evaluate must fail with the expected message. Also: every .nix file parses,
`nix flake check` passes without warnings, the package and VM test have
drvPaths, every app has a meta.description, and the VM test's Python script
compiles.

Prints one line per check; exit 0 when all hold, 1 otherwise.
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import unitfile  # noqa: E402

# Scenarios that must not evaluate, with what the error must say.
MUST_FAIL = {
    "passphrase-in-store": r"passphraseFile must not be in the Nix store",
    "unknown-option": r"option `services\.mcp-multiplayer\.lsiten' does not exist",
    "wrong-type": r"option `services\.mcp-multiplayer\.openFirewall' is not of type `boolean'",
    "listen-hostname": r"option `services\.mcp-multiplayer\.settings\.listen' is not of type `string matching",
    "package-without-passthru": r"services\.mcp-multiplayer\.package \(hello-[0-9.]+\) has no passthru\.python3",
}
# Scenarios that scenario_expectations() reads.
EXPECTED = {"default", "firewall", "renamed", "state-dir-below-var-lib", "package-override"}
# Broken copies of the module, and the property each must fail.
MUST_BREAK = {"broken-firewall": "firewall", "broken-state-dir": "state-dir"}


def port_of(listen: str) -> int:
    return int(listen.rsplit(":", 1)[1])


def check_firewall(s: dict) -> list[str]:
    listen = s["settings"]["listen"]
    want = [port_of(listen)] if s["openFirewall"] else []
    if sorted(s["firewallPorts"]) != want:
        return [f"the firewall opens {s['firewallPorts']}, but the daemon listens on {listen}"
                f" (openFirewall = {str(s['openFirewall']).lower()})"]
    return []


def check_state_dir(s: dict, unit: unitfile.Unit) -> list[str]:
    state_dir = s["settings"]["state_dir"]
    managed = ["/var/lib/" + v for line in unit.values("Service", "StateDirectory") for v in line.split()]
    writable = [v for line in unit.values("Service", "ReadWritePaths") for v in line.split()]
    problems = []
    if state_dir in managed:
        pass
    elif state_dir in writable:
        rule = s["tmpfiles"].get(state_dir, {}).get("d")
        if not rule or rule.get("user") != s["user"]["name"] or rule.get("mode") != "0700":
            problems.append(f"state_dir {state_dir} is in ReadWritePaths= but no tmpfiles rule creates it"
                            f" (d, owner {s['user']['name']}, 0700): {s['tmpfiles']}")
    else:
        problems.append(f"state_dir {state_dir} is not writable under the unit"
                        f" (StateDirectory= gives {managed or 'nothing'}, ReadWritePaths= {writable or 'nothing'})")
    if s["user"]["home"] != state_dir:
        problems.append(f"the service user's home is {s['user']['home']}, not state_dir {state_dir}")
    return problems


def key_paths(table: dict, prefix: str = ""):
    for k, v in table.items():
        if isinstance(v, dict):
            yield from key_paths(v, f"{prefix}{k}.")
        else:
            yield prefix + k


def check_keys(s: dict, known: set[str]) -> list[str]:
    unknown = sorted(set(key_paths(s["settings"])) - known)
    return [f"the module writes keys the example config does not know: {unknown}"] if unknown else []


def properties(name: str, s: dict, known: set[str], out: Path) -> dict[str, list[str]]:
    unit_path = out / f"scenario-{name}.service"
    unit_path.write_text(s["unit"], encoding="utf-8")
    unit = unitfile.parse_unit(str(unit_path))
    return {
        "firewall": check_firewall(s),
        "state-dir": check_state_dir(s, unit),
        "keys": check_keys(s, known),
    }


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    out, config = Path(argv[1]), argv[2]
    problems: list[str] = []

    def status(name: str) -> int | None:
        p = out / f"{name}.status"
        return int(p.read_text()) if p.exists() else None

    def log(name: str) -> str:
        p = out / f"{name}.log"
        return p.read_text(errors="replace") if p.exists() else "(no log)"

    def tail(text: str, n: int = 25) -> str:
        return "\n".join("      " + line for line in text.strip().splitlines()[-n:])

    def require(name: str, what: str) -> bool:
        if status(name) != 0:
            problems.append(f"{what} failed:\n{tail(log(name))}")
            return False
        return True

    if require("parse", "nix-instantiate --parse"):
        print(f"  ok: {len((out / 'nix-files').read_text().split())} .nix files parse")
    if require("flake-check", "nix flake check --no-build --all-systems"):
        checked = re.findall(r"^checking derivation (\S+)\.\.\.$", log("flake-check"), re.M)
        print(f"  ok: nix flake check --no-build --all-systems ({len(checked)} derivations evaluated)")
        warnings = [line for line in log("flake-check").splitlines() if line.startswith("warning:")]
        if warnings:
            problems.append("nix flake check warns:\n" + "\n".join("      " + w for w in warnings))
    drvs = dict(re.findall(r"^checking derivation (\S+)\.\.\.\nderivation evaluated to (\S+)$", log("flake-check"), re.M))
    for system in ("x86_64-linux", "aarch64-linux"):
        for what in (f"packages.{system}.default", f"checks.{system}.vm"):
            drv = drvs.get(what, "")
            if not re.fullmatch(r"/nix/store/[0-9a-z]{32}-.+\.drv", drv):
                problems.append(f"nix flake check gave no drvPath for {what}")
            else:
                print(f"  ok: {what}: {drv}")
    if require("apps.json", "the apps' meta"):
        apps = json.loads((out / "apps.json").read_text())
        for system, by_name in sorted(apps.items()):
            for name, meta in sorted(by_name.items()):
                if not (meta or {}).get("description"):
                    problems.append(f"apps.{system}.{name} has no meta.description")
                else:
                    print(f"  ok: apps.{system}.{name}: {meta['description']}")
    if require("vm.service", "the VM test's server unit"):
        print("  ok: the VM test's server renders mcp-multiplayer.service")
    if require("vm-testscript.py", "the VM test's script"):
        try:
            compile((out / "vm-testscript.py").read_text(), "testScript", "exec")
            print("  ok: the VM test's Python script compiles")
        except SyntaxError as e:
            problems.append(f"the VM test's script does not compile: {e}")

    if require("scenarios.json", "the module scenarios"):
        scenarios = json.loads((out / "scenarios.json").read_text())
        for name in sorted((set(MUST_BREAK) | EXPECTED) - scenarios.keys()):
            problems.append(f"scenario {name} was not evaluated")
        with open(config, "rb") as f:
            known = set(key_paths(tomllib.load(f)))
        for name, s in sorted(scenarios.items()):
            found = properties(name, s, known, out)
            if name in MUST_BREAK:
                prop = MUST_BREAK[name]
                if found[prop]:
                    print(f"  ok: {name} fails the {prop} check: {found[prop][0]}")
                else:
                    problems.append(f"{name}: the {prop} check did not catch the bug put back into the module")
                continue
            bad = [f"{name}: {p}" for ps in found.values() for p in ps]
            problems += bad
            if not bad:
                print(f"  ok: {name}: listen {s['settings']['listen']}, firewall {s['firewallPorts']},"
                      f" state_dir {s['settings']['state_dir']}")
        problems += scenario_expectations(scenarios)

    for name, pattern in MUST_FAIL.items():
        st, text = status(f"fail-{name}"), log(f"fail-{name}")
        if st is None:
            problems.append(f"fail-{name}: not evaluated")
        elif st == 0:
            problems.append(f"{name}: evaluated, but must fail with /{pattern}/")
        elif not re.search(pattern, text):
            problems.append(f"{name}: failed, but without /{pattern}/:\n{tail(text)}")
        else:
            print(f"  ok: {name} is refused: {re.search(pattern, text).group(0)}")

    if problems:
        print("FAIL:\n" + "\n".join("  - " + p for p in problems))
        return 1
    return 0


def scenario_expectations(sc: dict) -> list[str]:
    """What particular scenarios must render, beyond the shared properties."""
    problems = []

    def expect(cond: bool, what: str):
        if not cond:
            problems.append(what)

    d = sc["default"]["settings"]
    bots = d.get("bots", {})
    expect(re.fullmatch(r"/nix/store/[0-9a-z]{32}-python3-[^/]+/bin/python3", bots.get("python", "")) is not None,
           f"default: bots.python is not a store-path python3: {bots.get('python')}")
    expect(any("-requests-" in p for p in bots.get("python_path", [])),
           f"default: requests is not on bots.python_path: {bots.get('python_path')}")
    expect(d.get("auth", {}).get("approval") == "passphrase", "default: passphraseFile must turn on passphrase approval")
    expect(d.get("public_url") == "https://mcp.example.com" and d.get("log_format") == "json",
           f"default: settings are not rendered as given: {d}")
    expect("public_url" not in sc["firewall"]["settings"], "an unset public_url must be left out of the TOML")
    expect(sc["default"]["user"]["isSystemUser"], "default: the service user is not a system user")
    unit = sc["default"]["unit"]
    expect(re.search(r"^ExecStart=/nix/store/\S+/bin/mcp-multiplayer serve --config /nix/store/\S+\.toml$",
                     unit, re.M) is not None, "default: ExecStart is not `.../bin/mcp-multiplayer serve --config ...`")
    r = sc["renamed"]
    expect(r["settings"]["listen"] == "0.0.0.0:9001" and r["settings"].get("public_url") == "https://old.example.com",
           f"renamed: the old listen/publicUrl options did not reach settings: {r['settings']}")
    expect(len(r["warnings"]) == 2, f"renamed: expected two rename warnings, got {r['warnings']}")
    expect("StateDirectory=mcp/data" in sc["state-dir-below-var-lib"]["unit"],
           "state-dir-below-var-lib: StateDirectory= is not mcp/data")
    expect("-patched" in sc["package-override"]["unit"], "package-override: the unit does not run the replacement package")
    return problems


if __name__ == "__main__":
    sys.exit(main(sys.argv))
