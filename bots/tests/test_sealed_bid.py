"""SealedBidBot: nothing is revealed until every seat has bid."""

import hashlib
import json

from conftest import Table, of_type

NONCE = "q7Vb2mXc9RtL4kPz"  # 16 characters, as a bidder's random nonce


def auction(params=None, seats=("alice", "bob", "carol")):
    t = Table("sealed_bid", list(seats), params=params or {"item": "a painting"})
    t.init()
    for s in seats:
        t.join(s)
    return t


def public_text(t):
    """Everything a non-bidder could read: public messages only."""
    return json.dumps([m["body"] for m in t.transcript if not m.get("to")])


def numbers_in(value):
    """Every number anywhere in a JSON value."""
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return [n for v in value for n in numbers_in(v)]
    return []


def test_bids_stay_sealed_until_all_have_bid_then_reveal_checks():
    t = auction()
    p = t.say("alice", f"bid 1234567 {NONCE}", to=["bot:sealed_bid"])
    receipt = of_type(p, "bid_receipt")[0]
    assert receipt["to"] == ["alice"] and receipt["body"]["amount"] == 1234567
    committed = of_type(p, "bid_committed")[0]
    assert "to" not in committed and committed["body"]["waiting_for"] == ["bob", "carol"]
    assert of_type(p, "reveal") == []
    p = t.say("carol", {"bid": 7654321, "nonce": NONCE}, to=["bot:sealed_bid"])
    assert of_type(p, "reveal") == []
    # neither amount appears anywhere public before the last bid
    assert "1234567" not in public_text(t) and "7654321" not in public_text(t)
    p = t.say("bob", f"bid 7654321 {NONCE}x", to=["bot:sealed_bid"])
    reveal = of_type(p, "reveal")[0]["body"]
    assert "to" not in of_type(p, "reveal")[0]
    assert reveal["winner"] == "carol"  # tie with bob: carol bid first
    assert reveal["price"] == 7654321
    commitments = {d["bidder"]: d["commitment"] for k, d, to in t.bot_posts("bid_committed")}
    for bid in reveal["bids"]:
        pre = f"{bid['bidder']}|{bid['amount']}|{bid['salt']}"
        assert hashlib.sha256(pre.encode()).hexdigest() == commitments[bid["bidder"]]
    # closed now
    assert of_type(t.say("alice", f"bid 9 {NONCE}", to=["bot:sealed_bid"]), "refused")


def test_public_bid_refused_and_not_recorded():
    t = auction(seats=("alice", "bob"))
    p = t.say("alice", f"bid 50 {NONCE}")
    assert of_type(p, "refused") and of_type(p, "bid_committed") == []
    assert t.state["bids"] == {}
    # a message addressed to the bot and another player is not private either
    p = t.say("alice", f"bid 50 {NONCE}", to=["bot:sealed_bid", "bob"])
    assert of_type(p, "refused") and t.state["bids"] == {}


def test_no_rebid_invalid_and_min_bid_second_price():
    t = auction({"min_bid": 10, "rule": "second_price"}, seats=("alice", "bob"))
    assert of_type(t.say("alice", f"bid 5 {NONCE}", to=["bot:sealed_bid"]), "refused")
    assert of_type(t.say("alice", f"bid lots {NONCE}", to=["bot:sealed_bid"]), "refused")
    t.say("alice", f"bid 100 {NONCE}", to=["bot:sealed_bid"])
    assert of_type(t.say("alice", f"bid 200 {NONCE}", to=["bot:sealed_bid"]), "refused")
    status = of_type(t.say("bob", "status"), "status")[0]["body"]
    assert status["waiting_for"] == ["bob"] and 100 not in numbers_in(status)
    reveal = of_type(t.say("bob", {"bid": 60, "nonce": NONCE}, to=["bot:sealed_bid"]), "reveal")[0]["body"]
    assert reveal["winner"] == "alice" and reveal["price"] == 60


def test_bid_without_nonce_is_refused_because_its_body_hash_is_guessable():
    t = auction(seats=("alice", "bob"))
    p = t.say("alice", "bid 450", to=["bot:sealed_bid"])
    assert "body_hash" in of_type(p, "refused")[0]["body"]["reason"]
    assert t.state["bids"] == {}
    # a short "nonce" does not count either
    p = t.say("alice", {"bid": 450, "nonce": "abc"}, to=["bot:sealed_bid"])
    assert of_type(p, "refused") and t.state["bids"] == {}
    # the operator of a daemon that salts private bodies can turn the check off
    t = auction({"require_nonce": False}, seats=("alice", "bob"))
    assert of_type(t.say("alice", "bid 450", to=["bot:sealed_bid"]), "bid_committed")
