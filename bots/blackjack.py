"""BlackjackBot: blackjack dealt from a deck the bot committed to in advance.

Before a hand is dealt the bot draws a 256-bit seed with `secrets` and posts
`sha256(seed)`; the deck is derived from the seed alone, so once the seed is
revealed at the end of the hand anyone can rebuild the deck and check every
card, the dealer's draws and the settlement.

Deck derivation (re-implementable in any language):
  1. seed: 64 lowercase hex characters; commitment = sha256(ASCII bytes of seed), hex.
  2. start from the 52 cards in this order: for suit in S, H, D, C, for rank in
     A 2 3 4 5 6 7 8 9 T J Q K, card = rank + suit ("AS", "2S", ..., "KC").
  3. for i from 51 down to 1: j = int(sha256("<seed>:<i>" as ASCII), big-endian) mod (i + 1);
     swap deck[i] and deck[j].
  4. cards are dealt from deck[0] upwards.

Dealing order: one card to each player in seat order, one to the dealer (face
up), a second card to each player, a second to the dealer (face down). Hits
take the next card. House rules: the dealer peeks for a natural blackjack, then
draws while below 17 and stands on every 17 including soft 17 (S17), and plays
out the hand even when every player busted. A natural pays 3:2 (rounded down),
a win 1:1, a push returns the bet; a natural against a dealer natural pushes.

Commands: "deal" (start a hand), "hit", "stand", "status". Bodies may be
strings or objects such as {"action": "hit"}.
"""

import hashlib
import re
import secrets

MANIFEST = {
    "name": "BlackjackBot",
    "version": "1.0.0",
    "summary": "Blackjack against the house; each hand's deck is committed by sha256(seed) before dealing and the seed is revealed after settling.",
    "params": {
        "chips": "starting chips per player (default 100)",
        "bet": "fixed bet per hand (default 10)",
        "autodeal": "deal the first hand as soon as every seat is filled (default true)",
    },
}

# One deck holds 340 points (aces counted as 1). A player's cards sum to at
# most 31 before the hand stops (21 plus a ten), the dealer's to at most 26,
# so with at most 10 players a hand can never run out of cards (10 * 31 + 26
# = 336 < 340). Further seats sit the hand out.
MAX_HAND_PLAYERS = 10
RANKS = "A23456789TJQK"
SUITS = "SHDC"
ACTIONS = ("deal", "hit", "stand", "status")


def fresh_deck():
    return [rank + suit for suit in SUITS for rank in RANKS]


def derive_deck(seed):
    """The deck order the seed fixes (see the module docstring)."""
    deck = fresh_deck()
    for i in range(51, 0, -1):
        digest = hashlib.sha256(f"{seed}:{i}".encode("ascii")).hexdigest()
        j = int(digest, 16) % (i + 1)
        deck[i], deck[j] = deck[j], deck[i]
    return deck


def commitment_of(seed):
    return hashlib.sha256(seed.encode("ascii")).hexdigest()


def card_value(card):
    rank = card[0]
    if rank == "A":
        return 1
    if rank in "TJQK":
        return 10
    return int(rank)


def hand_total(cards):
    """(best total, soft) where soft means an ace counts as 11."""
    total = sum(card_value(c) for c in cards)
    if any(c[0] == "A" for c in cards) and total + 10 <= 21:
        return total + 10, True
    return total, False


def is_natural(cards):
    return len(cards) == 2 and hand_total(cards)[0] == 21


def body_action(body):
    if isinstance(body, dict):
        for key in ("action", "command", "text"):
            value = body.get(key)
            if isinstance(value, str):
                body = value
                break
        else:
            for action in ACTIONS:
                if body.get(action) is True:
                    return action
            return None
    if not isinstance(body, str):
        return None
    word = re.sub(r"[^a-z]", "", body.strip().lower())
    return word if word in ACTIONS else None


def as_int(value, default):
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.match(r"^\d+$", value.strip()):
        return int(value.strip())
    return default


