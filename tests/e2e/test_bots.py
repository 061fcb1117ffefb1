"""End to end: bots attached to channels run in the real sandbox and
referee games between two SDK clients; everything checked from the
transcript alone, as a participant would."""

from __future__ import annotations

import hashlib
import os
import subprocess
import secrets
import statistics
import time
from pathlib import Path

import anyio
import httpx2
import pytest
from conftest import REPO, call, connect, fails
from transcript import verify

pytestmark = pytest.mark.anyio


def bot_msgs(messages, type_=None):
    out = [m for m in messages if m["kind"] == "bot" and "body" in m]
    return [m for m in out if type_ is None or m["body"]["type"] == type_]


class Follower:
    """Follows a channel through long-polling sync_messages (no sleeps)."""

    def __init__(self, client, cid, slot=None):
        self.client, self.cid, self.slot = client, cid, slot
        self.messages: list[dict] = []
        self.cursor = 0

    async def until(self, pred, timeout=30):
        with anyio.fail_after(timeout):
            while not pred(self.messages):
                args = {"channel_id": self.cid, "cursor": self.cursor, "wait_ms": 10000}
                if self.slot:
                    args["slot"] = self.slot
                s = await call(self.client, "sync_messages", args)
                self.messages += s["messages"]
                self.cursor = s["cursor"]
        return self.messages

    def last(self, type_):
        found = bot_msgs(self.messages, type_)
        return found[-1] if found else None


async def two_players(daemon, preset_or_code, params=None, key="bot_preset", allow_network=False):
    ta, tb = daemon.token("alice"), daemon.token("bob")
    return ta, tb, {"name": "table", "slots": ["invite:alice", "invite:bob", "bot:referee"],
                    key: preset_or_code, "bot_params": params or {}, "join_as": "alice",
                    "allow_network": allow_network}


async def test_guessbot_game_to_the_end_commitment_verified_from_transcript(daemon):
    ta, tb, spec = await two_players(daemon, "guess", {"min": 1, "max": 100, "max_rounds": 10})
    async with connect(daemon.url, ta) as alice, connect(daemon.url, tb) as bob:
        ch = await call(alice, "create_channel", spec)
        cid = ch["channel_id"]
        await call(bob, "join_channel", {"invite_code": ch["invites"][0]["invite_code"]})
        fa, fb = Follower(alice, cid), Follower(bob, cid)
        clients = {"alice": (alice, fa), "bob": (bob, fb)}
        lo, hi = 1, 100
        refused_checked = False
        while True:
            await fa.until(lambda ms: bot_msgs(ms, "reveal") or
                           (bot_msgs(ms, "turn") and bot_msgs(ms)[-1]["body"]["type"] == "turn"))
            if bot_msgs(fa.messages, "reveal"):
                break
            turn = fa.last("turn")["body"]["data"]["player"]
            other = "bob" if turn == "alice" else "alice"
            if not refused_checked:
                # Out of turn: refused, privately, to the player who tried.
                oc, of = clients[other]
                await call(oc, "post_message", {"channel_id": cid, "body": "guess 1"})
                await of.until(lambda ms: bot_msgs(ms, "refused"))
                r = of.last("refused")
                assert r["to"] == [other] and r["body"]["data"]["turn"] == turn
                refused_checked = True
            guess = (lo + hi) // 2
            c, _ = clients[turn]
            n_hints = len(bot_msgs(fa.messages, "hint"))
            await call(c, "post_message", {"channel_id": cid, "body": {"guess": guess}})
            await fa.until(lambda ms: len(bot_msgs(ms, "hint")) > n_hints)
            hint = fa.last("hint")["body"]["data"]
            assert hint["player"] == turn and hint["guess"] == guess
            if hint["hint"] == "higher":
                lo = guess + 1
            elif hint["hint"] == "lower":
                hi = guess - 1

        # Verify from alice's transcript alone.
        full = (await call(alice, "sync_messages", {"channel_id": cid, "cursor": 0, "wait_ms": 0}))["messages"]
        verify(cid, full)
        commit = bot_msgs(full, "commit")[0]
        reveal = bot_msgs(full, "reveal")[0]["body"]["data"]
        first_guess = min(m["seq"] for m in full if m["kind"] == "user")
        # The causal order (verified with the chain by `verify`): the hook
        # that committed ran before any guess existed.
        assert commit["cause"] < first_guess, "the commitment precedes every guess"
        by_seq = {m["seq"]: m for m in full}
        for h in bot_msgs(full, "hint"):
            guess = by_seq[h["cause"]]
            assert guess["kind"] == "user" and guess["sender"] == h["body"]["data"]["player"], \
                "each hint judges the guess that caused it"
        preimage = f"{reveal['target']}|{reveal['nonce']}"
        assert hashlib.sha256(preimage.encode()).hexdigest() == commit["body"]["data"]["commitment"]
        for h in bot_msgs(full, "hint"):
            d = h["body"]["data"]
            want = "correct" if d["guess"] == reveal["target"] else ("higher" if d["guess"] < reveal["target"] else "lower")
            assert d["hint"] == want, "every hint is consistent with the revealed target"
        assert reveal["winner"] in ("alice", "bob")

        # The announced code hash is that of the exact bytes, and of the preset file.
        code = await call(bob, "get_bot_code", {"channel_id": cid, "bot_id": "bot:referee"})
        file_bytes = (REPO / "bots" / "guess.py").read_bytes()
        assert code["source"].encode() == file_bytes
        assert code["code_hash"] == "sha256:" + hashlib.sha256(file_bytes).hexdigest()
        attach = [m for m in full if m["kind"] == "system" and m["body"]["type"] == "bot:attach"][0]
        assert attach["body"]["code_hash"] == code["code_hash"] and attach["body"]["network"] is False


