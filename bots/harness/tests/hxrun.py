"""Run the real harness entry point the way `sandbox-runner` does: the
interpreter by absolute path with `-I -S -B`, an empty environment, the job
on stdin and a pipe on fd 3 for the outcome. For a job with `entropy`, as
the runner does: `PYTHONHASHSEED` from it in the environment, and `-s -P`
for `-I` so that the interpreter reads it (`python_hash_seed` derives it
here with `hmac`, independently of the harness and the crate).

The harness runs on the interpreter that runs the tests, so the suite checks
whichever Python runs it (tests/steps/40-harness.sh runs it on 3.11 and
3.13)."""

import hashlib
import hmac
import json
import os
import subprocess
import sys
import textwrap
import threading

PYTHON = sys.executable
HERE = os.path.dirname(os.path.abspath(__file__))
HARNESS = os.path.join(os.path.dirname(HERE), "harness.py")
# Where Debian's python3-requests lives; the runner binds such a folder as
# /pylib/N and lists it in `sys_path`.
DIST_PACKAGES = "/usr/lib/python3/dist-packages"

PLAYERS = [
    {"label": "alice", "slot": "invite:alice", "filled": True},
    {"label": "bob", "slot": "invite:bob", "filled": False},
]

# The protocol's table of edge cases; its `limits` are the protocol's
# defaults (a unit test of the hook-protocol crate keeps them equal), which
# every job here starts from, as the runner's jobs do.
OUTCOME_CASES = os.path.join(HERE, "..", "..", "..", "protocol", "tests", "outcome-cases.json")
with open(OUTCOME_CASES, encoding="utf-8") as _f:
    BASE_LIMITS = json.load(_f)["limits"]


def job(source, hook="on_init", *, state=None, network=False, limits=None, **extra):
    if isinstance(hook, str):
        hook = {"name": hook}
    j = {
        "bot": {"name": "t", "source": textwrap.dedent(source), "params": extra.pop("params", {})},
        "hook": hook,
        "context": {"channel_id": "ch1", "bot_id": "bot:ref", "players": PLAYERS},
        "state": {} if state is None else state,
        "limits": {**BASE_LIMITS, **(limits or {})},
        "network": network,
        "workspace": "/tmp",
        "sys_path": [DIST_PACKAGES] if network else [],
    }
    j.update(extra)
    return j


def block(entropy_hex, label, i):
    """Block `i` of the generator's stream `label` (PROTOCOL.md,
    "Determinism"), computed with the standard library alone."""
    msg = label.encode() + b"\0" + i.to_bytes(8, "big")
    return hmac.new(bytes.fromhex(entropy_hex), msg, hashlib.sha256).digest()


def python_hash_seed(entropy_hex):
    return int.from_bytes(block(entropy_hex, "pythonhashseed", 0)[:4], "big")


def run_raw(stdin_bytes, timeout=30, address_space=None, hash_seed=None):
    """Returns (outcome dict or None, stdout, stderr, returncode).
    `address_space` sets RLIMIT_AS for the harness, as the runner does;
    `hash_seed` starts the interpreter as the runner does for a job with a
    hash seed (its `hash_seed`, else the one its entropy gives)."""
    r, w = os.pipe()

    def child_setup():
        os.dup2(w, 3)
        if address_space is not None:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))

    try:
        if hash_seed is None:
            flags, env = ["-I", "-S", "-B"], {}
        else:
            flags, env = ["-s", "-P", "-S", "-B"], {"PYTHONHASHSEED": str(hash_seed)}
        p = subprocess.Popen(
            [PYTHON, *flags, HARNESS],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd="/tmp",
            close_fds=False,
            preexec_fn=child_setup,
        )
    finally:
        os.close(w)
    # Drain fd 3 while the harness runs: a result larger than the pipe
    # buffer would otherwise block it.
    chunks = []
    with os.fdopen(r, "rb") as rf:
        reader = threading.Thread(target=lambda: chunks.append(rf.read()))
        reader.start()
        try:
            out, err = p.communicate(stdin_bytes, timeout=timeout)
        finally:
            reader.join(timeout)
    result = b"".join(chunks)
    outcome = json.loads(result) if result else None
    return outcome, out, err, p.returncode


def run(source, hook="on_init", **kw):
    """Run one hook; returns the outcome (asserting the harness exited 0 and
    wrote exactly one document)."""
    j = job(source, hook, **kw)
    e = j.get("entropy")
    valid = type(e) is str and len(e) == 64 and set(e) <= set("0123456789abcdef")
    seed = python_hash_seed(e) if valid and hook != "inspect" else None
    if type(j.get("hash_seed")) is int:
        seed = j["hash_seed"]
    outcome, out, err, rc = run_raw(json.dumps(j).encode(), hash_seed=seed)
    assert rc == 0, (rc, err.decode())
    assert outcome is not None, err.decode()
    return outcome


def check(source, network=False, **kw):
    """Run the `inspect` hook."""
    return run(source, "inspect", network=network, **kw)


def error(outcome):
    assert outcome["status"] == "error", outcome
    return outcome["error"]
