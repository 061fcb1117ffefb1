"""Deterministic replay of the referee, end to end: a whole GuessBot game
and a Blackjack hand through the SDK against a real daemon and the real
sandbox, exported as each player and verified by both verifiers while open
and after close; after close, `mcp-multiplayer replay` re-runs every hook in
the sandbox and matches every post and state hash, from each player's signed
export, from a player's transcript (what alice received over MCP) and from
the daemon's database. Forgeries, each re-chained so that the hash chain
still verifies, are caught with the seq named: a bot post not produced by
its code re-signed with the daemon's own key (by the replay; with another
key, by both verifiers), a wrong seed in the reveal, a changed param."""

from __future__ import annotations

import copy
import datetime
import hashlib
import hmac
import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import BIN, Daemon, call, connect, fails
from test_bots import Follower, bot_msgs, two_players
from test_transcripts import export_as, forger_key, py_verify, reseal, resign, rust_verify
from transcript import rehash, verify

pytestmark = pytest.mark.anyio


def replay(*args, cwd=None, env=None) -> tuple[int, dict]:
    """Runs `mcp-multiplayer replay ... --json`; returns the exit code and the report."""
    p = subprocess.run([str(BIN), "replay", *map(str, args), "--json"],
                       capture_output=True, text=True, timeout=600, cwd=cwd,
                       env=dict(os.environ, **(env or {})))
    assert p.returncode in (0, 1), p.stderr
    return p.returncode, json.loads(p.stdout)


def replay_db(daemon, cid, *args) -> tuple[int, dict]:
    """`replay` of channel `cid` read from `daemon`'s database: its SQLite
    file, or on PostgreSQL the database its environment names."""
    if daemon.env.get("MCP_MULTIPLAYER_DATABASE"):
        return replay("--channel", cid, *args, env=daemon.env)
    return replay("--db", daemon.state_dir / "mcp-multiplayer.db", "--channel", cid, *args)


def write(tmp_path, name, doc) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return str(path)


async def play_guess(alice, bob, cid):
    fa = Follower(alice, cid)
    clients = {"alice": alice, "bob": bob}
    lo, hi = 1, 100
    # One move out of turn: the refusal is a private post to its sender.
    await fa.until(lambda ms: bot_msgs(ms, "turn"))
    other = "bob" if fa.last("turn")["body"]["data"]["player"] == "alice" else "alice"
    await call(clients[other], "post_message", {"channel_id": cid, "body": "guess 1"})
    while True:
        await fa.until(lambda ms: bot_msgs(ms, "reveal") or bot_msgs(ms)[-1]["body"]["type"] == "turn")
        if bot_msgs(fa.messages, "reveal"):
            return
        turn = fa.last("turn")["body"]["data"]["player"]
        n = len(bot_msgs(fa.messages, "hint"))
        guess = (lo + hi) // 2
        await call(clients[turn], "post_message", {"channel_id": cid, "body": {"guess": guess}})
        await fa.until(lambda ms: len(bot_msgs(ms, "hint")) > n)
        hint = fa.last("hint")["body"]["data"]["hint"]
        lo, hi = (guess + 1, hi) if hint == "higher" else (lo, guess - 1) if hint == "lower" else (guess, guess)


async def play_blackjack(alice, bob, cid):
    """Plays until a hand settles after a player spoke. A hand dealt with a
    natural (the dealer's, or every player's) settles at the deal without a
    word from anyone; then alice deals the next one, so that the replay below
    always has on_message hooks to check."""
    fa = Follower(alice, cid)
    clients = {"alice": alice, "bob": bob}
    acted = set()
    seen = 0  # reveals already handled
    while True:
        await fa.until(lambda ms: len(bot_msgs(ms, "reveal")) > seen or
                       (bot_msgs(ms, "turn") and bot_msgs(ms, "turn")[-1]["seq"] not in acted))
        if len(bot_msgs(fa.messages, "reveal")) > seen:
            if acted or seen:
                return
            seen = len(bot_msgs(fa.messages, "reveal"))
            await call(alice, "post_message", {"channel_id": cid, "body": "deal"})
            continue
        t = fa.last("turn")
        acted.add(t["seq"])
        d = t["body"]["data"]
        await call(clients[d["player"]], "post_message",
                   {"channel_id": cid, "body": "hit" if d["total"] < 13 else "stand"})