def rederive_deck(seed: str) -> list[str]:
    deck = [r + s for s in "SHDC" for r in "A23456789TJQK"]
    for i in range(51, 0, -1):
        j = int(hashlib.sha256(f"{seed}:{i}".encode()).hexdigest(), 16) % (i + 1)
        deck[i], deck[j] = deck[j], deck[i]
    return deck


async def play_blackjack_hand(daemon):
    """One hand at a new table, played to its reveal (hit below 13); the
    whole transcript, verified."""
    ta, tb, spec = await two_players(daemon, "blackjack")
    async with connect(daemon.url, ta) as alice, connect(daemon.url, tb) as bob:
        ch = await call(alice, "create_channel", spec)
        cid = ch["channel_id"]
        await call(bob, "join_channel", {"invite_code": ch["invites"][0]["invite_code"]})
        fa = Follower(alice, cid)
        clients = {"alice": alice, "bob": bob}
        acted = set()
        while True:
            await fa.until(lambda ms: bot_msgs(ms, "reveal") or
                           (bot_msgs(ms, "turn") and bot_msgs(ms, "turn")[-1]["seq"] not in acted))
            if bot_msgs(fa.messages, "reveal"):
                break
            t = fa.last("turn")
            acted.add(t["seq"])
            d = t["body"]["data"]
            action = "hit" if d["total"] < 13 else "stand"
            await call(clients[d["player"]], "post_message", {"channel_id": cid, "body": action})

        full = (await call(bob, "sync_messages", {"channel_id": cid, "cursor": 0, "wait_ms": 0}))["messages"]
        verify(cid, full)
        return full


def check_blackjack_hand(full):
    """The hand's commitment, deal, cards and reveal, re-derived from the
    revealed seed."""
    commit = [m for m in bot_msgs(full, "commit") if m["body"]["data"]["hand"] == 1][0]
    reveal = bot_msgs(full, "reveal")[0]
    seed = reveal["body"]["data"]["seed"]
    assert commit["seq"] < bot_msgs(full, "deal")[0]["seq"], "committed before dealing"
    actions = [m["seq"] for m in full if m["kind"] == "user"]
    if actions:
        assert commit["cause"] < min(actions), "committed before any player acted"
    by_seq = {m["seq"]: m for m in full}
    for m in bot_msgs(full, "card"):
        assert by_seq[m["cause"]]["sender"] == m["body"]["data"]["player"], "a card answers its player's hit"
    assert hashlib.sha256(seed.encode()).hexdigest() == commit["body"]["data"]["commitment"]
    deck = rederive_deck(seed)
    # Replay: the deal, then every card drawn, then the dealer's cards, from deck[0] on.
    deal = bot_msgs(full, "deal")[0]["body"]["data"]
    order = deal["order"]
    pos = 0
    first = {}
    for p in order:
        first[p] = deck[pos]
        pos += 1
    up = deck[pos]
    pos += 1
    for p in order:
        assert deal["players"][p]["cards"] == [first[p], deck[pos]], p
        pos += 1
    assert deal["dealer_up"] == up
    hole = deck[pos]
    pos += 1
    for m in bot_msgs(full, "card"):
        assert m["body"]["data"]["card"] == deck[pos], "each hit is the next card of the deck"
        pos += 1
    dealer = bot_msgs(full, "dealer")[0]["body"]["data"]["cards"]
    assert dealer[:2] == [up, hole]
    assert dealer[2:] == deck[pos:pos + len(dealer) - 2]
    assert reveal["body"]["data"]["deck"][:pos] == deck[:pos]
    return bool(actions)


