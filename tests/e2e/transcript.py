"""An independent checker of a channel's transcript, written from the format
as docs/bots.md ("Verifying the transcript") describes it, without the
daemon's code: the hash chain

    hash_n = sha256(hash_{n-1} || JCS(entry_n))

and the causal order of every bot entry (`cause`, `state_hash`)."""

from __future__ import annotations

import hashlib
import json


def jcs(value) -> str:
    """RFC 8785 canonical JSON for the values transcripts hold (strings, integers,
    booleans, null, arrays, objects): sorted keys, no whitespace, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def body_hash(body, salt: str) -> str:
    """The hash a private message contributes: salted, so a guess at a short
    body cannot be confirmed by anyone who lacks the salt."""
    return "sha256:" + hashlib.sha256(f"{salt}:{jcs(body)}".encode()).hexdigest()


class ChainBreak(AssertionError):
    def __init__(self, seq, reason: str):
        super().__init__(f"seq {seq}: {reason}")
        self.seq = seq
        self.reason = reason


def entry(channel_id: str, m: dict) -> dict:
    """The hashed entry of a message as a member received it."""
    e = {k: m[k] for k in ("seq", "sender", "kind", "ts")}
    e["channel_id"] = channel_id
    if "to" in m:
        e["to"] = m["to"]
        e["body_hash"] = m["body_hash"] if "body_hash" in m else body_hash(m["body"], m["body_salt"])
    else:
        e["body"] = m["body"]
    for k in ("cause", "state_hash"):
        if k in m:
            e[k] = m[k]
    return e


def verify(channel_id: str, messages: list[dict]) -> str:
    """Returns the head hash; raises ChainBreak (an AssertionError) at the
    first entry that breaks the chain or the causal order."""
    prev = bytes(32)
    causes = Causes()
    for i, m in enumerate(messages, start=1):
        if m["seq"] != i:
            raise ChainBreak(m["seq"], f"expected seq {i}")
        h = hashlib.sha256(prev + jcs(entry(channel_id, m)).encode()).hexdigest()
        if m["hash"] != h:
            raise ChainBreak(i, "hash does not match")
        causes.check(m)
        prev = bytes.fromhex(h)
    return prev.hex()


class Causes:
    """What each bot entry's `cause` may be: an earlier message that runs a
    hook of that bot (its own bot:attach, a seat filled or moved, a user
    message it may read), not before its attachment, never going back."""

    def __init__(self):
        self.required = False  # a channel of transcript_format 2, or a cause seen already
        self.triggers: list[tuple] = []  # per seq: ("attach", bot) | ("seat",) | ("user", to) | ("nothing",)
        self.attached: dict[str, int] = {}
        self.latest: dict[str, int] = {}

    def check(self, m: dict):
        seq, kind, sender = m["seq"], m["kind"], m["sender"]
        body = m.get("body") if isinstance(m.get("body"), dict) else {}
        event = body.get("type", "")
        cause = m.get("cause")
        bots_entry = kind == "bot" or (kind == "control" and sender != "system")
        if "state_hash" in m and cause is None:
            raise ChainBreak(seq, "a state_hash without a cause")
        if cause is None:
            if bots_entry and self.required:
                raise ChainBreak(seq, f"{sender}'s entry has no cause")
        elif not bots_entry:
            raise ChainBreak(seq, "only a bot's entries have a cause")
        else:
            self.check_cause(seq, sender, cause)
        if kind == "control" and event == "bot:state" and "state_hash" not in m:
            raise ChainBreak(seq, "a bot:state entry without a state_hash")
        if cause is not None and event == "bot:error" and body.get("seq") != cause:
            raise ChainBreak(seq, "a bot:error whose seq is not its cause")
        if cause is not None:
            self.required = True
        if kind == "user":
            trigger = ("user", m.get("to"))
        elif kind == "system" and event == "channel:created":
            if (body.get("transcript_format") or 0) >= 2:
                self.required = True
            trigger = ("nothing",)
        elif kind == "system" and event == "bot:attach":
            self.attached.setdefault(body.get("bot_id", ""), seq)
            trigger = ("attach", body.get("bot_id", ""))
        elif kind == "system" and event in ("seat:filled", "seat:moved"):
            trigger = ("seat",)
        else:
            trigger = ("nothing",)
        self.triggers.append(trigger)

    def check_cause(self, seq: int, bot: str, cause):
        if not isinstance(cause, int) or isinstance(cause, bool) or not 1 <= cause < seq:
            raise ChainBreak(seq, f"cause {cause!r} is not an earlier message")
        if bot not in self.attached:
            raise ChainBreak(seq, f"{bot} writes with cause {cause} but was never attached before it")
        if cause < self.attached[bot]:
            raise ChainBreak(seq, f"cause {cause} precedes {bot}'s attachment at seq {self.attached[bot]}")
        t = self.triggers[cause - 1]
        runs = (t[0] == "attach" and t[1] == bot) or t[0] == "seat" or \
            (t[0] == "user" and (t[1] is None or bot in t[1]))
        if not runs:
            raise ChainBreak(seq, f"cause {cause} is not a message that runs a hook of {bot}")
        if cause < self.latest.get(bot, 0):
            raise ChainBreak(seq, f"{bot}'s cause goes back from {self.latest[bot]} to {cause}")
        self.latest[bot] = cause


def rehash(channel_id: str, messages: list[dict]) -> list[dict]:
    """The messages with every link recomputed, as a forger who rewrites the
    whole chain would produce them (for tests of the causal checks)."""
    out, prev = [], bytes(32)
    for m in messages:
        m = dict(m)
        h = hashlib.sha256(prev + jcs(entry(channel_id, m)).encode()).hexdigest()
        m["hash"] = h
        prev = bytes.fromhex(h)
        out.append(m)
    return out
