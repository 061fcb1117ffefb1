"""GuessBot: a number-guessing game with a commitment made before any guess.

On attach the bot draws a secret target with `secrets.randbelow`, draws a
random nonce, and posts `sha256("<target>|<nonce>")` publicly. Players then
guess in seat order (the order of `ctx.players`); the bot names whose turn it
is and accepts a guess only from that same player. Each guess gets a
"higher" / "lower" hint. When someone guesses right, or after `max_rounds`
full rounds, the bot reveals the target and the nonce so that anyone can
recompute the hash and check that the bot never changed its number.

Commands (a message body may be a string or a JSON object):
  "guess 42", "42", {"guess": 42}   guess a number (only on your turn)
  "start", {"start": true}          start with the players seated so far
  "status", {"status": true}        show the game state

All memory lives in `ctx.get_state()`: the harness builds a fresh instance
for every hook.
"""

import hashlib
import re
import secrets

MANIFEST = {
    "name": "GuessBot",
    "version": "1.0.0",
    "summary": "Guess the number in turn; the target is committed by hash before the first guess and revealed at the end.",
    "params": {
        "min": "smallest possible target (default 1)",
        "max": "largest possible target (default 100)",
        "max_rounds": "rounds (each seated player guesses once per round) before the game ends unsolved (default 10)",
        "autostart": "start as soon as every seat is filled (default true)",
    },
}

HISTORY_KEPT = 100
GUESS_RE = re.compile(r"^\s*(?:guess\s*:?\s*)?(-?\d{1,18})\s*[.!]?\s*$", re.IGNORECASE)


def commitment_of(target, nonce):
    """The published hash: sha256 over the UTF-8 bytes of "<target>|<nonce>"."""
    return hashlib.sha256(f"{target}|{nonce}".encode("utf-8")).hexdigest()


def body_text(body):
    """The command text of a message body (a string, or an object's text field)."""
    if isinstance(body, str):
        return body.strip()
    if isinstance(body, dict):
        for key in ("text", "command", "message", "content"):
            value = body.get(key)
            if isinstance(value, str):
                return value.strip()
    return ""


def parse_guess(body):
    """The integer a message guesses, or None when it is not a guess."""
    if isinstance(body, dict) and "guess" in body:
        value = body.get("guess")
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value == int(value):
            return int(value)
        if isinstance(value, str):
            match = GUESS_RE.match(value)
            return int(match.group(1)) if match else None
        return None
    match = GUESS_RE.match(body_text(body))
    if match:
        return int(match.group(1))
    return None


def is_command(body, word):
    if isinstance(body, dict) and body.get(word):
        return True
    return body_text(body).lower() == word


def as_int(value, default):
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.match(r"^-?\d+$", value.strip()):
        return int(value.strip())
    return default


def as_bool(value, default):
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.strip().lower() not in ("0", "false", "no", "off")
    return default


