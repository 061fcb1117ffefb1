"""ContextExchangeBot: two-sided "based on what you know about me, ..." rounds.

A round exchanges answers to one question among all player seats, and nobody
sees anybody's answer until everyone has both opted in and answered:

1. Anyone proposes, publicly: "ask: based on what you know about me, what
   should I read next?" or {"ask": "..."}. Proposing counts as the proposer's
   opt-in. The bot announces round N with its question and participants
   (every player seat at that moment).
2. Every other participant opts in publicly: "opt in" / "opt in N" /
   {"opt_in": N}. Anyone may instead "decline [N]", which cancels the round
   for good and discards every held answer unread.
3. Each participant sends an answer privately to the bot (`to` naming the bot):
   "answer: ..." / "answer N: ..." / {"answer": "...", "round": N}. The bot
   acknowledges privately with a salt and posts publicly only the commitment
   `sha256("<round>|<player>|<salt>|<answer>")`. An answer cannot be changed.
4. When all participants have opted in and answered, the bot delivers every
   answer with its salt in one post addressed to the participants, so each can
   check the others' commitments.

A participant's seat that joins again while the round is open, after it had
opted in or answered (the admin kicked it and someone redeemed the new invite,
or its holder moved it with their rejoin token), cancels the round and
discards every held answer unread: nobody's answer goes to a seat's new
holder.

An answer sent publicly is refused and not recorded. The other players see
a private message's `body_hash`; mcp-multiplayer salts it, but for defence in
depth a short, guessable answer ("yes") can carry a random `nonce` field in
the object form: {"answer": "...", "round": 1, "nonce": "<16+ random chars>"}
(the bot ignores the field; it only makes the body unguessable). The bot's state (which
the daemon stores) holds answers until delivery; the server's operator can
read it, the other players cannot.
"""

import hashlib
import re
import secrets

MANIFEST = {
    "name": "ContextExchangeBot",
    "version": "1.0.0",
    "summary": "Opt-in rounds where each side answers a question privately; answers are hash-committed on receipt and delivered only when all have opted in and answered.",
    "params": {
        "max_answer_chars": "longest accepted answer (default 8000)",
        "max_question_chars": "longest accepted question (default 1000)",
    },
}

FINISHED_ROUNDS_KEPT = 20
# The colon is required, so that chat such as "ask bob later" is not a command.
ASK_RE = re.compile(r"^\s*ask\s*:\s*(.+)$", re.IGNORECASE | re.DOTALL)
ANSWER_RE = re.compile(r"^\s*answer(?:\s+(\d+))?\s*:\s*(.*)$", re.IGNORECASE | re.DOTALL)
OPT_RE = re.compile(r"^\s*(opt[\s_-]?in|decline)(?:\s+(\d+))?\s*[.!]?\s*$", re.IGNORECASE)


def commitment_of(round_id, player, salt, answer):
    return hashlib.sha256(f"{round_id}|{player}|{salt}|{answer}".encode("utf-8")).hexdigest()


