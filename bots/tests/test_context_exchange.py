"""ContextExchangeBot: answers are never delivered before all opted in and answered."""

import hashlib
import json

from conftest import Table, of_type

BOT = ["bot:context_exchange"]
Q = "based on what you know about me, what is my biggest blind spot?"


def table():
    t = Table("context_exchange", ["alice", "bob"])
    t.init()
    t.join("alice")
    t.join("bob")
    return t


def deliveries(t):
    return [(d, to) for k, d, to in t.bot_posts("delivery")]


def test_delivery_only_after_both_opted_in_and_answered():
    t = table()
    rnd = of_type(t.say("alice", f"ask: {Q}"), "round")[0]["body"]
    assert rnd["round"] == 1 and rnd["opted_in"] == ["alice"] and rnd["participants"] == ["alice", "bob"]
    # both answer before bob opts in: nothing is delivered
    p = t.say("alice", "answer: you overcommit", to=BOT)
    receipt = of_type(p, "answer_receipt")[0]
    assert receipt["to"] == ["alice"]
    assert of_type(p, "answer_committed")[0]["body"]["waiting_for_opt_in"] == ["bob"]
    t.say("bob", {"answer": "you underestimate sleep", "round": 1}, to=BOT)
    assert deliveries(t) == []
    secret_texts = ("you overcommit", "you underestimate sleep")
    public = json.dumps([m for m in t.transcript if m["kind"] == "bot"])
    assert not any(s in public for s in secret_texts)
    p = t.say("bob", "opt in 1")
    delivery = of_type(p, "delivery")[0]
    assert sorted(delivery["to"]) == ["alice", "bob"]
    answers = delivery["body"]["answers"]
    assert answers["alice"]["answer"] == "you overcommit"
    commitments = {d["player"]: d["commitment"] for k, d, to in t.bot_posts("answer_committed")}
    for player, a in answers.items():
        pre = f"1|{player}|{a['salt']}|{a['answer']}"
        assert hashlib.sha256(pre.encode()).hexdigest() == commitments[player]
    # delivered rounds accept nothing more
    assert of_type(t.say("alice", "answer 1: changed my mind", to=BOT), "refused")


def test_opted_in_but_one_answer_missing_delivers_nothing():
    t = table()
    t.say("bob", {"ask": Q})
    t.say("alice", "opt in")
    t.say("bob", "answer: first", to=BOT)
    assert deliveries(t) == []
    # public answers are refused and do not count
    p = t.say("alice", "answer: in public")
    assert of_type(p, "refused") and deliveries(t) == []
    t.say("alice", "answer: privately", to=BOT)
    assert len(deliveries(t)) == 1


def test_decline_discards_answers_forever():
    t = table()
    t.say("alice", f"ask: {Q}")
    t.say("alice", "answer 1: held", to=BOT)
    p = t.say("bob", "decline 1")
    declined = of_type(p, "declined")[0]["body"]
    assert declined["discarded_unread"] == ["alice"]
    assert "held" not in json.dumps(t.state)
    assert of_type(t.say("bob", "opt in 1"), "refused")
    assert of_type(t.say("bob", "answer 1: late", to=BOT), "refused")
    assert deliveries(t) == []


def test_no_answer_changes_and_outsiders_refused():
    t = Table("context_exchange", ["alice", "bob", "carol"])
    t.init()
    for s in ("alice", "bob"):
        t.join(s)
    t.say("alice", f"ask: {Q}")
    t.say("alice", "answer: one", to=BOT)
    assert of_type(t.say("alice", "answer: two", to=BOT), "refused")
    t.say("bob", "opt in")
    t.say("bob", "answer: three", to=BOT)
    assert deliveries(t) == []  # carol (a seat at the time of asking) has not taken part yet
    t.join("carol")
    t.say("carol", "opt in 1")
    t.say("carol", "answer 1: four", to=BOT)
    (delivery, to), = deliveries(t)
    assert sorted(delivery["answers"]) == ["alice", "bob", "carol"]
    assert delivery["answers"]["alice"]["answer"] == "one"


def test_chat_is_not_a_command():
    t = table()
    assert t.say("alice", "ask bob, he knows") == []
    assert t.say("bob", "answer me this first") == []
    assert t.state["rounds"] == []


def test_finished_rounds_are_pruned_from_the_state():
    t = table()
    for n in range(1, 24):
        t.say("alice", f"ask: question {n}")
        t.say("bob", f"decline {n}")
    t.say("alice", "ask: the last one")
    ids = [r["id"] for r in t.state["rounds"]]
    assert len(ids) == 21 and ids[-1] == 24 and ids[0] == 4
    assert of_type(t.say("bob", "opt in 24"), "opted_in")


def test_a_seat_taken_over_after_a_kick_never_receives_the_held_answers():
    """The attack: bob opted in and answered; the admin kicks bob and has the
    seat refilled (by herself or an accomplice), then answers as alice so the
    round delivers bob's and everyone's answers to the seat's new holder.
    Stopped by on_join: the seat joined again after it had acted, so the
    round is cancelled and its answers discarded unread."""
    t = Table("context_exchange", ["alice", "bob", "carol"])
    t.init()
    for seat in ("alice", "bob", "carol"):
        t.join(seat)
    t.say("alice", f"ask: {Q}")
    t.say("bob", "opt in 1")
    t.say("carol", "opt in 1")
    t.say("bob", "answer: bob's honest answer", to=BOT)
    t.say("carol", "answer: carol's honest answer", to=BOT)
    cancelled = of_type(t.join("bob"), "cancelled")  # the kicked seat, refilled
    assert cancelled and cancelled[0]["body"]["round"] == 1
    assert cancelled[0]["body"]["discarded_unread"] == ["bob", "carol"]
    refused = of_type(t.say("alice", "answer 1: now deliver", to=BOT), "refused")
    assert refused and "cancelled" in refused[0]["body"]["reason"]
    assert deliveries(t) == []
    assert "honest answer" not in json.dumps(t.state)
    assert "honest answer" not in json.dumps([m for m in t.transcript if m["kind"] == "bot"])


def test_a_seat_that_has_not_acted_may_join_during_a_round():
    t = Table("context_exchange", ["alice", "bob"])
    t.init()
    t.join("alice")
    t.say("alice", f"ask: {Q}")
    assert of_type(t.join("bob"), "cancelled") == []
    t.say("bob", "opt in")
    t.say("alice", "answer: a", to=BOT)
    t.say("bob", "answer: b", to=BOT)
    assert len(deliveries(t)) == 1