async def test_blackjack_hand_verified_by_rederiving_the_deck(daemon):
    # A dealer's natural (or two players' naturals) ends a hand before
    # anyone acts, about one hand in twenty: such a hand is checked too,
    # and another is played at a new table until one had a player's action
    # (five hands at most).
    for _ in range(5):
        if check_blackjack_hand(await play_blackjack_hand(daemon)):
            return
    pytest.fail("five hands in a row ended before any player acted")


INLINE_TALLY = '''
MANIFEST = {"name": "Tally", "version": "1", "summary": "Counts words across messages."}


class Tally:
    def __init__(self, ctx, params):
        self.ctx = ctx
        self.params = params

    def on_message(self, msg):
        state = self.ctx.get_state()
        counts = state.get("counts", {})
        body = msg["body"] if isinstance(msg["body"], str) else ""
        for word in body.lower().split():
            counts[word] = counts.get(word, 0) + 1
        top = sorted(((n, w) for w, n in counts.items()), key=lambda t: (-t[0], t[1]))[:2]
        evens = sorted(w for w, n in counts.items() if n % 2 == 0)
        squares = [i * i for i in range(4)]
        total = 0
        i = 0
        while i < len(squares):
            total += squares[i]
            i += 1
        try:
            raise ValueError("handled")
        except ValueError as e:
            note = str(e)
        state["counts"] = counts
        state["seen"] = state.get("seen", 0) + 1
        self.ctx.set_state(state)
        self.ctx.post("tally", {"top": [w for _, w in top], "evens": evens,
                                "seen": state["seen"], "sum_squares": total, "note": note})
'''


async def test_inline_bot_with_loops_comprehensions_and_state(daemon):
    ta, tb, spec = await two_players(daemon, INLINE_TALLY, key="bot_code")
    async with connect(daemon.url, ta) as alice, connect(daemon.url, tb) as bob:
        ch = await call(alice, "create_channel", spec)
        cid = ch["channel_id"]
        await call(bob, "join_channel", {"invite_code": ch["invites"][0]["invite_code"]})
        fa = Follower(alice, cid)
        await call(alice, "post_message", {"channel_id": cid, "body": "red blue red"})
        await fa.until(lambda ms: len(bot_msgs(ms, "tally")) == 1)
        await call(bob, "post_message", {"channel_id": cid, "body": "blue green"})
        await fa.until(lambda ms: len(bot_msgs(ms, "tally")) == 2)
        t1, t2 = [m["body"]["data"] for m in bot_msgs(fa.messages, "tally")]
        assert t1 == {"top": ["red", "blue"], "evens": ["red"], "seen": 1, "sum_squares": 14, "note": "handled"}
        assert t2["seen"] == 2 and t2["evens"] == ["blue", "red"] and t2["top"] == ["blue", "red"]
        code = await call(bob, "get_bot_code", {"channel_id": cid, "bot_id": "bot:referee"})
        assert code["source"] == INLINE_TALLY
        assert code["code_hash"] == "sha256:" + hashlib.sha256(INLINE_TALLY.encode()).hexdigest()


def leaves(value):
    """Every scalar inside a JSON value."""
    if isinstance(value, dict):
        for v in value.values():
            yield from leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from leaves(v)
    else:
        yield value


