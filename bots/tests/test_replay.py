"""Replaying a game: with the daemon's determinism inputs (each hook's
entropy derived from one secret bot seed and the triggering message, its
clock the message's time), the builtin bots are functions of their inputs.
The same seed and the same moves give the same transcript, byte for byte,
through the harness and inside the real sandbox; another seed gives other
secrets. This is what a replay of an exported game checks hook by hook.
"""

import json

import pytest

from conftest import SANDBOX_RUNNER, Table, of_type
from test_blackjack import play_hand, verify_transcript

SEED = "0b" * 32
OTHER = "c4" * 32


def guess_game(seed, sandboxed=False):
    t = Table("guess", ["alice", "bob"], params={"min": 1, "max": 64, "max_rounds": 12},
              sandboxed=sandboxed, bot_seed=seed)
    t.init()
    t.join("alice")
    t.join("bob")
    low, high = 1, 64
    while t.state["phase"] == "playing":
        guess = (low + high) // 2
        hint = of_type(t.say(t.state["turn"], f"guess {guess}"), "hint")[0]["body"]["hint"]
        low, high = (guess + 1, high) if hint == "higher" else (low, guess - 1) if hint == "lower" else (guess, guess)
    return t


def blackjack_hand(seed, sandboxed=False):
    t = Table("blackjack", ["alice", "bob"], sandboxed=sandboxed, bot_seed=seed)
    t.init()
    t.join("alice")
    t.join("bob")
    play_hand(t)
    verify_transcript(t.transcript, 1)
    return t


def record(t):
    """The transcript as bytes, without the harness-side wall times."""
    return json.dumps([{k: v for k, v in m.items() if k != "ts"} for m in t.transcript], sort_keys=True)


@pytest.mark.parametrize("play", [guess_game, blackjack_hand])
def test_the_same_seed_and_moves_replay_to_the_same_transcript(play):
    first, again = play(SEED), play(SEED)
    assert record(first) == record(again)
    assert first.state == again.state
    other = play(OTHER)
    # Both bots open with a commitment to a secret drawn from `secrets`.
    assert first.bot_posts("commit") != other.bot_posts("commit")


@pytest.mark.skipif(not SANDBOX_RUNNER, reason="SANDBOX_RUNNER is not set (no built sandbox-runner)")
@pytest.mark.parametrize("play", [guess_game, blackjack_hand])
def test_a_game_played_in_the_sandbox_replays_identically_in_the_sandbox_and_through_the_harness(play):
    played = play(SEED, sandboxed=True)
    assert record(played) == record(play(SEED, sandboxed=True))
    # The sandbox changes nothing the bot can observe that shapes its posts.
    assert record(played) == record(play(SEED))