class GuessBot:
    def __init__(self, ctx, params):
        # A fresh instance per hook: nothing kept here outlives the hook.
        self.ctx = ctx
        self.params = params if isinstance(params, dict) else {}

    # -- helpers --------------------------------------------------------

    def settings(self):
        params = self.params
        low = as_int(params.get("min"), 1)
        high = as_int(params.get("max"), 100)
        if high < low:
            low, high = high, low
        rounds = max(1, as_int(params.get("max_rounds"), 10))
        return low, high, rounds, as_bool(params.get("autostart"), True)

    def seat_labels(self):
        """Labels of every player seat, in seat order."""
        return [p["label"] for p in self.ctx.players]

    def seat_index(self, label):
        labels = self.seat_labels()
        return labels.index(label) if label in labels else len(labels)

    def add_player(self, state, label):
        """Seat a player once; returns True when the player was new."""
        if label in state["players"]:
            return False
        state["players"].append(label)
        state["players"].sort(key=self.seat_index)
        return True

    def all_seated(self, state):
        labels = self.seat_labels()
        return bool(labels) and all(label in state["players"] for label in labels)

    def start(self, state):
        state["phase"] = "playing"
        state["round"] = 1
        state["turn"] = state["players"][0]
        self.ctx.post("start", {
            "players": list(state["players"]),
            "range": [state["min"], state["max"]],
            "max_rounds": state["max_rounds"],
            "commitment": state["commitment"],
        })
        self.announce_turn(state)

    def announce_turn(self, state):
        self.ctx.post("turn", {
            "player": state["turn"],
            "round": state["round"],
            "text": f"{state['turn']}, it is your turn (round {state['round']} of {state['max_rounds']}): guess a number between {state['min']} and {state['max']}.",
        })

    def refuse(self, player, reason, state):
        body = {"player": player, "reason": reason}
        if state.get("turn"):
            body["turn"] = state["turn"]
        self.ctx.post("refused", body, to=[player])

    def reveal(self, state):
        state["phase"] = "over"
        state["turn"] = None
        preimage = f"{state['target']}|{state['nonce']}"
        self.ctx.post("reveal", {
            "target": state["target"],
            "nonce": state["nonce"],
            "preimage": preimage,
            "commitment": state["commitment"],
            "winner": state.get("winner"),
            "guesses": state.get("guess_count", len(state["history"])),
            "check": "sha256(preimage as UTF-8) must equal commitment",
        })

    def vacant(self, label):
        """True when the seat has no holder now (kicked, never filled)."""
        for seat in self.ctx.players:
            if seat["label"] == label:
                return not seat.get("filled")
        return True

    def skip_vacated(self, state):
        """Pass the turn of an emptied seat on, so that a kicked player cannot stall the game."""
        if state["phase"] == "playing" and self.vacant(state["turn"]):
            self.advance_turn(state)

    def advance_turn(self, state):
        """Give the turn to the next seated player whose seat is held, then
        announce it, or reveal when the rounds are used up."""
        for attempt in range(max(1, len(state["players"]))):
            self.next_turn(state)
            if state["round"] > state["max_rounds"] or not self.vacant(state["turn"]):
                break
        if state["round"] > state["max_rounds"]:
            state["round"] = state["max_rounds"]
            self.reveal(state)
            return
        self.announce_turn(state)

    def next_turn(self, state):
        """Advance to the next seated player; a wrap-around starts a new round."""
        players = state["players"]
        current = players.index(state["turn"]) if state["turn"] in players else -1
        following = current + 1
        if following >= len(players):
            following = 0
            state["round"] += 1
        state["turn"] = players[following]

    # -- hooks ----------------------------------------------------------

    def on_init(self):
        low, high, rounds, autostart = self.settings()
        target = low + secrets.randbelow(high - low + 1)
        nonce = secrets.token_hex(16)
        state = {
            "min": low,
            "max": high,
            "max_rounds": rounds,
            "autostart": autostart,
            "target": target,
            "nonce": nonce,
            "commitment": commitment_of(target, nonce),
            "phase": "waiting",
            "players": [],
            "turn": None,
            "round": 0,
            "history": [],
            "winner": None,
        }
        self.ctx.post("commit", {
            "commitment": state["commitment"],
            "scheme": "sha256 of the UTF-8 string \"<target>|<nonce>\" (target in decimal, nonce as 32 hex digits), hex-encoded",
            "range": [low, high],
            "max_rounds": rounds,
            "text": f"I have picked a number between {low} and {high} and committed to it: sha256 = {state['commitment']}. Players guess in seat order; say \"guess N\" on your turn.",
        })
        for player in self.ctx.players:
            if player.get("filled"):
                self.add_player(state, player["label"])
        if state["players"] and autostart and self.all_seated(state):
            self.start(state)
        self.ctx.set_state(state)

    def on_join(self, player):
        state = self.ctx.get_state()
        if not state:
            return
        self.add_player(state, player)
        # `on_init` already seats players whose seats were filled before it
        # ran, so "rejoined" means: this seat joined before (a rejoin token
        # moved it, or it was kicked and refilled).
        joins = state.setdefault("joins", [])
        rejoined = player in joins
        if not rejoined:
            joins.append(player)
        self.ctx.post("joined", {"player": player, "rejoined": rejoined, "players": list(state["players"])})
        if state["phase"] == "waiting" and state["autostart"] and self.all_seated(state):
            self.start(state)
        elif state["phase"] == "playing" and state["turn"] == player:
            self.announce_turn(state)
        self.ctx.set_state(state)

    def on_message(self, msg):
        state = self.ctx.get_state()
        if not state:
            return
        sender = msg.get("sender")
        body = msg.get("body")
        if sender not in self.seat_labels():
            return
        self.add_player(state, sender)
        self.skip_vacated(state)

        if is_command(body, "status"):
            self.ctx.post("status", {
                "phase": state["phase"],
                "players": list(state["players"]),
                "turn": state["turn"],
                "round": state["round"],
                "max_rounds": state["max_rounds"],
                "range": [state["min"], state["max"]],
                "commitment": state["commitment"],
                "history": list(state["history"]),
            })
            self.ctx.set_state(state)
            return

        if is_command(body, "start"):
            if state["phase"] == "waiting":
                self.start(state)
            else:
                self.refuse(sender, f"the game is already {state['phase']}", state)
            self.ctx.set_state(state)
            return

        guess = parse_guess(body)
        if guess is None:
            self.ctx.set_state(state)
            return
        if state["phase"] == "waiting":
            self.refuse(sender, "the game has not started: waiting for every seat to fill, or say \"start\"", state)
        elif state["phase"] == "over":
            self.refuse(sender, "the game is over", state)
        elif sender != state["turn"]:
            self.refuse(sender, f"it is {state['turn']}'s turn, not yours", state)
        elif guess < state["min"] or guess > state["max"]:
            self.refuse(sender, f"guess between {state['min']} and {state['max']}", state)
        else:
            self.play(state, sender, guess, msg.get("seq"))
        self.ctx.set_state(state)

    def play(self, state, player, guess, seq):
        if guess == state["target"]:
            hint = "correct"
        elif guess < state["target"]:
            hint = "higher"
        else:
            hint = "lower"
        state["history"].append({"seq": seq, "player": player, "guess": guess, "hint": hint, "round": state["round"]})
        # The transcript has every hint; the state keeps the recent ones only,
        # so that a long game stays under the state size limit.
        state["history"] = state["history"][-HISTORY_KEPT:]
        state["guess_count"] = state.get("guess_count", 0) + 1
        self.ctx.post("hint", {
            "player": player,
            "guess": guess,
            "hint": hint,
            "round": state["round"],
            "text": f"{player} guessed {guess}: " + ("correct!" if hint == "correct" else f"the number is {hint}."),
        })
        if hint == "correct":
            state["winner"] = player
            self.reveal(state)
            return
        self.advance_turn(state)
