"""JudgeBot: agreement by hash, mechanical rulings, honest "needs human judgment"."""

import hashlib

from conftest import Table, of_type

AGREEMENT = """Alice sells Bob the domain example.org for 500 EUR.
RULE R1: alice must post "transfer code sent" within 4 messages
RULE R2: bob must not post "chargeback"
RULE R3: bob must post "paid" before seq 100
RULE R4: the domain must be in good standing
"""


def sealed_table():
    t = Table("judge", ["alice", "bob"])
    t.init()
    t.join("alice")
    t.join("bob")
    posts = t.say("alice", f"propose: {AGREEMENT}")
    proposal = of_type(posts, "proposal")[0]["body"]
    return t, proposal


def test_proposal_hash_rules_and_sealing_need_every_party():
    t, proposal = sealed_table()
    digest = hashlib.sha256(AGREEMENT.strip().encode()).hexdigest()
    assert proposal["sha256"] == digest
    kinds = {r["id"]: r["kind"] for r in proposal["rules"]}
    assert kinds == {"R1": "must_post_within", "R2": "must_not_post", "R3": "must_post_before", "R4": "manual"}
    # a wrong hash is refused
    posts = t.say("bob", "agree " + "0" * 64)
    assert of_type(posts, "refused") and t.state["agreed_by"] == {}
    posts = t.say("alice", f"agree {digest}")
    assert of_type(posts, "agreed")[0]["body"]["waiting_for"] == ["bob"]
    assert of_type(posts, "agreement") == []
    # a claim before sealing rules nothing
    ruling = of_type(t.say("alice", "claim R1: whatever"), "ruling")[0]["body"]
    assert ruling["ruling"] == "no_agreement"
    posts = t.say("bob", {"agree": digest.upper()})
    agreement = of_type(posts, "agreement")[0]["body"]
    assert agreement["sha256"] == digest and agreement["parties"] == ["alice", "bob"]
    # after sealing, a new proposal is refused
    assert of_type(t.say("bob", "propose: something else"), "refused")


def test_new_proposal_resets_opt_ins():
    t, proposal = sealed_table()
    t.say("alice", f"agree {proposal['sha256']}")
    second = of_type(t.say("bob", "propose: new terms"), "proposal")[0]["body"]
    assert t.state["agreed_by"] == {}
    assert of_type(t.say("alice", f"agree {proposal['sha256']}"), "refused")
    t.say("alice", f"agree {second['sha256']}")
    assert of_type(t.say("bob", f"agree {second['sha256']}"), "agreement")


def seal(t, proposal):
    t.say("alice", f"agree {proposal['sha256']}")
    t.say("bob", f"agree {proposal['sha256']}")
    return t.state["agreement"]["sealed_seq"]


def ruling_of(posts):
    return of_type(posts, "ruling")[0]["body"]


def last_seq_of(t, sender):
    return [m["seq"] for m in t.transcript if m["sender"] == sender][-1]


def test_deadline_rule_pending_then_breached():
    t, proposal = sealed_table()
    seal(t, proposal)
    # R1: alice must post the phrase within 4 player messages of the sealing
    r = ruling_of(t.say("bob", "claim R1: alice has not sent the code"))  # message 1
    assert r["ruling"] == "pending"
    t.say("alice", "working on it")  # 2: not the phrase
    t.say("bob", "hello?")  # 3
    r = ruling_of(t.say("bob", "claim R1: alice missed the deadline"))  # 4: the window is used up
    assert r["ruling"] == "breached" and "evidence_seq" not in r
    # a late post is still a breach, with the evidence
    t.say("alice", "Transfer code sent: ABC")
    late = last_seq_of(t, "alice")
    r = ruling_of(t.say("bob", {"claim": "late", "rule": "R1"}))
    assert r["ruling"] == "breached" and r["evidence_seq"] == late


def test_deadline_rule_fulfilled_and_claim_text_does_not_count():
    t, proposal = sealed_table()
    seal(t, proposal)
    # bob's claim quotes the phrase; commands never count as posting it
    r = ruling_of(t.say("bob", 'claim R1: alice never said "transfer code sent"'))
    assert r["ruling"] == "pending"
    t.say("alice", {"text": "the TRANSFER CODE SENT by mail"})
    sent = last_seq_of(t, "alice")
    for i in range(4):
        t.say("bob", "more chatter")
    r = ruling_of(t.say("bob", "claim r1"))
    assert r["ruling"] == "fulfilled" and r["evidence_seq"] == sent


def test_before_seq_rule():
    t, proposal = sealed_table()
    seal(t, proposal)
    # R3: bob must post "paid" before seq 100
    assert ruling_of(t.say("alice", "claim R3"))["ruling"] == "pending"
    while t.seq < 100:
        t.say("alice", "tick")
    r = ruling_of(t.say("alice", "claim R3: no payment"))
    assert r["ruling"] == "breached"
    t.say("bob", "paid now")
    r = ruling_of(t.say("alice", "claim R3"))
    assert r["ruling"] == "breached" and r["evidence_seq"] == last_seq_of(t, "bob")


def test_must_not_rule_and_manual_rule():
    t, proposal = sealed_table()
    seal(t, proposal)
    assert ruling_of(t.say("alice", "claim R2: bob threatened"))["ruling"] == "not_breached"
    t.say("alice", "I will never do a chargeback")  # alice is not bound by R2
    assert ruling_of(t.say("alice", "claim R2"))["ruling"] == "not_breached"
    t.say("bob", "then I'll file a chargeback")
    bad = last_seq_of(t, "bob")
    r = ruling_of(t.say("alice", "claim R2: there it is"))
    assert r["ruling"] == "breached" and r["evidence_seq"] == bad
    r = ruling_of(t.say("bob", "claim R4: the domain was blacklisted"))
    assert r["ruling"] == "needs_human_judgment"
    assert r["text_sha256"] == hashlib.sha256(b"the domain was blacklisted").hexdigest()
    r = ruling_of(t.say("bob", "claim: alice was rude"))
    assert r["ruling"] == "needs_human_judgment" and r["agreement_sha256"] == proposal["sha256"]


def test_chatter_is_not_a_command():
    t, proposal = sealed_table()
    assert t.say("alice", "I claimed nothing, proposed nothing") == []
    assert t.say("bob", "propose we talk tomorrow") == []
    assert t.state["proposal"]["sha256"] == proposal["sha256"]


def test_claims_are_numbered_on_while_the_state_keeps_the_recent_ones():
    t, proposal = sealed_table()
    seal(t, proposal)
    for i in range(55):
        r = ruling_of(t.say("bob", f"claim: grievance {i}"))
    assert r["id"] == 55
    assert len(t.state["claims"]) == 50 and t.state["claims"][0]["id"] == 6
