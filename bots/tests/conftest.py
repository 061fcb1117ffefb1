"""Drive builtin bots through the real harness, the way the runner does.

`run_hook` feeds one PROTOCOL.md job to `/usr/bin/python3 -I -S -B
bots/harness/harness.py` on stdin and reads the `HookOutcome` the harness
writes to fd 3, with no sandbox around it: these tests are about the bots'
logic and about the harness accepting them. `run_sandboxed` sends the same job
through a built `sandbox-runner` instead (test_sandboxed.py). `Table` plays the daemon's part
for a whole game: it threads the bot state from hook to hook, numbers
messages, and keeps a transcript where each bot post is stored the way the
daemon stores it (kind "bot", body {"type": ..., "data": ...}), so that tests
can verify commitments from the transcript alone.
"""

import hashlib
import hmac
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

BOTS_DIR = Path(__file__).resolve().parent.parent
PYTHON = "/usr/bin/python3"
HARNESS = BOTS_DIR / "harness" / "harness.py"
DIST_PACKAGES = "/usr/lib/python3/dist-packages"

DEFAULT_LIMITS = {
    "max_posts": 20,
    "max_post_bytes": 65536,
    "max_state_bytes": 262144,
    "max_output_bytes": 1048576,
}


class HookFailed(Exception):
    """The harness answered with an error outcome."""

    def __init__(self, outcome):
        super().__init__(json.dumps(outcome.get("error"), indent=1))
        self.outcome = outcome


def bot_source(name):
    return (BOTS_DIR / f"{name}.py").read_text(encoding="utf-8")


def hook_block(key_hex, label, i):
    """Block `i` of the determinism generator's stream `label` under the key
    `key_hex` (bots/harness/PROTOCOL.md, "Determinism")."""
    msg = label.encode() + b"\0" + i.to_bytes(8, "big")
    return hmac.new(bytes.fromhex(key_hex), msg, hashlib.sha256).digest()


def interpreter(job):
    """Flags and environment as the runner starts the harness: for a job
    with `entropy`, the hash seed it gives and `-s -P` in place of `-I`."""
    if job.get("entropy") is None:
        return ["-I", "-S", "-B"], {"LANG": "C.UTF-8"}
    seed = int.from_bytes(hook_block(job["entropy"], "pythonhashseed", 0)[:4], "big")
    return ["-s", "-P", "-S", "-B"], {"LANG": "C.UTF-8", "PYTHONHASHSEED": str(seed)}


