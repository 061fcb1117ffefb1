"""SealedBidBot: private bids, public commitments, one public reveal.

Every player seat bids once by sending the bot a private message
(`post_message` with `to` naming the bot): "bid 120" or {"bid": 120}. Amounts
are whole numbers (use the smallest unit, e.g. cents). On receipt the bot
answers the bidder privately with the amount it recorded, a random salt and
the commitment, and posts publicly only who bid and
`sha256("<bidder>|<amount>|<salt>")`, so nobody learns an amount early and the
bot cannot change one later. When every seat has bid, it reveals all bids with
their salts and names the winner: highest bid, ties to the earliest bid (lowest
seq). With `rule: "second_price"` the winner pays the second-highest bid
(Vickrey); with one bidder, their own bid.

A bid sent publicly is refused and not recorded: its amount is already known.

Why bids carry a nonce: a private message is hidden from the other players,
but the transcript shows them its `body_hash`. mcp-multiplayer salts that hash
with a secret only the message's readers get, so the amount cannot be found by
trying every bid; the nonce is defence in depth (say, against a server that
does not salt, or a salt that leaks). A bid must carry at least 16 random
characters: {"bid": 450, "nonce": "k3J9...(16+ chars)"} or "bid 450 k3J9...".
Without one the bid is refused; set `require_nonce: false` to allow it.
"""

import hashlib
import re
import secrets

MANIFEST = {
    "name": "SealedBidBot",
    "version": "1.0.0",
    "summary": "Sealed-bid auction: bids arrive privately, their hashes are posted at once, all are revealed when every seat has bid.",
    "params": {
        "item": "what is being auctioned (default \"the item\")",
        "min_bid": "smallest acceptable bid (default 0)",
        "rule": "\"first_price\" (default) or \"second_price\"",
        "require_nonce": "refuse bids without 16+ random characters that keep their body_hash unguessable (default true)",
    },
}

BID_RE = re.compile(r"^\s*(?:bid\s*:?\s*)?(\d{1,15})(?:\s+(\S{1,200}))?\s*$", re.IGNORECASE)
MIN_NONCE_CHARS = 16


def parse_bid(body):
    """(amount, nonce) a message bids; amount None when it is no bid, "invalid" when malformed."""
    if isinstance(body, dict) and "bid" in body:
        value = body.get("bid")
        nonce = body.get("nonce") if isinstance(body.get("nonce"), str) else ""
        if isinstance(value, bool):
            return "invalid", nonce
        if isinstance(value, int):
            return (value if value >= 0 else "invalid"), nonce
        if isinstance(value, str):
            match = BID_RE.match(value)
            if not match:
                return "invalid", nonce
            return int(match.group(1)), nonce or match.group(2) or ""
        return "invalid", nonce
    text = body.strip() if isinstance(body, str) else ""
    if not text.lower().startswith("bid"):
        return None, ""
    match = BID_RE.match(text)
    if not match:
        return "invalid", ""
    return int(match.group(1)), match.group(2) or ""


def commitment_of(bidder, amount, salt):
    return hashlib.sha256(f"{bidder}|{amount}|{salt}".encode("utf-8")).hexdigest()


def is_command(body, word):
    if isinstance(body, dict):
        return bool(body.get(word))
    return isinstance(body, str) and body.strip().lower() == word