async def test_sealed_bid_round(daemon):
    ta, tb, spec = await two_players(daemon, "sealed_bid", {"item": "guitar"})
    async with connect(daemon.url, ta) as alice, connect(daemon.url, tb) as bob:
        ch = await call(alice, "create_channel", spec)
        cid = ch["channel_id"]
        await call(bob, "join_channel", {"invite_code": ch["invites"][0]["invite_code"]})
        fa, fb = Follower(alice, cid), Follower(bob, cid)
        await call(alice, "post_message", {"channel_id": cid, "to": "bot:referee",
                                           "body": {"bid": 450, "nonce": secrets.token_hex(12)}})
        await fb.until(lambda ms: bot_msgs(ms, "bid_committed"))
        # Bob sees that alice bid and its commitment, never the amount: her bid
        # and the bot's receipt to her reach him without bodies, and no value
        # anywhere in his view is the amount. (Leaf values, not the text: a
        # hex hash may contain the digits "450".)
        hidden = [m for m in fb.messages if m["sender"] == "alice" or m.get("to") == ["alice"]]
        assert hidden and all("body" not in m and m.get("redacted") is True for m in hidden)
        assert not {450, "450"} & set(leaves(fb.messages))
        assert not bot_msgs(fb.messages, "reveal")
        await call(bob, "post_message", {"channel_id": cid, "to": "bot:referee",
                                         "body": {"bid": 520, "nonce": secrets.token_hex(12)}})
        await fa.until(lambda ms: bot_msgs(ms, "reveal"))
        reveal = fa.last("reveal")["body"]["data"]
        assert reveal["winner"] == "bob" and reveal["price"] == 520
        commitments = {m["body"]["data"]["bidder"]: m["body"]["data"]["commitment"]
                       for m in bot_msgs(fa.messages, "bid_committed")}
        for b in reveal["bids"]:
            h = hashlib.sha256(f"{b['bidder']}|{b['amount']}|{b['salt']}".encode()).hexdigest()
            assert h == commitments[b["bidder"]]
        verify(cid, fa.messages)
        # Each commitment was caused by its bidder's private bid (which alice,
        # for bob's, sees only as a hash) and the reveal by the last bid.
        by_seq = {m["seq"]: m for m in fa.messages}
        for m in bot_msgs(fa.messages, "bid_committed"):
            bid = by_seq[m["cause"]]
            assert bid["sender"] == m["body"]["data"]["bidder"] and bid["to"] == ["bot:referee"]
        assert fa.last("reveal")["cause"] == max(m["cause"] for m in bot_msgs(fa.messages, "bid_committed"))


HOSTILE = '''
MANIFEST = {"name": "Hostile", "version": "1", "summary": "Misbehaves on request."}


class Hostile:
    def __init__(self, ctx, params):
        self.ctx = ctx

    def on_message(self, msg):
        if msg["body"] == "spin":
            while True:
                pass
        if msg["body"] == "bomb":
            hoard = bytearray(4 * 1024 * 1024 * 1024)
            self.ctx.post("impossible", len(hoard))
        self.ctx.post("ok", msg["body"])
'''


async def test_hostile_bot_does_not_delay_another_channel(daemon):
    t = daemon.token("owner")
    async with connect(daemon.url, t) as me:
        good = await call(me, "create_channel", {"name": "good", "slots": ["me"], "bot_preset": "echo", "join_as": "me"})
        bad = await call(me, "create_channel", {"name": "bad", "slots": ["me"], "bot_code": HOSTILE, "join_as": "me"})
        g, b = good["channel_id"], bad["channel_id"]
        fg, fbad = Follower(me, g), Follower(me, b)

        async def echo_latency(i):
            n = len(bot_msgs(fg.messages))
            t0 = time.monotonic()
            await call(me, "post_message", {"channel_id": g, "body": f"ping {i}"})
            await fg.until(lambda ms: len(bot_msgs(ms)) > n)
            return time.monotonic() - t0

        baseline = [await echo_latency(i) for i in range(5)]
        await call(me, "post_message", {"channel_id": b, "body": "spin"})
        await call(me, "post_message", {"channel_id": b, "body": "bomb"})
        under_attack = [await echo_latency(10 + i) for i in range(8)]
        normal = statistics.median(baseline)
        assert max(under_attack) < normal * 3 + 0.5, (baseline, under_attack)

        await fbad.until(lambda ms: len([m for m in ms if m["kind"] == "control"]) >= 2, timeout=40)
        errors = [m["body"] for m in fbad.messages if m["kind"] == "control"]
        assert all(e["type"] == "bot:error" for e in errors)
        reasons = " ".join(e["reason"] for e in errors).lower()
        assert "time" in reasons and "memory" in reasons, errors
        # The hostile channel stays usable, and so does its bot.
        await call(me, "post_message", {"channel_id": b, "body": "hello again"})
        await fbad.until(lambda ms: bot_msgs(ms, "ok"))
        verify(b, fbad.messages)


async def test_refused_bot_is_not_attached_and_creator_gets_the_line(daemon):
    t = daemon.token("author")
    async with connect(daemon.url, t) as me:
        src = "MANIFEST = {'name': 'x'}\n\nimport os\n\nclass X:\n    def on_message(self, msg):\n        pass\n"
        e = await fails(me, "create_channel", {"name": "x", "slots": ["me"], "bot_code": src})
        assert e.code == "BAD_REQUEST" and "line 3" in e.message and "'os'" in e.message, e
        assert (await call(me, "list_channels"))["channels"] == []
        e = await fails(me, "create_channel", {"name": "x", "slots": ["me"], "bot_preset": "nope"})
        assert "GuessBot" in e.message, e.message


