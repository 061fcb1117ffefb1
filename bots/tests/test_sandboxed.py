"""Whole games of the builtin bots inside the real sandbox.

Each hook runs in `sandbox-runner` (namespaces, Landlock, seccomp, rlimits)
exactly as the daemon runs it, so these tests catch a bot that needs
something the confinement refuses (a syscall, a file, a module). They need a
built runner: `SANDBOX_RUNNER=/path/to/sandbox-runner` (tests/steps/45-bots.sh
sets it to the binary step 30 built); without it they are skipped, and say so.
"""

import hashlib

import pytest

from conftest import SANDBOX_RUNNER, Table, of_type
from test_blackjack import play_hand, verify_transcript

pytestmark = pytest.mark.skipif(not SANDBOX_RUNNER, reason="SANDBOX_RUNNER is not set (no built sandbox-runner)")


def test_guess_game_in_the_sandbox_verifies_from_the_transcript():
    t = Table("guess", ["alice", "bob"], params={"min": 1, "max": 16, "max_rounds": 10}, sandboxed=True)
    commitment = t.init()[0]["body"]["commitment"]
    t.join("alice")
    t.join("bob")
    low, high = 1, 16
    while t.state["phase"] == "playing":
        guess = (low + high) // 2
        hint = of_type(t.say(t.state["turn"], f"guess {guess}"), "hint")[0]["body"]["hint"]
        low, high = (guess + 1, high) if hint == "higher" else (low, guess - 1) if hint == "lower" else (guess, guess)
    reveal = t.bot_posts("reveal")[0][1]
    assert hashlib.sha256(f"{reveal['target']}|{reveal['nonce']}".encode()).hexdigest() == commitment
    assert reveal["winner"] in ("alice", "bob")


def test_blackjack_hand_in_the_sandbox_verifies_from_the_transcript():
    t = Table("blackjack", ["alice", "bob"], sandboxed=True)
    t.init()
    t.join("alice")
    t.join("bob")
    play_hand(t)
    verify_transcript(t.transcript, 1)


def test_sealed_bid_and_context_exchange_in_the_sandbox():
    t = Table("sealed_bid", ["alice", "bob"], sandboxed=True)
    t.init()
    t.say("alice", {"bid": 30, "nonce": "Zr8e1Qw4Ty6Ui9Op"}, to=["bot:sealed_bid"])
    reveal = of_type(t.say("bob", {"bid": 40, "nonce": "Lk2Jh5Gf8Ds1Aq3W"}, to=["bot:sealed_bid"]), "reveal")
    assert reveal[0]["body"]["winner"] == "bob"

    t = Table("context_exchange", ["alice", "bob"], sandboxed=True)
    t.init()
    t.say("alice", "ask: based on what you know about me, what is my best habit?")
    t.say("alice", "answer: walking", to=["bot:context_exchange"])
    t.say("bob", "answer: reading", to=["bot:context_exchange"])
    assert t.bot_posts("delivery") == []
    delivery = of_type(t.say("bob", "opt in"), "delivery")[0]
    assert delivery["body"]["answers"]["bob"]["answer"] == "reading"


def test_echo_and_judge_in_the_sandbox():
    t = Table("echo", ["alice"], sandboxed=True)
    t.init()
    assert t.say("alice", "hi")[0]["body"]["body"] == "hi"
    t = Table("judge", ["alice", "bob"], sandboxed=True)
    t.init()
    digest = of_type(t.say("alice", 'propose: RULE R1: bob must not post "no"'), "proposal")[0]["body"]["sha256"]
    t.say("alice", f"agree {digest}")
    assert of_type(t.say("bob", f"agree {digest}"), "agreement")