class SealedBidBot:
    def __init__(self, ctx, params):
        # A fresh instance per hook: nothing kept here outlives the hook.
        self.ctx = ctx
        self.params = params if isinstance(params, dict) else {}

    def settings(self):
        params = self.params
        item = params.get("item") if isinstance(params.get("item"), str) else "the item"
        min_bid = params.get("min_bid", 0)
        if isinstance(min_bid, bool) or not isinstance(min_bid, int):
            min_bid = 0
        rule = "second_price" if params.get("rule") == "second_price" else "first_price"
        require_nonce = params.get("require_nonce", True) is not False
        return item, min_bid, rule, require_nonce

    def bidders(self):
        return [p["label"] for p in self.ctx.players]

    def private_to_bot(self, msg):
        """True when no other player can read the message."""
        to = msg.get("to")
        if not to:
            return False
        players = self.bidders()
        return all(label not in players or label == msg.get("sender") for label in to)

    def on_init(self):
        item, min_bid, rule, require_nonce = self.settings()
        state = {"item": item, "min_bid": min_bid, "rule": rule, "require_nonce": require_nonce,
                 "phase": "open", "bids": {}}
        how = "{\"bid\": N, \"nonce\": \"<16+ random characters>\"}" if require_nonce else "\"bid N\""
        self.ctx.post("auction", {
            "item": item,
            "min_bid": min_bid,
            "rule": rule,
            "bidders": self.bidders(),
            "text": f"Sealed-bid auction for {item}. Send me your bid privately (to this bot only) as {how}, N a whole number >= {min_bid}. I post a hash of each bid now and reveal all bids once everyone has bid.",
            "require_nonce": require_nonce,
            "commitment_scheme": "sha256 of the UTF-8 string \"<bidder>|<amount>|<salt>\", hex",
        })
        self.ctx.set_state(state)

    def on_message(self, msg):
        state = self.ctx.get_state()
        if not state:
            return
        sender = msg.get("sender")
        body = msg.get("body")
        if sender not in self.bidders():
            return
        if is_command(body, "status"):
            self.ctx.post("status", {
                "item": state["item"],
                "phase": state["phase"],
                "bid": sorted(state["bids"]),
                "waiting_for": [b for b in self.bidders() if b not in state["bids"]],
                "commitments": {b: state["bids"][b]["commitment"] for b in state["bids"]},
            })
            return
        amount, nonce = parse_bid(body)
        if amount is None:
            return
        refusal = None
        if state["phase"] != "open":
            refusal = "the auction is closed"
        elif not self.private_to_bot(msg):
            refusal = "bids must be sent privately to the bot; this public bid was not recorded"
        elif amount == "invalid":
            refusal = "a bid is a whole number, e.g. \"bid 120\""
        elif state.get("require_nonce", True) and len(nonce) < MIN_NONCE_CHARS:
            refusal = ("a bid needs a nonce of 16+ random characters, e.g. {\"bid\": 120, \"nonce\": \"...\"}: "
                       "it keeps the amount unguessable from the message's body_hash. "
                       "Not recorded; bid again with a nonce (a new amount is safer)")
        elif amount < state["min_bid"]:
            refusal = f"the minimum bid is {state['min_bid']}"
        elif sender in state["bids"]:
            refusal = "you have already bid; bids cannot be changed"
        if refusal:
            self.ctx.post("refused", {"player": sender, "reason": refusal}, to=[sender])
            return

        salt = secrets.token_hex(16)
        commitment = commitment_of(sender, amount, salt)
        state["bids"][sender] = {"amount": amount, "salt": salt, "commitment": commitment, "seq": msg.get("seq")}
        self.ctx.post("bid_receipt", {"amount": amount, "salt": salt, "commitment": commitment}, to=[sender])
        waiting = [b for b in self.bidders() if b not in state["bids"]]
        self.ctx.post("bid_committed", {"bidder": sender, "commitment": commitment, "waiting_for": waiting})
        if not waiting:
            self.reveal(state)
        self.ctx.set_state(state)

    def reveal(self, state):
        state["phase"] = "closed"
        bids = [dict(state["bids"][b], bidder=b) for b in state["bids"]]
        ranked = sorted(bids, key=lambda bid: (-bid["amount"], bid["seq"] if isinstance(bid["seq"], int) else 0))
        winner = ranked[0]
        if state["rule"] == "second_price" and len(ranked) > 1:
            price = ranked[1]["amount"]
        else:
            price = winner["amount"]
        state["result"] = {"winner": winner["bidder"], "price": price}
        self.ctx.post("reveal", {
            "item": state["item"],
            "rule": state["rule"],
            "bids": [{"bidder": b["bidder"], "amount": b["amount"], "salt": b["salt"],
                      "commitment": b["commitment"], "seq": b["seq"]} for b in ranked],
            "winner": winner["bidder"],
            "price": price,
            "check": "for each bid, sha256(\"<bidder>|<amount>|<salt>\") must equal the commitment posted when it arrived",
        })