def as_round(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def parse(body):
    """(command, round or None, text) for a message body; command None when not ours."""
    if isinstance(body, dict):
        if isinstance(body.get("ask"), str):
            return "ask", None, body.get("ask").strip()
        if isinstance(body.get("answer"), str):
            return "answer", as_round(body.get("round")), body.get("answer").strip()
        for key, command in (("opt_in", "opt_in"), ("optin", "opt_in"), ("decline", "decline")):
            if key in body and body.get(key) is not False:
                return command, as_round(body.get(key)) or as_round(body.get("round")), ""
        if body.get("status"):
            return "status", None, ""
        body = body.get("text") if isinstance(body.get("text"), str) else ""
    if not isinstance(body, str):
        return None, None, ""
    match = ASK_RE.match(body)
    if match:
        return "ask", None, match.group(1).strip()
    match = ANSWER_RE.match(body)
    if match:
        return "answer", as_round(match.group(1)), match.group(2).strip()
    match = OPT_RE.match(body)
    if match:
        word = match.group(1).lower()
        return ("decline" if word == "decline" else "opt_in"), as_round(match.group(2)), ""
    if body.strip().lower() == "status":
        return "status", None, ""
    return None, None, ""


class ContextExchangeBot:
    def __init__(self, ctx, params):
        # A fresh instance per hook: nothing kept here outlives the hook.
        self.ctx = ctx
        self.params = params if isinstance(params, dict) else {}

    def limits(self):
        params = self.params
        answer = params.get("max_answer_chars", 8000)
        question = params.get("max_question_chars", 1000)
        answer = answer if isinstance(answer, int) and not isinstance(answer, bool) else 8000
        question = question if isinstance(question, int) and not isinstance(question, bool) else 1000
        return max(1, answer), max(1, question)

    def players(self):
        return [p["label"] for p in self.ctx.players]

    def private_to_bot(self, msg):
        to = msg.get("to")
        if not to:
            return False
        players = self.players()
        return all(label not in players or label == msg.get("sender") for label in to)

    def refuse(self, player, reason):
        self.ctx.post("refused", {"player": player, "reason": reason}, to=[player])

    def pick_round(self, state, number, player):
        """The round a command means: the number given, else the newest open round of the player."""
        if number is not None:
            for rnd in state["rounds"]:
                if rnd["id"] == number:
                    return rnd
            return None
        for rnd in reversed(state["rounds"]):
            if rnd["status"] == "open" and player in rnd["participants"]:
                return rnd
        return None

    def on_init(self):
        self.ctx.post("help", {
            "text": "Context exchange: propose a question publicly with \"ask: based on what you know about me, ...\"; others \"opt in\" (or \"decline\"); everyone sends \"answer: ...\" privately to this bot (tip: send {\"answer\": \"...\", \"nonce\": \"<16+ random chars>\"} so the body_hash others see cannot be guessed). Answers are delivered only when all participants opted in and answered.",
            "commitment_scheme": "sha256 of the UTF-8 string \"<round>|<player>|<salt>|<answer>\", hex",
        })
        self.ctx.set_state({"rounds": [], "next_id": 1})

    def on_join(self, player):
        """A seat (re)joined while a round counts on what it already did.

        Answers and opt-ins were given by the people holding the seats when
        they acted, for the people holding the others. After a kick the admin
        can hand a seat to anyone, so a round in which the seat already opted
        in or answered is cancelled, its held answers discarded unread,
        rather than delivered to whoever holds the seat now. The bot cannot
        tell a kick's refill from its holder moving the seat with their rejoin
        token; both cancel (propose the question again)."""
        state = self.ctx.get_state()
        if not state:
            return
        changed = False
        for rnd in state["rounds"]:
            acted = player in rnd["opted_in"] or player in rnd["answers"]
            if rnd["status"] == "open" and player in rnd["participants"] and acted:
                rnd["status"] = "cancelled"
                discarded = sorted(rnd["answers"])
                rnd["answers"] = {}
                self.ctx.post("cancelled", {
                    "round": rnd["id"],
                    "player": player,
                    "reason": "this seat joined again (it may have changed hands); held answers were discarded unread",
                    "discarded_unread": discarded,
                })
                changed = True
        if changed:
            self.ctx.set_state(state)

    def on_message(self, msg):
        state = self.ctx.get_state()
        if not state:
            return
        sender = msg.get("sender")
        if sender not in self.players():
            return
        command, number, text = parse(msg.get("body"))
        if command is None:
            return
        if command == "ask":
            self.ask(state, sender, text, msg)
        elif command == "status":
            self.ctx.post("status", {"rounds": [self.summary(r) for r in state["rounds"]]})
        else:
            rnd = self.pick_round(state, number, sender)
            if rnd is None:
                self.refuse(sender, "no such open round")
            elif sender not in rnd["participants"]:
                self.refuse(sender, f"you are not a participant of round {rnd['id']}")
            elif rnd["status"] != "open":
                self.refuse(sender, f"round {rnd['id']} is {rnd['status']}")
            elif command == "opt_in":
                self.opt_in(state, rnd, sender)
            elif command == "decline":
                self.decline(rnd, sender)
            else:
                self.answer(rnd, sender, text, msg)
        self.ctx.set_state(state)

    def summary(self, rnd):
        return {
            "round": rnd["id"],
            "question": rnd["question"],
            "proposer": rnd["proposer"],
            "participants": list(rnd["participants"]),
            "opted_in": list(rnd["opted_in"]),
            "answered": sorted(rnd["answers"]),
            "commitments": {p: rnd["answers"][p]["commitment"] for p in sorted(rnd["answers"])},
            "status": rnd["status"],
        }

    def ask(self, state, sender, question, msg):
        max_answer, max_question = self.limits()
        if msg.get("to"):
            self.refuse(sender, "propose a question publicly, so that everyone sees what they opt into")
            return
        if not question or len(question) > max_question:
            self.refuse(sender, f"a question has 1 to {max_question} characters")
            return
        rnd = {
            "id": state["next_id"],
            "question": question,
            "proposer": sender,
            "participants": self.players(),
            "opted_in": [sender],
            "answers": {},
            "status": "open",
            "seq": msg.get("seq"),
        }
        state["next_id"] += 1
        # Finished rounds are in the transcript; keep the newest few in the
        # state, so that it stays under the state size limit.
        finished = [r for r in state["rounds"] if r["status"] != "open"]
        for old in finished[:max(0, len(finished) - FINISHED_ROUNDS_KEPT)]:
            state["rounds"].remove(old)
        state["rounds"].append(rnd)
        body = self.summary(rnd)
        body["text"] = f"Round {rnd['id']}: {question} -- participants {', '.join(rnd['participants'])}: say \"opt in {rnd['id']}\" (or \"decline {rnd['id']}\"), then send \"answer {rnd['id']}: ...\" privately to me."
        self.ctx.post("round", body)

    def opt_in(self, state, rnd, sender):
        if sender not in rnd["opted_in"]:
            rnd["opted_in"].append(sender)
        body = self.summary(rnd)
        body["player"] = sender
        self.ctx.post("opted_in", body)
        self.maybe_deliver(rnd)

    def decline(self, rnd, sender):
        rnd["status"] = "declined"
        discarded = sorted(rnd["answers"])
        rnd["answers"] = {}
        self.ctx.post("declined", {"round": rnd["id"], "player": sender, "discarded_unread": discarded})

    def answer(self, rnd, sender, text, msg):
        max_answer, max_question = self.limits()
        if not self.private_to_bot(msg):
            self.refuse(sender, "send your answer privately to the bot (to: the bot only); this one was not recorded")
            return
        if sender in rnd["answers"]:
            self.refuse(sender, f"you already answered round {rnd['id']}; answers cannot be changed")
            return
        if not text or len(text) > max_answer:
            self.refuse(sender, f"an answer has 1 to {max_answer} characters")
            return
        salt = secrets.token_hex(16)
        commitment = commitment_of(rnd["id"], sender, salt, text)
        rnd["answers"][sender] = {"text": text, "salt": salt, "commitment": commitment, "seq": msg.get("seq")}
        self.ctx.post("answer_receipt", {"round": rnd["id"], "salt": salt, "commitment": commitment}, to=[sender])
        self.ctx.post("answer_committed", {
            "round": rnd["id"],
            "player": sender,
            "commitment": commitment,
            "waiting_for_answers": [p for p in rnd["participants"] if p not in rnd["answers"]],
            "waiting_for_opt_in": [p for p in rnd["participants"] if p not in rnd["opted_in"]],
        })
        self.maybe_deliver(rnd)

    def maybe_deliver(self, rnd):
        everyone = rnd["participants"]
        if rnd["status"] != "open":
            return
        if any(p not in rnd["opted_in"] for p in everyone) or any(p not in rnd["answers"] for p in everyone):
            return
        rnd["status"] = "delivered"
        self.ctx.post("delivery", {
            "round": rnd["id"],
            "question": rnd["question"],
            "answers": {p: {"answer": rnd["answers"][p]["text"], "salt": rnd["answers"][p]["salt"],
                            "commitment": rnd["answers"][p]["commitment"]} for p in everyone},
            "check": "sha256(\"<round>|<player>|<salt>|<answer>\") must equal each commitment posted on receipt",
        }, to=list(everyone))
        for p in everyone:
            rnd["answers"][p].pop("text", None)
