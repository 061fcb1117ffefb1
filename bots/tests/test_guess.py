"""GuessBot: commitment before play, turn enforcement, rejoin, reveal."""

import hashlib

from conftest import Table, of_type


def start_game(params=None):
    t = Table("guess", ["alice", "bob"], params=params or {"min": 1, "max": 100, "max_rounds": 5})
    init_posts = t.init()
    t.join("alice")
    t.join("bob")
    return t, init_posts


def find_target_by_bisection(t, limit=60):
    """Play the game to the end, alternating turns as announced."""
    low, high = 1, 100
    for step in range(limit):
        turn = [d for k, d, to in t.bot_posts("turn")][-1]["player"]
        guess = (low + high) // 2
        posts = t.say(turn, f"guess {guess}")
        hint = of_type(posts, "hint")[0]["body"]["hint"]
        if hint == "correct":
            return turn, guess
        if hint == "higher":
            low = guess + 1
        else:
            high = guess - 1
    raise AssertionError("game did not end")


def test_commitment_is_posted_at_init_before_any_guess_and_matches_reveal():
    t, init_posts = start_game({"min": 1, "max": 100, "max_rounds": 20})
    assert init_posts[0]["type"] == "commit"
    commitment = init_posts[0]["body"]["commitment"]
    assert len(commitment) == 64
    commit_seq = [m["seq"] for m in t.transcript if m["kind"] == "bot" and m["body"]["type"] == "commit"][0]
    winner, guess = find_target_by_bisection(t)
    guesses = [m for m in t.transcript if m["kind"] == "user"]
    assert guesses and all(g["seq"] > commit_seq for g in guesses)
    reveals = [d for k, d, to in t.bot_posts("reveal")]
    assert len(reveals) == 1
    reveal = reveals[0]
    # Verify from the transcript alone: the hash of "<target>|<nonce>" is what was committed.
    preimage = f"{reveal['target']}|{reveal['nonce']}"
    assert hashlib.sha256(preimage.encode()).hexdigest() == commitment
    assert reveal["target"] == guess
    assert reveal["winner"] == winner
    # Every hint was truthful with respect to the revealed target.
    for k, d, to in t.bot_posts("hint"):
        expected = "correct" if d["guess"] == reveal["target"] else ("higher" if d["guess"] < reveal["target"] else "lower")
        assert d["hint"] == expected


def test_targets_differ_between_games():
    commitments = {start_game()[1][0]["body"]["commitment"] for i in range(3)}
    assert len(commitments) == 3


def test_announced_player_is_the_one_accepted_and_others_are_refused():
    t, init_posts = start_game()
    turn = [d for k, d, to in t.bot_posts("turn")][-1]["player"]
    assert turn == "alice"  # seat order
    # bob guesses out of turn: refused privately, no hint, turn unchanged.
    posts = t.say("bob", "guess 50")
    assert of_type(posts, "hint") == []
    refused = of_type(posts, "refused")
    assert refused and refused[0]["to"] == ["bob"] and refused[0]["body"]["turn"] == "alice"
    assert t.state["turn"] == "alice"
    # alice, as announced, is accepted (object form), then the turn passes to bob.
    posts = t.say("alice", {"guess": 50})
    hints = of_type(posts, "hint")
    if hints[0]["body"]["hint"] == "correct":
        return
    assert hints[0]["body"]["player"] == "alice"
    turns = of_type(posts, "turn")
    assert turns[0]["body"]["player"] == "bob"
    # alice again: refused now, bob is the one accepted.
    posts = t.say("alice", "guess 51")
    assert of_type(posts, "hint") == [] and of_type(posts, "refused")
    posts = t.say("bob", "51")
    assert of_type(posts, "hint")[0]["body"]["player"] == "bob"


def test_rejoin_does_not_duplicate_player():
    t, init_posts = start_game()
    posts = t.join("alice")
    joined = of_type(posts, "joined")[0]["body"]
    assert joined["rejoined"] is True
    assert joined["players"] == ["alice", "bob"]
    assert t.state["players"] == ["alice", "bob"]
    # the rotation still alternates between exactly two players
    seen = []
    for i in range(4):
        turn = t.state["turn"]
        seen.append(turn)
        guess = 1 + i if 1 + i != t.state["target"] else 50 + i  # never end the game here
        t.say(turn, f"guess {guess}")
        if t.state["phase"] == "over":
            break
    assert seen[:2] == ["alice", "bob"]


def test_max_rounds_reveals_without_winner():
    t, init_posts = start_game({"min": 1, "max": 1000, "max_rounds": 1})
    for i in range(2):
        turn = t.state["turn"]
        t.say(turn, "guess 1000" if t.state["target"] != 1000 else "guess 999")
    reveal = [d for k, d, to in t.bot_posts("reveal")]
    assert len(reveal) == 1 and reveal[0]["winner"] is None
    assert t.state["phase"] == "over"
    posts = t.say("alice", "guess 5")
    assert of_type(posts, "refused")


def test_out_of_range_and_non_guess_messages():
    t, init_posts = start_game()
    posts = t.say("alice", "guess 500")
    assert of_type(posts, "refused") and t.state["turn"] == "alice"
    posts = t.say("alice", "hello there")
    assert posts == []
    posts = t.say("alice", "status")
    assert of_type(posts, "status")[0]["body"]["turn"] == "alice"
    assert "target" not in of_type(posts, "status")[0]["body"]


def test_waits_for_all_seats_unless_started():
    t = Table("guess", ["alice", "bob", "carol"])
    t.init()
    t.join("alice")
    posts = t.say("alice", "guess 3")
    assert of_type(posts, "refused")
    posts = t.say("alice", "start")
    assert of_type(posts, "turn")[0]["body"]["player"] == "alice"
    t.say("alice", "guess 1" if t.state["target"] != 1 else "guess 2")
    assert t.state["turn"] == "alice"  # only alice is seated
    t.join("carol")
    assert t.state["players"] == ["alice", "carol"]


def test_seat_filled_before_init_is_seated_once_and_not_called_a_rejoin():
    """The creator's seat (join_as) is filled before on_init runs; its on_join follows."""
    t = Table("guess", ["alice", "bob"])
    t.players[0]["filled"] = True
    t.init()
    assert t.state["players"] == ["alice"]
    posts = t.join("alice")
    assert of_type(posts, "joined")[0]["body"]["rejoined"] is False
    assert t.state["players"] == ["alice"]
    t.join("bob")
    assert t.state["players"] == ["alice", "bob"] and t.state["turn"] == "alice"
    assert of_type(t.join("bob"), "joined")[0]["body"]["rejoined"] is True
    assert t.state["players"] == ["alice", "bob"]


def test_a_kicked_players_turn_passes_on():
    t, init_posts = start_game()
    assert t.state["turn"] == "alice"
    t.players[0]["filled"] = False  # alice's seat was emptied (update_channel kick)
    posts = t.say("bob", "guess 1" if t.state["target"] != 1 else "guess 2")
    assert of_type(posts, "turn")[0]["body"]["player"] == "bob"
    assert of_type(posts, "hint")[0]["body"]["player"] == "bob"
    assert t.state["turn"] == "bob"  # alice is skipped again


def test_long_games_keep_the_state_bounded():
    t, init_posts = start_game({"min": 1, "max": 1000000, "max_rounds": 200})
    target = t.state["target"]
    wrong = 1 if target != 1 else 2
    for i in range(120):
        t.say(t.state["turn"], f"guess {wrong}")
    assert t.state["guess_count"] == 120 and len(t.state["history"]) == 100
    assert of_type(t.say("alice", "status"), "status")[0]["body"]["phase"] == "playing"
