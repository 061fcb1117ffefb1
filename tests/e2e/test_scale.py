"""Several daemons on one PostgreSQL database (docs/scale-out.md): players on
different daemons play one game, a long-poll on one daemon wakes for a post
made on the other, each hook runs once and in order on whichever daemon owns
the channel, and the game goes on through one daemon after the other is
killed with SIGKILL. Runs only with MCPMP_TEST_POSTGRES
(tests/steps/50-postgres.sh)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import anyio
import pytest
from conftest import Daemon, call, connect, db_env
from test_bots import Follower, bot_msgs, two_players
from transcript import verify

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not os.environ.get("MCPMP_TEST_POSTGRES"),
                       reason="needs PostgreSQL: tests/steps/50-postgres.sh"),
]


@pytest.fixture
def pair():
    """Two daemons, each with its own state directory (its sandboxes), on one
    database (the first directory's schema)."""
    a = Path(tempfile.mkdtemp(prefix="mcpmp-scale-a-"))
    b = Path(tempfile.mkdtemp(prefix="mcpmp-scale-b-"))
    shared = db_env(a)
    # The tests measure wake-ups and ownership, not quotas: lift the post rate.
    cfg = a / "config.toml"
    cfg.write_text("[quotas]\nposts_per_second = 100000.0\npost_burst = 100000\n")
    d1 = Daemon(a, extra=["--config", str(cfg)]).start()
    d2 = Daemon(b, extra=["--config", str(cfg)], env=shared).start()
    yield d1, d2
    d1.stop("KILL")
    d2.stop("KILL")
    shutil.rmtree(a, ignore_errors=True)
    shutil.rmtree(b, ignore_errors=True)


def hook_runs(full):
    """The bot's entries as runs of one cause each, in transcript order."""
    runs: list[list[dict]] = []
    for m in full:
        if m["kind"] in ("bot", "control") and m.get("cause") is not None:
            if runs and runs[-1][0]["cause"] == m["cause"]:
                runs[-1].append(m)
            else:
                runs.append([m])
    return runs


async def test_one_guessbot_game_across_two_daemons_survives_a_kill_9_of_one(pair):
    d1, d2 = pair
    ta, tb, spec = await two_players(d1, "guess", {"min": 1, "max": 1000, "max_rounds": 20})
    async with connect(d1.url, ta) as alice1, connect(d2.url, tb) as bob, \
            connect(d2.url, ta) as alice2:
        killed = False
        # A game whose first three guesses find the number (3 in 1,000) ends
        # before the kill; then another is played, five at most.
        for _ in range(5):
            ch = await call(alice1, "create_channel", spec)
            cid = ch["channel_id"]
            # Bob joins through the other daemon.
            await call(bob, "join_channel", {"invite_code": ch["invites"][0]["invite_code"]})
            fb = Follower(bob, cid)
            alice = alice1
            lo, hi, guesses = 1, 1000, 0
            while True:
                # Bob's long-poll on d2 follows every bot reply, wherever the
                # hook ran.
                await fb.until(lambda ms: bot_msgs(ms, "reveal") or
                               (bot_msgs(ms, "turn") and bot_msgs(ms)[-1]["body"]["type"] == "turn"))
                if bot_msgs(fb.messages, "reveal"):
                    break
                if guesses == 3:
                    # Mid-game: the daemon alice used (and that created the
                    # channel) dies; alice goes on through the other one.
                    assert d1.stop("KILL") != 0
                    alice, killed = alice2, True
                turn = fb.last("turn")["body"]["data"]["player"]
                guess = (lo + hi) // 2
                c = alice if turn == "alice" else bob
                n_hints = len(bot_msgs(fb.messages, "hint"))
                await call(c, "post_message", {"channel_id": cid, "body": {"guess": guess}})
                guesses += 1
                await fb.until(lambda ms: len(bot_msgs(ms, "hint")) > n_hints)
                hint = fb.last("hint")["body"]["data"]
                assert hint["player"] == turn and hint["guess"] == guess
                if hint["hint"] == "higher":
                    lo = guess + 1
                elif hint["hint"] == "lower":
                    hi = guess - 1
            if killed:
                break
        assert killed, "five games in a row ended before the kill"
        full = (await call(alice2, "sync_messages", {"channel_id": cid, "cursor": 0, "wait_ms": 0}))["messages"]
    verify(cid, full)
    # Every hook ran exactly once, in order: one run of entries per user
    # message (its cause), causes strictly increasing, none repeated.
    runs = hook_runs(full)
    causes = [r[0]["cause"] for r in runs]
    assert causes == sorted(set(causes)), f"a hook committed twice or out of order: {causes}"
    user_seqs = [m["seq"] for m in full if m["kind"] == "user"]
    assert set(user_seqs) <= set(causes), "every guess got its hook"
    hints = bot_msgs(full, "hint")
    assert len(hints) == guesses, "one hint per guess, no more"
    assert bot_msgs(full, "reveal")[0]["body"]["data"]["winner"] in ("alice", "bob")


async def test_a_long_poll_on_one_daemon_is_woken_by_a_post_on_the_other(pair):
    """Bob's long-poll on d2 asks to wait 25 s, the longest a call may; a post
    alice makes through d1 must end it with that post. What ends it is d1's
    commit notification, which d2 hears through PostgreSQL and feeds to its
    own waiters: without it the call would return only when its 25 s ran
    out, so each round has a 10 s deadline (not a speed measure: how fast the
    wake-up is, the load bench's `stores` mode measures, BENCHMARKS.md)."""
    d1, d2 = pair
    ta, tb = d1.token("alice"), d1.token("bob")
    async with connect(d1.url, ta) as alice, connect(d2.url, tb) as bob:
        ch = await call(alice, "create_channel", {"name": "wake", "slots": ["invite:alice", "invite:bob"],
                                                   "join_as": "alice"})
        cid = ch["channel_id"]
        await call(bob, "join_channel", {"invite_code": ch["invites"][0]["invite_code"]})
        cursor = (await call(bob, "sync_messages", {"channel_id": cid, "cursor": 0, "wait_ms": 0}))["cursor"]
        for i in range(20):
            woke = {}

            async def wait(c=cursor):
                woke["s"] = await call(bob, "sync_messages", {"channel_id": cid, "cursor": c, "wait_ms": 25000})

            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(wait)
                    # Let bob's request go out first (it parks on d2 or finds
                    # the message at once: both count).
                    await anyio.wait_all_tasks_blocked()
                    r = await call(alice, "post_message", {"channel_id": cid, "body": {"n": i}})
            msgs = woke["s"]["messages"]
            assert [(m["seq"], m["body"]) for m in msgs] == [(r["seq"], {"n": i})], msgs
            cursor = woke["s"]["cursor"]
