"""Every builtin bot passes the harness's language layer and declares a manifest."""

import ast
import json
import subprocess

import pytest

from conftest import BOTS_DIR, HARNESS, PYTHON, bot_source, run_harness, make_job

BUILTINS = ["guess", "blackjack", "echo", "fetch", "tlscert", "judge", "sealed_bid", "context_exchange"]


def literal_manifest(name):
    tree = ast.parse(bot_source(name))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "MANIFEST" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name}.py has no MANIFEST literal")


def test_every_builtin_is_listed():
    files = sorted(p.stem for p in BOTS_DIR.glob("*.py"))
    assert files == sorted(BUILTINS)


NETWORK_BOTS = {"fetch", "tlscert"}


def check(path, network=False):
    args = [PYTHON, "-I", "-S", "-B", str(HARNESS), "--check", str(path)] + (["--network"] if network else [])
    proc = subprocess.run(args, capture_output=True, text=True, timeout=30)
    verdict = json.loads(proc.stdout)
    assert (proc.returncode == 0) == (verdict["status"] == "ok")
    return verdict


@pytest.mark.parametrize("name", BUILTINS)
def test_check_cli_accepts_builtin(name):
    verdict = check(BOTS_DIR / f"{name}.py", network=name in NETWORK_BOTS)
    assert verdict["status"] == "ok", verdict
    manifest = verdict["manifest"]
    expected = literal_manifest(name)
    assert manifest["name"] == expected["name"]
    assert manifest["version"] == expected["version"]
    assert "on_message" in manifest["hooks"]


@pytest.mark.parametrize("name", BUILTINS)
def test_inspect_hook_accepts_builtin(name):
    job = make_job(bot_source(name), {"name": "inspect"}, [], {}, network=name in NETWORK_BOTS)
    outcome = run_harness(job)
    assert outcome["status"] == "ok", outcome
    assert outcome["manifest"]["name"] == literal_manifest(name)["name"]
    assert outcome.get("posts", []) == []


def test_check_cli_refuses_a_forbidden_import(tmp_path):
    """The check above would be worthless if the layer accepted anything."""
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n\nclass Bad:\n    def on_message(self, msg):\n        pass\n")
    verdict = check(bad)
    assert verdict["status"] == "error" and verdict["error"]["line"] == 1


@pytest.mark.parametrize("name", sorted(NETWORK_BOTS))
def test_network_bots_are_refused_without_network(name):
    """Attaching fetch/tlscert to a channel without allow_network fails early."""
    verdict = check(BOTS_DIR / f"{name}.py", network=False)
    assert verdict["status"] == "error" and "needs network access" in verdict["error"]["message"]


def test_the_guide_example_bot_passes_and_its_commitment_checks(tmp_path):
    """docs/bots.md's first example must stay a working bot."""
    import hashlib
    import re

    from conftest import Table

    guide = (BOTS_DIR.parent / "docs" / "bots.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(MANIFEST = .*?)```", guide, re.S).group(1)
    path = tmp_path / "coin.py"
    path.write_text(code)
    assert check(path)["status"] == "ok"
    t = Table("echo", ["alice"])
    t.source = code
    commit = t.init()[0]["body"]["sha256"]
    reveal = t.say("alice", "flip")[0]["body"]
    assert hashlib.sha256(f"{reveal['side']}|{reveal['seed']}".encode()).hexdigest() == commit