def run_harness(job, timeout=30):
    """Run the harness once on `job`; return the decoded fd-3 document."""
    read_end, write_end = os.pipe()

    def put_result_pipe_on_fd3():
        os.dup2(write_end, 3)

    flags, env = interpreter(job)
    try:
        proc = subprocess.Popen(
            [PYTHON, *flags, str(HARNESS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=put_result_pipe_on_fd3,
            pass_fds=(3,),
            env=env,
        )
    finally:
        os.close(write_end)
    with os.fdopen(read_end, "rb") as result_pipe:
        proc.stdin.write(json.dumps(job).encode("utf-8"))
        proc.stdin.close()
        raw = result_pipe.read()
    stdout = proc.stdout.read()
    stderr = proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    proc.wait(timeout=timeout)
    if not raw:
        raise AssertionError(
            f"harness wrote nothing to fd 3 (exit {proc.returncode})\nstdout: {stdout[-2000:]!r}\nstderr: {stderr[-4000:]!r}"
        )
    return json.loads(raw)


def make_job(source, hook, players, state, params=None, network=False, bot_id="bot:referee",
             channel_id="ch-test", workspace="/tmp", sys_path=None, name="bot", entropy=None, now=None):
    job = {
        "bot": {"name": name, "source": source, "params": params or {}},
        "hook": hook,
        "context": {"channel_id": channel_id, "bot_id": bot_id, "players": players},
        "state": state,
        "limits": dict(DEFAULT_LIMITS),
        "network": network,
        "workspace": workspace,
        "sys_path": list(sys_path or []),
    }
    # What makes the hook deterministic, only when given (as the daemon will).
    if entropy is not None:
        job["entropy"] = entropy
    if now is not None:
        job["now"] = now
    return job


# The sandbox: `SANDBOX_RUNNER` names a built `sandbox-runner` binary (step
# 45 sets it when step 30 has built one). Runner limits are the daemon's
# defaults (`impl Default for Limits` in protocol/src/lib.rs).
SANDBOX_RUNNER = os.environ.get("SANDBOX_RUNNER")
RUNNER_LIMITS = {
    "wall_ms": 5000, "cpu_secs": 5, "address_space_bytes": 1 << 30, "workspace_bytes": 100 << 20,
    "workspace_inodes": 4096, "file_size_bytes": 32 << 20, "open_files": 64, "threads": 16,
    **DEFAULT_LIMITS,
}
_sandbox_harness = []


def sandbox_harness_dir():
    """A copy of bots/harness that the sandbox's unprivileged uid can read
    (a clone under /root is not)."""
    if not _sandbox_harness:
        import atexit
        import shutil
        import tempfile

        base = tempfile.mkdtemp(prefix="bots-harness-", dir="/tmp")
        atexit.register(shutil.rmtree, base, True)
        os.chmod(base, 0o755)
        target = os.path.join(base, "harness")
        shutil.copytree(HARNESS.parent, target, ignore=shutil.ignore_patterns("tests", "__pycache__"))
        for root, dirs, files in os.walk(target):
            os.chmod(root, 0o755)
            for f in files:
                os.chmod(os.path.join(root, f), 0o644)
        _sandbox_harness.append(target)
    return _sandbox_harness[0]


def run_sandboxed(job, timeout=30):
    """Run one harness job inside the real `sandbox-runner` (daemon's job shape)."""
    runner_job = {
        "version": 2 if "entropy" in job or "now" in job else 1,
        "bot": job["bot"],
        "hook": job["hook"],
        "context": job["context"],
        "state": job["state"],
        "limits": RUNNER_LIMITS,
        "network": {"allowed": bool(job["network"]), "allow_cidrs": [], "deny_cidrs": []},
        "runtime": {
            "python": PYTHON, "python_args": ["-I", "-S", "-B"], "harness_dir": sandbox_harness_dir(),
            "python_path": list(job["sys_path"]), "sandbox_uid": 65534, "sandbox_gid": 65534,
        },
        **{k: job[k] for k in ("entropy", "now") if k in job},
    }
    proc = subprocess.run([SANDBOX_RUNNER], input=json.dumps(runner_job).encode(), capture_output=True,
                          timeout=timeout)
    if not proc.stdout:
        raise AssertionError(f"sandbox-runner exit {proc.returncode}, no outcome; stderr: {proc.stderr[-2000:]!r}")
    return json.loads(proc.stdout)


def run_hook(source, hook, players, state, sandboxed=False, **kw):
    """Run one hook; return (posts, state). Raises HookFailed on an error outcome."""
    job = make_job(source, hook, players, state, **kw)
    outcome = run_sandboxed(job) if sandboxed else run_harness(job)
    if outcome.get("status") != "ok":
        raise HookFailed(outcome)
    return outcome.get("posts", []), outcome.get("state", {})


class Table:
    """A channel with one bot, played through the real harness."""

    def __init__(self, bot, seats, params=None, network=False, sys_path=None, bot_id=None, workspace="/tmp",
                 sandboxed=False, bot_seed=None):
        self.sandboxed = sandboxed
        # With a bot seed, every hook is deterministic as the daemon will run
        # it: its entropy derived from the seed and the hook's trigger, its
        # clock the trigger's time (here, one second per message).
        self.bot_seed = bot_seed
        self.source = bot_source(bot)
        self.bot_id = bot_id or f"bot:{bot}"
        self.players = [{"label": s, "slot": f"invite:{s}", "filled": False} for s in seats]
        self.params = params or {}
        self.network = network
        self.sys_path = sys_path
        self.workspace = workspace
        self.state = {}
        self.seq = 0
        self.transcript = []

    def record(self, sender, kind, body, to=None):
        self.seq += 1
        message = {"seq": self.seq, "sender": sender, "kind": kind, "body": body, "ts": time.time()}
        if to:
            message["to"] = list(to)
        self.transcript.append(message)
        return message

    def hook(self, hook):
        fields = {}
        if self.bot_seed is not None:
            trigger = self.seq  # the seq of the message the hook answers
            fields["entropy"] = hook_block(self.bot_seed, "hook", trigger).hex()
            fields["now"] = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(1_795_000_000 + trigger))
        posts, self.state = run_hook(
            self.source, hook, self.players, self.state, params=self.params,
            network=self.network, sys_path=self.sys_path, bot_id=self.bot_id,
            workspace=self.workspace, sandboxed=self.sandboxed, **fields,
        )
        for post in posts:
            self.record(self.bot_id, "bot", {"type": post["type"], "data": post.get("body")}, post.get("to"))
        return posts

    def init(self):
        if self.bot_seed is not None:  # each hook answers a message of its own
            self.record("system", "system", {"type": "bot:attach", "bot_id": self.bot_id})
        return self.hook({"name": "on_init"})

    def join(self, label):
        for seat in self.players:
            if seat["label"] == label:
                seat["filled"] = True
        if self.bot_seed is not None:
            self.record("system", "system", {"type": "seat:filled", "label": label})
        return self.hook({"name": "on_join", "player": label})

    def say(self, sender, body, to=None):
        message = self.record(sender, "user", body, to)
        return self.hook({"name": "on_message", "message": dict(message)})

    def bot_posts(self, kind=None):
        """Bot messages of the transcript as (type, data, to) tuples."""
        out = []
        for m in self.transcript:
            if m["kind"] == "bot" and (kind is None or m["body"]["type"] == kind):
                out.append((m["body"]["type"], m["body"]["data"], m.get("to")))
        return out


def of_type(posts, kind):
    return [p for p in posts if p["type"] == kind]


@pytest.fixture
def table():
    return Table
