"""JudgeBot: records a written agreement and rules mechanically where it can.

1. Someone proposes the agreement text publicly: "propose: <text>" or
   {"propose": "<text>"}. The bot posts the text's SHA-256 (of its UTF-8
   bytes) and the rules it understood in it.
2. Every player seat opts in with "agree <sha256>" (the full 64-hex hash of
   the proposal, which shows that they agree to exactly that text). When all
   have agreed, the bot posts the sealed agreement: hash, parties, the seq at
   which it took effect. A newer proposal before sealing resets the opt-ins;
   after sealing the agreement is fixed.
3. Claims: "claim R1: bob never delivered" or {"claim": "...", "rule": "R1"}.
   The bot rules on a claim that names a machine-checkable rule, from the
   messages it saw after sealing; any other claim is recorded with its hash
   and marked as needing human judgment.

Machine-checkable rules are lines of the agreement text of these forms
(keywords case-insensitive, the phrase in double quotes):

  RULE <id>: <party> must post "<phrase>" before seq <N>
  RULE <id>: <party> must post "<phrase>" within <N> messages
  RULE <id>: <party> must not post "<phrase>"

A party "posts a phrase" when a message it sends after sealing contains the
phrase (case-insensitive; for an object body, any of its string values).
"before seq N" means a message with channel seq < N. "within N messages"
means one of the first N player messages the bot receives after the sealing
message (the bot's own posts do not count; every player message the bot
sees does, commands included). Other lines starting with RULE are kept
as manual rules. Commands to the bot (propose, agree, claim, status) never
count as posting a phrase.

Limits, said plainly: the bot sees public messages and messages sent privately
to it, nothing else; it judges words in messages, not deeds in the world.
"""

import hashlib
import json
import re

MANIFEST = {
    "name": "JudgeBot",
    "version": "1.0.0",
    "summary": "Records an agreement both sides opt into by hash and rules mechanically on claims under its machine-checkable RULE lines.",
    "params": {"max_text_chars": "longest agreement text accepted (default 16000)"},
}

CLAIMS_KEPT = 50
RULE_LINE_RE = re.compile(r"^\s*RULE\s+([A-Za-z0-9_-]{1,32})\s*:\s*(.+?)\s*$", re.IGNORECASE)
MUST_BEFORE_RE = re.compile(r"^(\S+)\s+must\s+post\s+\"([^\"]+)\"\s+before\s+seq\s+(\d{1,12})\.?$", re.IGNORECASE)
MUST_WITHIN_RE = re.compile(r"^(\S+)\s+must\s+post\s+\"([^\"]+)\"\s+within\s+(\d{1,9})\s+messages?\.?$", re.IGNORECASE)
MUST_NOT_RE = re.compile(r"^(\S+)\s+must\s+not\s+post\s+\"([^\"]+)\"\.?$", re.IGNORECASE)
# "propose:" needs its colon, so that "propose we meet at 5" stays chat.
PROPOSE_RE = re.compile(r"^\s*propose\s*:\s*(.+)$", re.IGNORECASE | re.DOTALL)
AGREE_RE = re.compile(r"^\s*agree\s*:?\s*([0-9a-fA-F]{64})\s*$", re.IGNORECASE)
CLAIM_RE = re.compile(r"^\s*claim\b(?:\s+([A-Za-z0-9_-]{1,32}))?\s*:?\s*(.*)$", re.IGNORECASE | re.DOTALL)