class BlackjackBot:
    def __init__(self, ctx, params):
        # A fresh instance per hook: nothing kept here outlives the hook.
        self.ctx = ctx
        self.params = params if isinstance(params, dict) else {}

    def settings(self):
        params = self.params
        autodeal = params.get("autodeal", True)
        if isinstance(autodeal, str):
            autodeal = autodeal.strip().lower() not in ("0", "false", "no", "off")
        return max(0, as_int(params.get("chips"), 100)), max(1, as_int(params.get("bet"), 10)), bool(autodeal)

    def seat_labels(self):
        return [p["label"] for p in self.ctx.players]

    def seat(self, state, label):
        if label in state["players"]:
            return False
        labels = self.seat_labels()
        state["players"].append(label)
        state["players"].sort(key=lambda name: labels.index(name) if name in labels else len(labels))
        state["chips"][label] = state["start_chips"]
        return True

    def commit_next(self, state):
        """Draw the seed of the next hand and publish its hash before dealing."""
        state["hand"] += 1
        state["seed"] = secrets.token_hex(32)
        state["commitment"] = commitment_of(state["seed"])
        self.ctx.post("commit", {
            "hand": state["hand"],
            "commitment": state["commitment"],
            "scheme": "commitment = sha256(seed as ASCII hex); deck = Fisher-Yates over AS..KS,AH..KH,AD..KD,AC..KC with j = int(sha256(\"<seed>:<i>\"), 16) mod (i+1) for i = 51..1; dealt from index 0",
        })

    def draw(self, state):
        card = derive_deck(state["seed"])[state["pos"]]
        state["pos"] += 1
        return card

    def view(self, state, label):
        cards = state["hands"][label]
        total, soft = hand_total(cards)
        return {"cards": list(cards), "total": total, "soft": soft, "status": state["status"][label]}

    # -- hooks ----------------------------------------------------------

    def on_init(self):
        chips, bet, autodeal = self.settings()
        state = {
            "start_chips": chips,
            "bet": bet,
            "autodeal": autodeal,
            "hand": 0,
            "seed": "",
            "commitment": "",
            "phase": "waiting",
            "players": [],
            "chips": {},
            "in_hand": [],
            "hands": {},
            "status": {},
            "dealer": [],
            "pos": 0,
            "turn": None,
        }
        self.ctx.post("rules", {
            "text": "Blackjack, one deck per hand, dealer stands on all 17s (S17), naturals pay 3:2. Say \"deal\" to start a hand, then \"hit\" or \"stand\" on your turn.",
            "bet": bet,
            "chips": chips,
        })
        self.commit_next(state)
        for player in self.ctx.players:
            if player.get("filled"):
                self.seat(state, player["label"])
        if autodeal and state["players"] and len(state["players"]) == len(self.seat_labels()):
            self.deal(state)
        self.ctx.set_state(state)

    def on_join(self, player):
        state = self.ctx.get_state()
        if not state:
            return
        self.seat(state, player)
        joins = state.setdefault("joins", [])
        rejoined = player in joins
        if not rejoined:
            joins.append(player)
        self.ctx.post("joined", {"player": player, "rejoined": rejoined, "chips": state["chips"][player]})
        if (state["phase"] == "waiting" and state["hand"] == 1 and state["autodeal"]
                and len(state["players"]) == len(self.seat_labels())):
            self.deal(state)
        self.ctx.set_state(state)

    def on_message(self, msg):
        state = self.ctx.get_state()
        if not state:
            return
        sender = msg.get("sender")
        if sender not in self.seat_labels():
            return
        self.seat(state, sender)
        if state["phase"] == "playing" and state["turn"] and self.vacant(state["turn"]):
            self.advance(state)
        action = body_action(msg.get("body"))
        if action == "status":
            self.post_status(state)
        elif action == "deal":
            if state["phase"] == "playing":
                self.ctx.post("refused", {"player": sender, "reason": "a hand is in play", "turn": state["turn"]}, to=[sender])
            else:
                self.deal(state)
        elif action in ("hit", "stand"):
            if state["phase"] != "playing":
                self.ctx.post("refused", {"player": sender, "reason": "no hand in play: say \"deal\""}, to=[sender])
            elif sender != state["turn"]:
                self.ctx.post("refused", {"player": sender, "reason": f"it is {state['turn']}'s turn", "turn": state["turn"]}, to=[sender])
            else:
                self.act(state, sender, action)
        self.ctx.set_state(state)

    # -- the game -------------------------------------------------------

    def post_status(self, state):
        body = {"phase": state["phase"], "hand": state["hand"], "commitment": state["commitment"],
                "chips": dict(state["chips"]), "turn": state["turn"]}
        if state["phase"] == "playing":
            body["players"] = {p: self.view(state, p) for p in state["in_hand"]}
            body["dealer_up"] = state["dealer"][0]
        self.ctx.post("status", body)

    def deal(self, state):
        if not state["players"]:
            return
        state["phase"] = "playing"
        state["in_hand"] = list(state["players"][:MAX_HAND_PLAYERS])
        state["hands"] = {p: [] for p in state["in_hand"]}
        state["status"] = {p: "playing" for p in state["in_hand"]}
        state["dealer"] = []
        state["pos"] = 0
        for round_no in range(2):
            for player in state["in_hand"]:
                state["hands"][player].append(self.draw(state))
            state["dealer"].append(self.draw(state))
        for player in state["in_hand"]:
            if is_natural(state["hands"][player]):
                state["status"][player] = "blackjack"
        self.ctx.post("deal", {
            "hand": state["hand"],
            "bet": state["bet"],
            "order": list(state["in_hand"]),
            "sitting_out": state["players"][MAX_HAND_PLAYERS:],
            "players": {p: self.view(state, p) for p in state["in_hand"]},
            "dealer_up": state["dealer"][0],
        })
        if is_natural(state["dealer"]):
            self.finish(state)
            return
        self.advance(state)

    def vacant(self, label):
        """True when the seat has no holder now (kicked, never filled)."""
        for seat in self.ctx.players:
            if seat["label"] == label:
                return not seat.get("filled")
        return True

    def advance(self, state):
        """Give the turn to the next player still playing, or let the dealer play.

        A player whose seat has emptied (kicked) stands, so that the hand
        cannot stall."""
        for player in state["in_hand"]:
            if state["status"][player] == "playing" and self.vacant(player):
                state["status"][player] = "stand"
                body = self.view(state, player)
                body["player"] = player
                body["reason"] = "seat empty: stands automatically"
                self.ctx.post("stand", body)
            if state["status"][player] == "playing":
                state["turn"] = player
                view = self.view(state, player)
                self.ctx.post("turn", {"player": player, "cards": view["cards"], "total": view["total"],
                                       "dealer_up": state["dealer"][0],
                                       "text": f"{player}: you have {view['total']}; \"hit\" or \"stand\"?"})
                return
        self.finish(state)

    def act(self, state, player, action):
        if action == "hit":
            card = self.draw(state)
            state["hands"][player].append(card)
            total = hand_total(state["hands"][player])[0]
            if total > 21:
                state["status"][player] = "bust"
            elif total == 21:
                state["status"][player] = "stand"
            body = self.view(state, player)
            body["player"] = player
            body["card"] = card
            self.ctx.post("card", body)
        else:
            state["status"][player] = "stand"
            body = self.view(state, player)
            body["player"] = player
            self.ctx.post("stand", body)
        # Announce the turn after every action, also when it stays with the
        # same player after a hit: agents act on `turn` posts naming them.
        self.advance(state)

    def finish(self, state):
        """Dealer plays (S17), hands settle, the seed is revealed, the next one committed."""
        state["turn"] = None
        dealer = state["dealer"]
        dealer_natural = is_natural(dealer)
        if not dealer_natural:
            while hand_total(dealer)[0] < 17:
                dealer.append(self.draw(state))
        dealer_total = hand_total(dealer)[0]
        outcomes = {}
        bet = state["bet"]
        for player in state["in_hand"]:
            cards = state["hands"][player]
            total = hand_total(cards)[0]
            natural = is_natural(cards)
            if natural and dealer_natural:
                result, delta = "push", 0
            elif natural:
                result, delta = "blackjack", bet * 3 // 2
            elif dealer_natural:
                result, delta = "lose", -bet
            elif total > 21:
                result, delta = "bust", -bet
            elif dealer_total > 21 or total > dealer_total:
                result, delta = "win", bet
            elif total == dealer_total:
                result, delta = "push", 0
            else:
                result, delta = "lose", -bet
            state["chips"][player] += delta
            outcomes[player] = {"cards": list(cards), "total": total, "result": result, "delta": delta,
                                "chips": state["chips"][player]}
        self.ctx.post("dealer", {"cards": list(dealer), "total": dealer_total, "natural": dealer_natural,
                                 "bust": dealer_total > 21})
        self.ctx.post("settle", {"hand": state["hand"], "outcomes": outcomes})
        self.ctx.post("reveal", {
            "hand": state["hand"],
            "seed": state["seed"],
            "commitment": state["commitment"],
            "cards_used": state["pos"],
            "deck": derive_deck(state["seed"]),
            "check": "sha256(seed) must equal commitment; rebuild the deck from the seed and replay the deal",
        })
        state["phase"] = "between"
        state["in_hand"] = []
        self.commit_next(state)