async def everything(client, cid):
    msgs, cursor = [], 0
    while True:
        s = await call(client, "sync_messages", {"channel_id": cid, "cursor": cursor, "wait_ms": 0})
        msgs += s["messages"]
        cursor = s["cursor"]
        if not s.get("more"):
            return msgs


def hooks_by_verdict(report):
    out = {}
    for h in report["hooks"]:
        out.setdefault(h["verdict"], []).append(h)
    return out


@pytest.mark.parametrize("preset,params,play", [
    ("guess", {"min": 1, "max": 100, "max_rounds": 10}, play_guess),
    ("blackjack", {}, play_blackjack),
])
async def test_a_whole_game_replays_hook_by_hook_after_close_and_forgeries_are_caught(
        daemon, tmp_path, preset, params, play):
    ta, tb, spec = await two_players(daemon, preset, params)
    async with connect(daemon.url, ta) as alice, connect(daemon.url, tb) as bob:
        ch = await call(alice, "create_channel", spec)
        cid = ch["channel_id"]
        await call(bob, "join_channel", {"invite_code": ch["invites"][0]["invite_code"]})
        await play(alice, bob, cid)
        code = await call(alice, "get_bot_code", {"channel_id": cid, "bot_id": "bot:referee"})
        code.pop("_text")

        # Exported as each player while open: both verifiers pass, the seed
        # committed and not revealed yet.
        for who, client in (("alice", alice), ("bob", bob)):
            exported = await export_as(client, cid)
            for check in (rust_verify, py_verify):
                rc, rep = check(write(tmp_path, f"open-{who}.json", exported))
                assert rc == 0, (check.__name__, who, rep)
                seeds = [f for f in rep["findings"] if f["check"] == "seed bot:referee"]
                assert seeds and seeds[0]["ok"] and "revealed when the channel closes" in seeds[0]["text"], rep

        # Open: the seed is committed but secret, so nothing can be replayed yet.
        open_doc = {"channel_id": cid, "messages": await everything(alice, cid), "bots": [code]}
        attach = [m for m in open_doc["messages"] if m["kind"] == "system"
                  and m["body"]["type"] == "bot:attach"][0]
        assert attach["body"]["seed_commitment"].startswith("sha256:")
        assert attach["body"]["params_hash"] == "sha256:" + hashlib.sha256(
            json.dumps(params, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        rc, rep = replay(write(tmp_path, "open.json", open_doc))
        assert rc == 0 and rep["hooks"], rep
        assert {h["verdict"] for h in rep["hooks"]} == {"not_replayable"}
        assert all("not revealed" in h["why"] for h in rep["hooks"])

        await call(alice, "update_channel", {"channel_id": cid, "op": "close"})
        msgs = await everything(alice, cid)
        verify(cid, msgs)
        reveal = [m for m in msgs if m["kind"] == "system" and m["body"]["type"] == "bot:reveal"]
        assert len(reveal) == 1 and reveal[0]["body"]["bot_id"] == "bot:referee"
        closed = [m for m in msgs if m["kind"] == "system" and m["body"]["type"] == "channel:closed"][0]
        assert reveal[0]["seq"] == closed["seq"] + 1, "the reveal commits with the close"
        # The reveal opens the commitment, computed from docs/replay.md alone.
        seed = bytes.fromhex(reveal[0]["body"]["seed"])
        assert len(seed) == 32
        assert attach["body"]["seed_commitment"] == "sha256:" + hashlib.sha256(
            b"mcp-multiplayer bot seed v1\x00" + seed).hexdigest()
        salt = hmac.new(seed, b"state-salt\x00" + (0).to_bytes(8, "big"), hashlib.sha256).digest()[:16].hex()
        assert reveal[0]["body"]["state_salt"] == salt
        exports = {"alice": await export_as(alice, cid), "bob": await export_as(bob, cid)}

    # Each player's signed export after the close: both verifiers open the
    # reveal and check the params, and the replay matches every hook.
    for who, exported in exports.items():
        assert exported["channel"]["closed"] is True and exported["exported_as"] == who
        path = write(tmp_path, f"export-{who}.json", exported)
        for check in (rust_verify, py_verify):
            rc, rep = check(path)
            assert rc == 0, (check.__name__, who, rep)
            seeds = [f for f in rep["findings"] if f["check"] == "seed bot:referee"]
            assert seeds and seeds[0]["ok"] and f"at seq {reveal[0]['seq']}" in seeds[0]["text"], rep
        rc, rep = replay(path)
        assert rc == 0 and not rep["problems"], (who, rep)
        assert set(hooks_by_verdict(rep)) == {"matched"}, (who, rep)
        assert rep["hooks_run"] == len(rep["hooks"])
        triggers = {m["seq"] for m in exported["entries"] if m["kind"] == "user"}
        assert triggers <= {h["trigger"] for h in rep["hooks"]}, "every player message's hook was replayed"

    # A bot post its code did not produce, the chain resealed and every head
    # from it re-signed with the daemon's own key (read from its state
    # directory): the signatures hold, so only the replay can tell.
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    key = load_pem_private_key((daemon.state_dir / "signing-key.pem").read_bytes(), None)
    signed = copy.deepcopy(exports["alice"])
    posts = [m for m in signed["entries"] if m["kind"] == "bot" and "to" not in m]
    target = posts[len(posts) // 2]
    target["body"]["data"]["forged"] = True
    reseal(signed)
    resign(signed, key, signed["keys"][-1]["key_id"], target["seq"])
    path = write(tmp_path, "forged-right-key.json", signed)
    assert py_verify(path)[0] == 0, "the chain and the signatures cannot see it"
    rc, rep = rust_verify(path)
    assert rc == 0, ("the builtin's claims do not read the forged field", rep)
    rc, rep = replay(path)
    assert rc == 1
    bad = hooks_by_verdict(rep)["mismatch"]
    assert bad[0]["seq"] == target["seq"], bad
    assert "differs" in bad[0]["what"]
    # The same post re-signed with another key: both verifiers refuse it at
    # the first seq no valid head of the daemon covers.
    fkey, fkey_id, _ = forger_key()
    other = copy.deepcopy(signed)
    resign(other, fkey, fkey_id, target["seq"])
    path = write(tmp_path, "forged-other-key.json", other)
    vouched = max((h["seq"] for h in exports["alice"]["signed_heads"] if h["seq"] < target["seq"]), default=0)
    for check in (rust_verify, py_verify):
        rc, rep = check(path)
        assert rc == 1 and rep["first_bad_seq"] == vouched + 1, (check.__name__, rep)

    # alice's transcript (public messages and her own private ones; a
    # refusal sent to bob she sees only as a hash) and the bot's code.
    doc = {"channel_id": cid, "messages": msgs, "bots": [code]}
    alice_path = write(tmp_path, "alice.json", doc)
    rc, rep = replay(alice_path)
    by = hooks_by_verdict(rep)
    assert rc == 0 and not rep["problems"], rep
    assert set(by) == {"matched"}, rep
    kinds = {h["hook"].split()[0] for h in rep["hooks"]}
    assert kinds == {"on_init", "on_join", "on_message"}
    triggers = {m["seq"] for m in msgs if m["kind"] == "user"}
    assert triggers <= {h["trigger"] for h in rep["hooks"]}, "every player message's hook was replayed"
    assert rep["hooks_run"] == len(rep["hooks"])
    # The replay runs the seeded referee's hooks as the daemon does: forked
    # from the bot's template once it is up (the first hooks run in fresh
    # sandboxes while it starts). With templates off, every hook runs in a
    # fresh or pre-warmed sandbox, and every verdict is the same.
    assert rep["hooks_forked"] >= 1, rep
    no_templates = tmp_path / "no-templates.toml"
    no_templates.write_text("[bots]\nfork_templates = false\n")
    rc, fresh = replay(alice_path, "--config", no_templates)
    assert rc == 0 and fresh["hooks_forked"] == 0, fresh
    assert fresh["hooks"] == rep["hooks"]

    # The daemon's database: every body, every private post compared whole.
    full_path = tmp_path / "full.json"
    rc, rep = replay_db(daemon, cid, "--write-document", full_path)
    assert rc == 0 and set(hooks_by_verdict(rep)) == {"matched"}, rep
    assert all("note" not in h for h in rep["hooks"]), "the full transcript leaves nothing unread"
    full = json.loads(full_path.read_text())

    # Forgery 1: a bot post its code did not produce, re-chained (a server
    # rewriting its own chain; signed heads would be re-signed with its key).
    forged = copy.deepcopy(full)
    posts = [m for m in forged["messages"] if m["kind"] == "bot" and "to" not in m]
    target = posts[len(posts) // 2]
    target["body"]["data"]["forged"] = True
    forged["messages"] = rehash(cid, forged["messages"])
    verify(cid, forged["messages"])  # the chain alone cannot tell
    rc, rep = replay(write(tmp_path, "forged-post.json", forged))
    assert rc == 1
    bad = hooks_by_verdict(rep)["mismatch"]
    assert bad[0]["seq"] == target["seq"], bad
    assert "differs" in bad[0]["what"]

    # Forgery 2: a wrong seed in the reveal (the salt with it, re-chained).
    wrong = copy.deepcopy(full)
    rv = [m for m in wrong["messages"] if m["kind"] == "system" and m["body"]["type"] == "bot:reveal"][0]
    rv["body"]["seed"] = "%064x" % (int(rv["body"]["seed"], 16) ^ 1)
    wrong["messages"] = rehash(cid, wrong["messages"])
    rc, rep = replay(write(tmp_path, "wrong-seed.json", wrong))
    assert rc == 1
    assert rep["problems"][0]["seq"] == rv["seq"], rep["problems"]
    assert "does not open the seed commitment" in rep["problems"][0]["what"]

    # Forgery 3: a changed param (the document's params are not the ones
    # the attach entry fixed).
    changed = copy.deepcopy(full)
    changed["bots"][0]["params"]["dealer_stands_on"] = 99
    rc, rep = replay(write(tmp_path, "changed-param.json", changed))
    assert rc == 1
    assert rep["problems"][0]["seq"] == attach["seq"], rep["problems"]
    assert "params_hash" in rep["problems"][0]["what"]

    # And a post altered without re-chaining breaks the chain at its seq.
    raw = copy.deepcopy(full)
    raw["messages"][target["seq"] - 1]["body"]["data"]["forged"] = True
    rc, rep = replay(write(tmp_path, "unchained.json", raw))
    assert rc == 1 and rep["problems"][0]["seq"] == target["seq"]
    assert "does not verify" in rep["problems"][0]["what"]


CLOCKWORK = '''
MANIFEST = {"name": "Clockwork", "version": "1", "summary": "Posts what it drew, when, and whom it saw."}

import datetime
import random
import secrets
import time


class Clockwork:
    def __init__(self, ctx, params):
        self.ctx = ctx

    def on_message(self, msg):
        self.ctx.post("drawn", {
            "time": time.time(),
            "now": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "random": random.random(),
            "token": secrets.token_hex(8),
            "order": list({"alpha", "beta", "gamma", "delta", "epsilon", "zeta"}),
            # A set display of constants compiles to a frozenset constant: its
            # order must come from this hook's hash seed, not from whatever
            # compiled the bot (48 strings: two seeds almost never agree).
            "many": list({"w00", "w01", "w02", "w03", "w04", "w05", "w06", "w07", "w08", "w09", "w10", "w11", "w12", "w13", "w14", "w15", "w16", "w17", "w18", "w19", "w20", "w21", "w22", "w23", "w24", "w25", "w26", "w27", "w28", "w29", "w30", "w31", "w32", "w33", "w34", "w35", "w36", "w37", "w38", "w39", "w40", "w41", "w42", "w43", "w44", "w45", "w46", "w47"}),
            "players": self.ctx.players,
        })
'''


async def test_time_randomness_set_order_and_seats_replay_in_the_sandbox(daemon, tmp_path):
    """An inline bot that reads the clock, draws from random and secrets,
    iterates a set of strings and reports the seats: every post replays,
    because each is a function of the hook's job."""
    ta, tb, spec = await two_players(daemon, CLOCKWORK, key="bot_code")
    async with connect(daemon.url, ta) as alice, connect(daemon.url, tb) as bob:
        ch = await call(alice, "create_channel", spec)
        cid = ch["channel_id"]
        await call(bob, "join_channel", {"invite_code": ch["invites"][0]["invite_code"]})
        fa = Follower(alice, cid)
        for i, (who, body) in enumerate([(alice, "one"), (bob, "two")]):
            await call(who, "post_message", {"channel_id": cid, "body": body})
            await fa.until(lambda ms, n=i + 1: len(bot_msgs(ms, "drawn")) == n)
        await call(alice, "update_channel", {"channel_id": cid, "op": "kick", "slot": "bob"})
        await call(alice, "post_message", {"channel_id": cid, "body": "three"})
        await fa.until(lambda ms: len(bot_msgs(ms, "drawn")) == 3)
        await call(alice, "update_channel", {"channel_id": cid, "op": "close"})
    drawn = bot_msgs(fa.messages, "drawn")
    by_seq = {m["seq"]: m for m in fa.messages}
    for d in drawn:
        ts = by_seq[d["cause"]]["ts"]
        want = datetime.datetime.fromisoformat(ts.replace("Z", "+00:00"))
        assert d["body"]["data"]["time"] == want.timestamp(), "the clock is the trigger's ts"
        assert d["body"]["data"]["now"] == want.isoformat()
    seats = [{p["label"]: p["filled"] for p in d["body"]["data"]["players"]} for d in drawn]
    assert seats == [{"alice": True, "bob": True}] * 2 + [{"alice": True, "bob": False}]
    assert len({d["body"]["data"]["token"] for d in drawn}) == 3, "each hook its own entropy"
    rc, rep = replay_db(daemon, cid)
    assert rc == 0, json.dumps(rep)
    assert [h["verdict"] for h in rep["hooks"]] == ["matched"] * 3, rep


@pytest.mark.parametrize("quota,bodies", [
    # Four entries before the first post (created, manifest, two seats):
    # posts at 5 and 7, echo at 6; the second echo would be the 8th.
    ("messages_per_channel = 7", ["one", "two"]),
    # The second post fits in 5,000 bytes; its echo, as large again, not.
    ("bytes_per_channel = 5000", ["one", "x" * 3000]),
])
async def test_a_hook_the_daemon_refused_for_its_channel_quota_is_not_replayable_not_a_mismatch(
        state_dir, quota, bodies):
    """When the daemon refuses a hook's posts because they would pass the
    channel's quota (its configuration, which no transcript shows), the
    chain records the refusal as the hook's `bot:error`; the replay, whose
    hook posts, cannot check the quota and says so instead of reporting a
    mismatch. The reason is the daemon's own refusal text, read back by
    `quota::ChannelRefusal::parse`, and the figures it states that the
    replay can check (the channel's message count before it, the size of
    the hook's posts, that they pass the stated limit) agree."""
    cfg = state_dir / "quota.toml"
    cfg.write_text(f"[quotas]\n{quota}\n")
    d = Daemon(state_dir, ["--config", str(cfg)]).start()
    try:
        async with connect(d.url, d.token("alice")) as alice:
            ch = await call(alice, "create_channel", {
                "name": "full", "slots": ["invite:alice", "bot:referee"],
                "bot_preset": "echo", "join_as": "alice"})
            cid = ch["channel_id"]
            fa = Follower(alice, cid)
            for body in bodies:
                post = await call(alice, "post_message", {"channel_id": cid, "body": body})
                await fa.until(lambda ms, s=post["seq"]: any(m.get("cause") == s for m in ms))
            last = post["seq"]
            outcome = [m for m in fa.messages if m.get("cause") == last]
            assert [m["body"]["type"] for m in outcome] == ["bot:error"], outcome
            assert "Start a new channel" in outcome[0]["body"]["reason"], outcome
            await call(alice, "update_channel", {"channel_id": cid, "op": "close"})
        rc, rep = replay_db(d, cid)
    finally:
        d.stop()
    assert rc == 0, json.dumps(rep)
    verdicts = {h["trigger"]: h for h in rep["hooks"]}
    assert [h["verdict"] for t, h in sorted(verdicts.items()) if t != last] == ["matched"], rep
    refused = verdicts[last]
    assert refused["verdict"] == "not_replayable", rep
    assert "refused this hook's posts for the channel's quota" in refused["why"], rep
    assert outcome[0]["body"]["reason"] in refused["why"], rep


MODERN = '''
MANIFEST = {"name": "Modern", "version": "1", "summary": "Written for Python 3.12 or later."}

import random


def first[T](xs: list[T]) -> T:
    return xs[0]


class Modern:
    def __init__(self, ctx, params):
        self.ctx = ctx

    def on_message(self, msg):
        self.ctx.post("drawn", {
            "first": first([msg.get("seq"), 0]),
            "random": random.random(),
            "order": list({"alpha", "beta", "gamma", "delta"}),
        })
'''


def python313() -> str:
    """Python 3.13, what nixpkgs ships: HARNESS_PYTHON313, which step 90 sets
    from `deps_python313` (tests/steps/deps.sh) as steps 30 and 40 find it;
    run alone, pyenv's build."""
    p = os.environ.get("HARNESS_PYTHON313") or str(
        Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions/3.13.0/bin/python3.13")
    assert os.access(p, os.X_OK), f"no Python 3.13 at {p}: set HARNESS_PYTHON313 to a python3.13 binary"
    return p


async def test_bots_run_and_replay_on_the_python_the_config_names(daemon, tmp_path):
    """`[bots] python` names the interpreter of every hook (the flake's
    package runs bots on nixpkgs' Python 3.13): a bot written with a
    3.12-only construct (a generic function, PEP 695) is refused at
    creation on the default 3.11 and runs on 3.13, forked from its template,
    and replays there hook by hook."""
    spec = {"name": "modern", "slots": ["invite:alice", "bot:referee"],
            "bot_code": MODERN, "join_as": "alice"}
    async with connect(daemon.url, daemon.token("alice")) as alice:
        refused = await fails(alice, "create_channel", spec)
    assert "line 7: expected '('" in str(refused), refused

    cfg = tmp_path / "py313.toml"
    cfg.write_text(f"[bots]\npython = {json.dumps(python313())}\n")
    state = tmp_path / "state"
    state.mkdir()
    d = Daemon(state, ["--config", str(cfg)]).start()
    try:
        async with connect(d.url, d.token("alice")) as alice:
            cid = (await call(alice, "create_channel", spec))["channel_id"]
            fa = Follower(alice, cid)
            for i, body in enumerate(["one", "two", "three", "four"]):
                await call(alice, "post_message", {"channel_id": cid, "body": body})
                await fa.until(lambda ms, n=i + 1: len(bot_msgs(ms, "drawn")) == n)
            await call(alice, "update_channel", {"channel_id": cid, "op": "close"})
        drawn = bot_msgs(fa.messages, "drawn")
        assert [m["body"]["data"]["first"] for m in drawn] == [m["cause"] for m in drawn]
        assert d.metric("mcp_multiplayer_hooks_forked_total") >= 1
        rc, rep = replay_db(d, cid, "--config", cfg)
    finally:
        d.stop()
    assert rc == 0, json.dumps(rep)
    assert [h["verdict"] for h in rep["hooks"]] == ["matched"] * 4, rep