async def test_custom_code_cannot_pass_for_a_builtin_by_its_name(daemon):
    """A hostile author attaches a copy of GuessBot that whispers the target
    to them, under GuessBot's name: refused at creation and at attach_bot,
    whatever the spelling (`presets::impersonated`), so the name a player
    reads never belongs to custom code. The builtin's exact source pasted as
    bot_code is the builtin, and every view says which a bot is."""
    guess = (REPO / "bots" / "guess.py").read_text()
    assert '"name": "GuessBot",' in guess
    whisper = guess + "\n# leaks the target\n"
    named = lambda name: whisper.replace('"name": "GuessBot",', f'"name": {name!r},', 1)  # noqa: E731
    t = daemon.token("mallory")
    async with connect(daemon.url, t) as me:
        for src in [whisper, named("guess bot"), named("GUESS_BOT"), named("Guess\u00b7Bot")]:
            e = await fails(me, "create_channel", {"name": "g", "slots": ["me", "bot:referee"], "bot_code": src,
                                                   "join_as": "me"})
            assert e.code == "BAD_REQUEST" and "may not pass for a builtin" in e.message, e
        assert (await call(me, "list_channels"))["channels"] == []
        # attach_bot too, and any builtin's name.
        cid = (await call(me, "create_channel", {"name": "g", "slots": ["me"], "join_as": "me"}))["channel_id"]
        e = await fails(me, "attach_bot", {"channel_id": cid, "slot": "referee", "bot_code": named("Echo Bot")})
        assert "builtin EchoBot's" in e.message, e
        whisper = named("Whisper")
        # A name of its own is fine, and says custom code; the builtin's own
        # source is the builtin.
        mine = await call(me, "attach_bot", {"channel_id": cid, "slot": "referee", "bot_code": whisper})
        assert mine["origin"] == "custom" and mine["name"] == "Whisper", mine
        same = await call(me, "attach_bot", {"channel_id": cid, "slot": "again", "bot_code": guess})
        assert same["origin"] == "builtin" and same["name"] == "GuessBot", same
        view = await call(me, "sync_messages", {"channel_id": cid, "cursor": 0})
        attaches = [m["body"] for m in view["messages"] if m["kind"] == "system"
                    and m["body"]["type"] == "bot:attach"]
        assert [(a["name"], a["origin"]) for a in attaches] == [("Whisper", "custom"), ("GuessBot", "builtin")]
        text = view["_text"]
        assert 'attached: custom code "Whisper"' in text and 'attached: builtin "GuessBot"' in text, text


def test_every_preset_is_a_file(daemon):
    assert sorted(p.stem for p in (REPO / "bots").glob("*.py")) == sorted(
        ["blackjack", "context_exchange", "echo", "fetch", "guess", "judge", "sealed_bid", "tlscert"])
    assert Path(REPO / "bots" / "harness" / "harness.py").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to an unprivileged uid needs root")
async def test_unprivileged_daemon_runs_bots_in_user_namespace_mode(state_dir):
    """As under the systemd unit: the daemon is not root, so every hook is
    confined in an unprivileged user namespace instead of by a uid switch."""
    import shutil
    import tempfile

    from conftest import BIN, Daemon
    # A checkout may not be traversable by an unprivileged uid: give the
    # daemon world-readable copies of its binaries, bots and harness.
    root = Path(tempfile.mkdtemp(prefix="mcpmp-userns-"))
    try:
        (root / "bin").mkdir()
        for b in (BIN, BIN.with_name("sandbox-runner")):
            shutil.copy2(b, root / "bin" / b.name)
        shutil.copytree(REPO / "bots", root / "bots", ignore=shutil.ignore_patterns("tests", "__pycache__"))
        (root / "config.toml").write_text(f'[bots]\nbots_dir = "{root / "bots"}"\n')
        subprocess.run(["chmod", "-R", "a+rX", str(root)], check=True)
        await _userns_round_trip(Daemon(state_dir, ["--config", str(root / "config.toml")], uid=65534,
                                        bin=root / "bin" / BIN.name))
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def _userns_round_trip(d):
    d.start()
    try:
        t = d.token("u")
        async with connect(d.url, t) as me:
            ch = await call(me, "create_channel", {"name": "userns", "slots": ["me"], "bot_preset": "echo", "join_as": "me"})
            f = Follower(me, ch["channel_id"])
            await call(me, "post_message", {"channel_id": ch["channel_id"], "body": "ping"})
            await f.until(lambda ms: bot_msgs(ms, "echo"))
            assert f.last("echo")["body"]["data"]["body"] == "ping"
        health = httpx2.get(d.base + "/healthz").json()
        assert health["sandbox"] == "ok" and health["sandbox_mode"] == "user namespace"
        assert d.proc.pid and open(f"/proc/{d.proc.pid}/status").read().count("\t65534\t") >= 1
    finally:
        d.stop()