def sha256_text(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def parse_rules(text):
    """Rules found in an agreement text, in order."""
    rules = []
    for line in text.splitlines():
        match = RULE_LINE_RE.match(line)
        if not match:
            continue
        rule_id, clause = match.group(1), match.group(2)
        rule = {"id": rule_id, "text": clause}
        before = MUST_BEFORE_RE.match(clause)
        within = MUST_WITHIN_RE.match(clause)
        never = MUST_NOT_RE.match(clause)
        if before:
            rule.update({"kind": "must_post_before", "party": before.group(1), "phrase": before.group(2),
                         "seq": int(before.group(3))})
        elif within:
            rule.update({"kind": "must_post_within", "party": within.group(1), "phrase": within.group(2),
                         "messages": int(within.group(3))})
        elif never:
            rule.update({"kind": "must_not_post", "party": never.group(1), "phrase": never.group(2)})
        else:
            rule["kind"] = "manual"
        rules.append(rule)
    return rules


def message_text(body):
    """What a message says, for phrase matching."""
    if isinstance(body, str):
        return body
    if isinstance(body, dict):
        return "\n".join(v for v in body.values() if isinstance(v, str))
    return json.dumps(body)


def parse_command(body):
    """(command, argument, extra) or (None, None, None)."""
    if isinstance(body, dict):
        if isinstance(body.get("propose"), str):
            return "propose", body.get("propose"), None
        if isinstance(body.get("agree"), str):
            return "agree", body.get("agree").strip().lower(), None
        if isinstance(body.get("claim"), str):
            rule = body.get("rule") if isinstance(body.get("rule"), str) else None
            return "claim", rule, body.get("claim")
        if body.get("status"):
            return "status", None, None
        body = body.get("text") if isinstance(body.get("text"), str) else ""
    if not isinstance(body, str):
        return None, None, None
    match = PROPOSE_RE.match(body)
    if match:
        return "propose", match.group(1).strip(), None
    if re.match(r"^\s*agree\b", body, re.IGNORECASE):
        match = AGREE_RE.match(body)
        return "agree", match.group(1).lower() if match else "", None
    match = CLAIM_RE.match(body)
    if match:
        return "claim", match.group(1), match.group(2).strip()
    if body.strip().lower() == "status":
        return "status", None, None
    return None, None, None


class JudgeBot:
    def __init__(self, ctx, params):
        # A fresh instance per hook: nothing kept here outlives the hook.
        self.ctx = ctx
        self.params = params if isinstance(params, dict) else {}

    def parties(self):
        return [p["label"] for p in self.ctx.players]

    def max_chars(self):
        params = self.params
        value = params.get("max_text_chars", 16000)
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 16000

    def on_init(self):
        self.ctx.post("help", {
            "text": "Propose an agreement with \"propose: <text>\"; every party then says \"agree <sha256>\". Machine-checkable lines: RULE <id>: <party> must post \"<phrase>\" before seq <N> | within <N> messages; RULE <id>: <party> must not post \"<phrase>\". Claims: \"claim <id>: <what happened>\".",
            "parties": self.parties(),
        })
        self.ctx.set_state({"proposal": None, "agreed_by": {}, "agreement": None, "seen": {}, "count": 0, "claims": []})

    def on_message(self, msg):
        state = self.ctx.get_state()
        if not state:
            return
        sender = msg.get("sender")
        if sender not in self.parties():
            return
        command, argument, extra = parse_command(msg.get("body"))
        if state["agreement"]:
            state["count"] = state.get("count", 0) + 1
        if command is None:
            self.observe(state, sender, msg)
        elif command == "propose":
            self.propose(state, sender, argument, msg)
        elif command == "agree":
            self.agree(state, sender, argument, msg)
        elif command == "claim":
            self.claim(state, sender, argument, extra, msg)
        else:
            self.ctx.post("status", {"proposal": state["proposal"], "agreed_by": state["agreed_by"],
                                     "agreement": state["agreement"], "observed": state["seen"],
                                     "claims": state.get("claim_count", len(state["claims"]))})
        self.ctx.set_state(state)

    def refuse(self, player, reason):
        self.ctx.post("refused", {"player": player, "reason": reason}, to=[player])

    def propose(self, state, sender, text, msg):
        if state["agreement"]:
            self.refuse(sender, "an agreement is already in force; this bot holds one agreement")
            return
        if msg.get("to"):
            self.refuse(sender, "propose publicly, so that every party sees the text")
            return
        if not text or len(text) > self.max_chars():
            self.refuse(sender, f"an agreement text has 1 to {self.max_chars()} characters")
            return
        rules = parse_rules(text)
        state["proposal"] = {"text": text, "sha256": sha256_text(text), "by": sender, "seq": msg.get("seq"),
                             "rules": rules}
        state["agreed_by"] = {}
        self.ctx.post("proposal", {
            "sha256": state["proposal"]["sha256"],
            "by": sender,
            "text": text,
            "rules": rules,
            "unknown_parties": sorted({r["party"] for r in rules if "party" in r and r["party"] not in self.parties()}),
            "next": f"each party: agree {state['proposal']['sha256']}",
        })

    def agree(self, state, sender, digest, msg):
        proposal = state["proposal"]
        if state["agreement"]:
            self.refuse(sender, "the agreement is already sealed")
            return
        if not proposal:
            self.refuse(sender, "nothing has been proposed")
            return
        if digest != proposal["sha256"]:
            self.refuse(sender, f"that is not the hash of the current proposal ({proposal['sha256']})")
            return
        state["agreed_by"][sender] = msg.get("seq")
        waiting = [p for p in self.parties() if p not in state["agreed_by"]]
        self.ctx.post("agreed", {"player": sender, "sha256": proposal["sha256"], "waiting_for": waiting})
        if not waiting:
            state["agreement"] = {"sha256": proposal["sha256"], "text": proposal["text"], "rules": proposal["rules"],
                                  "parties": self.parties(), "sealed_seq": msg.get("seq")}
            self.ctx.post("agreement", {"sha256": proposal["sha256"], "parties": self.parties(),
                                        "sealed_seq": msg.get("seq"), "rules": proposal["rules"]})

    def observe(self, state, sender, msg):
        """Note the first time after sealing that a party posts a rule's phrase."""
        agreement = state["agreement"]
        seq = msg.get("seq")
        if not agreement or not isinstance(seq, int):
            return
        text = message_text(msg.get("body")).lower()
        for rule in agreement["rules"]:
            if rule["kind"] == "manual" or rule["party"] != sender or rule["id"] in state["seen"]:
                continue
            if rule["phrase"].lower() in text:
                state["seen"][rule["id"]] = {"seq": seq, "index": state.get("count", 0)}

    def claim(self, state, sender, rule_id, text, msg):
        agreement = state["agreement"]
        text = text or ""
        now = msg.get("seq")
        state["claim_count"] = state.get("claim_count", len(state["claims"])) + 1
        record = {"id": state["claim_count"], "claimant": sender, "seq": now, "rule": rule_id,
                  "text": text[:2000], "text_sha256": sha256_text(text),
                  "agreement_sha256": agreement["sha256"] if agreement else None}
        rules = {r["id"].lower(): r for r in agreement["rules"]} if agreement else {}
        rule = rules.get((rule_id or "").lower())
        if not agreement:
            record.update({"ruling": "no_agreement", "reason": "no agreement is in force; the claim is only recorded"})
        elif rule is None or rule["kind"] == "manual":
            why = "no such rule" if rule is None and rule_id else ("a manual rule" if rule else "no rule named")
            record.update({"ruling": "needs_human_judgment",
                           "reason": f"{why}: the claim and its hash are recorded for the parties or a human arbiter"})
        else:
            record["rule"] = rule["id"]
            record.update(self.rule_on(rule, state["seen"].get(rule["id"]), now, state.get("count", 0)))
        # Every ruling is in the transcript; the state keeps the recent ones
        # only, so that it stays under the state size limit.
        state["claims"] = (state["claims"] + [record])[-CLAIMS_KEPT:]
        self.ctx.post("ruling", record)

    def rule_on(self, rule, seen, now, count):
        """The ruling on one machine-checkable rule.

        `seen` is where the party first posted the phrase after sealing
        ({seq, index}, index counting player messages since sealing), `now`
        the claim's seq and `count` how many player messages the bot has
        received since sealing, the claim included.
        """
        party, phrase = rule["party"], rule["phrase"]
        if rule["kind"] == "must_not_post":
            if seen:
                return {"ruling": "breached", "evidence_seq": seen["seq"],
                        "reason": f"{party} posted \"{phrase}\" at seq {seen['seq']}"}
            return {"ruling": "not_breached", "reason": f"{party} has not posted \"{phrase}\" in any message I saw"}
        if rule["kind"] == "must_post_before":
            deadline = rule["seq"]
            on_time = seen is not None and seen["seq"] < deadline
            overdue = isinstance(now, int) and now >= deadline
            limit = f"before seq {deadline}"
        else:
            deadline = rule["messages"]
            on_time = seen is not None and seen["index"] <= deadline
            overdue = count >= deadline
            limit = f"within {deadline} player messages of the sealing"
        if on_time:
            return {"ruling": "fulfilled", "evidence_seq": seen["seq"],
                    "reason": f"{party} posted \"{phrase}\" at seq {seen['seq']}, {limit}"}
        if seen:
            return {"ruling": "breached", "evidence_seq": seen["seq"],
                    "reason": f"{party} posted \"{phrase}\" late, at seq {seen['seq']}; it was due {limit}"}
        if overdue:
            return {"ruling": "breached", "reason": f"{party} did not post \"{phrase}\" {limit}"}
        return {"ruling": "pending", "reason": f"{party} has not posted \"{phrase}\" yet; it is due {limit}"}
