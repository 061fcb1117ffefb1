"""A hook with `entropy` and `now` is a function of its job: the same job
twice gives the same outcome, byte for byte, whatever randomness and clock
APIs the bot uses; another entropy gives another outcome; the generator is
the documented one (checked against values computed here with `hmac`); a
job without the fields keeps the OS's randomness and clock. All through the
real entry point, started as the runner starts it (hxrun), except the pure
parsing checks at the top.
"""

import datetime
import json
import os
import random
import subprocess
import time

import pytest

import hx_determinism
from hxrun import BASE_LIMITS, HERE, PYTHON, block, error, job, python_hash_seed, run, run_raw

VECTORS = os.path.join(HERE, "..", "..", "..", "protocol", "tests", "determinism-vectors.json")
with open(VECTORS, encoding="utf-8") as _f:
    V = json.load(_f)

E1 = "5e" * 32
E2 = "a7" * 32
NOW = "2026-11-21T11:31:29.123Z"
NOW_MS = 1795260689123
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def stream(entropy_hex, label, n):
    out = b""
    i = 0
    while len(out) < n:
        out += block(entropy_hex, label, i)
        i += 1
    return out[:n]


def seed(entropy_hex, n):
    """The n-th Mersenne Twister seed drawn in a hook."""
    return int.from_bytes(block(entropy_hex, "random.seed", n), "big")


def ok(outcome):
    assert outcome["status"] == "ok", outcome
    return outcome


def same_outcome(a, b):
    """The outcome but its timings, as bytes."""
    strip = lambda o: json.dumps({k: v for k, v in o.items() if k != "timings"}, sort_keys=True)  # noqa: E731
    return strip(a) == strip(b)


# ------------------------------------------------------------ the generator


def test_the_shared_vectors_are_hmac_sha256_in_counter_mode():
    # Recomputed with the standard library alone: the file the crate and
    # the harness are both checked against says what the spec says.
    for case in V["generator"]:
        e = case["entropy"]
        for label, want in case["streams"].items():
            assert stream(e, label, len(want) // 2).hex() == want, label
        assert python_hash_seed(e) == case["python_hash_seed"]
    for case in V["hook_entropy"]:
        assert block(case["bot_seed"], "hook", case["seq"]).hex() == case["entropy"]


def test_the_harness_generator_matches_the_vectors():
    for case in V["generator"]:
        blk = hx_determinism.keyed(bytes.fromhex(case["entropy"]))
        for label, want in case["streams"].items():
            read = hx_determinism.reader(blk, label.encode())
            # Reads of odd sizes, across block bounds, concatenate to the stream.
            size = len(want) // 2
            sizes = [0, 5, 26, 2, size - 33] if size > 33 else [size]
            got = b"".join(read(n) for n in sizes)
            assert got.hex() == want, label
        assert hx_determinism.python_hash_seed(blk) == case["python_hash_seed"]


def test_fields_parse_exactly_as_the_crate_parses_them():
    for case in V["now"]["valid"]:
        assert hx_determinism.parse_now(case["text"]) == case["unix_ms"], case
    for bad in V["now"]["invalid"]:
        with pytest.raises(hx_determinism.BadJob):
            hx_determinism.parse_now(bad)
    assert hx_determinism.parse_entropy("0f" * 32) == b"\x0f" * 32
    for bad in V["entropy_invalid"]:
        with pytest.raises(hx_determinism.BadJob):
            hx_determinism.parse_entropy(bad)


def test_every_day_of_four_centuries_parses_to_its_unix_time():
    day = datetime.date(1970, 1, 1)
    while day.year < 2370:
        text = f"{day.isoformat()}T12:34:56.789Z"
        since = datetime.datetime.fromisoformat(text[:-1] + "+00:00") - EPOCH
        want = since // datetime.timedelta(milliseconds=1)
        assert hx_determinism.parse_now(text) == want, text
        day += datetime.timedelta(days=1)


# ------------------------------------------------------------ a bot using everything

EVERYTHING = '''
import random, secrets, time, datetime, statistics
import email.utils
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

NAMES = "alice bob carol dave erin frank grace heidi ivan judy mallory niaj olivia peggy rupert sybil trent victor walter".split()

class Later(datetime.datetime):
    pass

class Bot:
    def __init__(self, ctx, params):
        self.ctx = ctx

    def on_init(self):
        deck = [r + s for s in "SHDC" for r in "A23456789TJQK"]
        random.shuffle(deck)            # like blackjack.py's deck
        r = random.Random()
        r2 = random.Random(None)
        r2.seed()
        random.seed()
        sr = random.SystemRandom()
        hand = list(range(8))
        sr.shuffle(hand)
        cs = secrets.SystemRandom()
        mixed = MIMEMultipart()
        mixed.attach(MIMEText("hi"))
        tz = datetime.timezone(datetime.timedelta(hours=2))
        out = {
            "deck": deck,
            "module": [random.random(), random.randint(1, 100), random.choice(NAMES),
                       random.sample(NAMES, 3), random.uniform(0, 1), random.gauss(0, 1),
                       random.getrandbits(70), random.randbytes(5).hex(), random.randrange(7),
                       random.choices(NAMES, k=2), random.triangular(), random.betavariate(2, 3)],
            "instances": [r.random(), r2.random()],
            "system": [sr.random(), sr.randint(1, 6), sr.getrandbits(33), sr.randbytes(4).hex(), hand],
            "secrets": [secrets.token_hex(16), secrets.token_bytes(8).hex(), secrets.token_urlsafe(9),
                        secrets.randbelow(1000), secrets.choice(NAMES), secrets.randbits(12), cs.random()],
            "statistics": statistics.NormalDist(0, 1).samples(3),
            "boundary": mixed.as_string().splitlines()[0],
            "sets": [list(set(NAMES)), list(frozenset(NAMES[:7])), list({n: 1 for n in set(NAMES)}),
                     [hash("x") % 1000003, hash(b"y") % 1000003]],
            "time": [time.time(), time.time_ns(), list(time.localtime()), list(time.gmtime()),
                     time.ctime(), time.asctime(), time.strftime("%Y-%m-%d %H:%M:%S %j")],
            "datetime": [str(datetime.datetime.now()), str(datetime.datetime.now(tz)),
                         str(datetime.datetime.utcnow()), str(datetime.datetime.today()),
                         str(datetime.date.today()), str(Later.now()), type(Later.now()).__name__,
                         str(datetime.datetime(2000, 1, 1).today()),
                         str(getattr(datetime.datetime, "now")(datetime.timezone.utc))],
            "email": [str(email.utils.localtime()), email.utils.formatdate(),
                      email.utils.formatdate(localtime=True)],
        }
        print("printed", out["secrets"][0])
        self.ctx.post("everything", out)
        self.ctx.set_state({"deck": deck[:5], "token": out["secrets"][0]})
'''


def everything(entropy=E1, now=NOW):
    extra = {}
    if entropy is not None:
        extra["entropy"] = entropy
    if now is not None:
        extra["now"] = now
    return ok(run(EVERYTHING, **extra))


def test_the_same_job_twice_gives_byte_identical_outcomes():
    a, b = everything(), everything()
    assert same_outcome(a, b)
    assert a["logs"].startswith("printed ")


def test_another_entropy_gives_another_outcome_in_everything_random():
    a = everything(E1)["posts"][0]["body"]
    b = everything(E2)["posts"][0]["body"]
    for key in ("deck", "module", "instances", "system", "secrets", "statistics", "boundary"):
        assert a[key] != b[key], key
    # Sets of strings iterate in hash order, which the hash seed decides.
    assert a["sets"] != b["sets"]
    # The clock is the job's `now`, not the entropy's.
    assert a["time"] == b["time"] and a["datetime"] == b["datetime"] and a["email"] == b["email"]


def test_another_now_gives_another_time_and_the_same_randomness():
    a = everything(now=NOW)["posts"][0]["body"]
    b = everything(now="2030-01-02T03:04:05.006Z")["posts"][0]["body"]
    assert a["deck"] == b["deck"] and a["secrets"] == b["secrets"]
    assert a["time"] != b["time"] and a["datetime"] != b["datetime"]
    assert b["time"][0] == 1893553445.006


GENERATOR = """
import secrets
import random

class Bot:
    def __init__(self, ctx, params):
        self.ctx = ctx

    def on_init(self):
        deck = [r + s for s in "SHDC" for r in "A23456789TJQK"]
        random.shuffle(deck)
        out = {"token_bytes": secrets.token_bytes(40).hex(), "token_hex": secrets.token_hex(3),
               "system": random.SystemRandom().random(), "deck": deck, "module": random.random(),
               "instance": random.Random().random(), "unseeded": random.Random(None).random()}
        random.seed()
        out["reseeded"] = random.random()
        self.ctx.post("g", out)
"""


def test_the_randomness_is_the_documented_generator():
    body = ok(run(GENERATOR, entropy=E1))["posts"][0]["body"]
    # `secrets` and SystemRandom read the stream "urandom" in call order.
    urandom = stream(E1, "urandom", 50)
    assert body["token_bytes"] == urandom[:40].hex()
    assert body["token_hex"] == urandom[40:43].hex()
    assert body["system"] == (int.from_bytes(urandom[43:50], "big") >> 3) * 2**-53  # CPython's SystemRandom.random
    # The n-th Mersenne Twister seeded "from the OS" gets block n of
    # "random.seed": the module's own generator (when `secrets` imported
    # `random`) the first, then Random(), Random(None), random.seed().
    module = random.Random(seed(E1, 0))
    deck = [r + s for s in "SHDC" for r in "A23456789TJQK"]
    module.shuffle(deck)
    assert body["deck"] == deck
    assert body["module"] == module.random()
    assert body["instance"] == random.Random(seed(E1, 1)).random()
    assert body["unseeded"] == random.Random(seed(E1, 2)).random()
    assert body["reseeded"] == random.Random(seed(E1, 3)).random()


def test_the_hash_seed_is_the_one_the_entropy_gives():
    body = everything()["posts"][0]["body"]
    probe = 'print(hash("x") % 1000003, hash(b"y") % 1000003)'
    p = subprocess.run(
        [PYTHON, "-S", "-c", probe],
        env={"PYTHONHASHSEED": str(python_hash_seed(E1))},
        capture_output=True,
        text=True,
        check=True,
    )
    assert body["sets"][3] == [int(x) for x in p.stdout.split()]


def test_a_job_with_a_hash_seed_keeps_its_entropy_for_randomness_and_its_seed_for_hashes():
    # One bot, two hooks: one hash seed (the bot's), two entropies.
    probe = 'print(hash("x") % 1000003, hash(b"y") % 1000003)'
    hashes = subprocess.run(
        [PYTHON, "-S", "-c", probe],
        env={"PYTHONHASHSEED": "4000000000"},
        capture_output=True,
        text=True,
        check=True,
    )
    a = ok(run(EVERYTHING, entropy=E1, now=NOW, hash_seed=4000000000))["posts"][0]["body"]
    b = ok(run(EVERYTHING, entropy=E2, now=NOW, hash_seed=4000000000))["posts"][0]["body"]
    assert a["sets"][3] == b["sets"][3] == [int(x) for x in hashes.stdout.split()]
    assert a["sets"] == b["sets"]
    for key in ("deck", "module", "instances", "system", "secrets"):
        assert a[key] != b[key], key
    # The randomness is the entropy's, whatever the hash seed.
    plain = everything(E1)["posts"][0]["body"]
    for key in ("deck", "module", "instances", "system", "secrets"):
        assert a[key] == plain[key], key


def test_a_hash_seed_that_did_not_take_effect_or_is_malformed_is_refused():
    j = json.dumps(job(EVERYTHING, entropy=E1, now=NOW, hash_seed=7)).encode()
    # The seed the entropy alone would give is not the job's.
    outcome, _out, err, rc = run_raw(j, hash_seed=python_hash_seed(E1))
    assert (outcome, rc) == (None, 2) and b"has hash_seed" in err and b"absent or different" in err, err
    outcome, _out, err, rc = run_raw(j)
    assert (outcome, rc) == (None, 2) and b"PYTHONHASHSEED ignored" in err, err
    outcome, _out, err, rc = run_raw(j, hash_seed=7)
    assert rc == 0 and outcome["status"] == "ok", (outcome, err)
    for bad in (-1, 2**32, "7", True, 1.5):
        j = json.dumps(job(EVERYTHING, entropy=E1, hash_seed=bad)).encode()
        outcome, _out, err, rc = run_raw(j, hash_seed=7)
        assert (outcome, rc) == (None, 2) and b"hash_seed must be" in err, (bad, err)


def local_views(ms):
    """Local-time renderings of the instant `ms`, computed in the harness's
    environment (an empty one: the machine's zone; in the sandbox, which has
    no zone data, that is UTC)."""
    code = f"""
import datetime, json, time
s = {ms} // 1000
local = time.localtime(s)
instant = datetime.datetime.fromtimestamp({ms} / 1000, datetime.timezone.utc)
print(json.dumps({{"localtime": list(local), "ctime": time.ctime(s),
                  "strftime": time.strftime("%Y-%m-%d %H:%M:%S %j", local),
                  "naive": str(instant.astimezone().replace(tzinfo=None)),
                  "aware": str(instant.astimezone()), "date": str(instant.astimezone().date())}}))
"""
    p = subprocess.run([PYTHON, "-I", "-S", "-c", code], env={}, capture_output=True, text=True, check=True)
    return json.loads(p.stdout)


def test_the_clock_is_the_triggering_messages_time():
    body = everything()["posts"][0]["body"]
    assert body["time"][:2] == [NOW_MS / 1000, NOW_MS * 1_000_000]
    local = local_views(NOW_MS)
    assert body["time"][2] == local["localtime"]
    assert body["time"][3] == list(time.gmtime(NOW_MS // 1000))
    assert body["time"][4] == body["time"][5] == local["ctime"]
    assert body["time"][6] == local["strftime"]
    naive = local["naive"]
    assert body["datetime"] == [
        naive,
        "2026-11-21 13:31:29.123000+02:00",
        "2026-11-21 11:31:29.123000",  # utcnow()
        naive,
        local["date"],
        naive,
        "Later",  # a subclass's now() makes the subclass
        naive,  # today() through an instance
        "2026-11-21 11:31:29.123000+00:00",
    ]
    assert body["email"][0] == local["aware"]
    assert body["email"][1] == "Sat, 21 Nov 2026 11:31:29 -0000"


def test_entropy_alone_fixes_randomness_and_leaves_the_real_clock():
    a, b = everything(now=None), everything(now=None)
    ta, tb = a["posts"][0]["body"], b["posts"][0]["body"]
    assert ta["deck"] == tb["deck"] and ta["secrets"] == tb["secrets"]
    assert abs(ta["time"][0] - time.time()) < 120


def test_now_alone_fixes_the_clock_and_leaves_the_os_randomness():
    a = everything(entropy=None)["posts"][0]["body"]
    b = everything(entropy=None)["posts"][0]["body"]
    assert a["time"] == b["time"] and a["datetime"] == b["datetime"]
    assert a["secrets"][0] != b["secrets"][0] and a["deck"] != b["deck"]


def test_without_the_fields_the_hook_keeps_the_os_randomness_and_the_real_clock():
    a = everything(entropy=None, now=None)["posts"][0]["body"]
    b = everything(entropy=None, now=None)["posts"][0]["body"]
    assert a["secrets"][0] != b["secrets"][0]
    assert a["deck"] != b["deck"]
    assert abs(a["time"][0] - time.time()) < 120
    assert a["datetime"][0] != b["datetime"][0]


# ------------------------------------------------------------ the clock guard

CLOCKS = '''
import datetime

class Mine(datetime.date):
    def today(self):
        return "mine"

class Shifted(datetime.datetime):
    @classmethod
    def now(cls, tz=None):
        return super().now(tz) + datetime.timedelta(days=1)

class Thing:
    def __init__(self):
        self.now = 5
        self.today = "t"

class Bot:
    def __init__(self, ctx, params):
        self.ctx = ctx

    def on_init(self):
        t = Thing()
        t.now = t.now + 1
        from datetime import datetime as D, date
        self.ctx.post("c", {
            "own": [t.now, t.today, getattr(t, "now"), hasattr(t, "today")],
            "override": Mine(2000, 1, 1).today(),
            "super": str(Shifted.now()),
            "alias": [str(D.now()), str(date.today()), str(type(D.now()).now())],
            "missing": getattr(3, "now", "none"),
        })
'''


def test_the_clock_guard_answers_datetimes_methods_and_leaves_everything_else_alone():
    body = ok(run(CLOCKS, entropy=E1, now=NOW))["posts"][0]["body"]
    assert body["own"] == [6, "t", 6, True]
    assert body["override"] == "mine"
    naive = datetime.datetime.fromisoformat(local_views(NOW_MS)["naive"])
    assert body["super"] == str(naive + datetime.timedelta(days=1))
    assert body["alias"] == [str(naive), str(naive.date()), str(naive)]
    assert body["missing"] == "none"
    # The same bot without a hook time reads the real clock.
    real = ok(run(CLOCKS))["posts"][0]["body"]
    real_today = datetime.date.fromisoformat(real["alias"][1])
    assert abs(real_today - datetime.date.today()) <= datetime.timedelta(days=1)


@pytest.mark.parametrize(
    "code, line, needle",
    [
        # A match keyword pattern reads the attribute itself, past the guard.
        ("match datetime.datetime:\n    case type(now=f):\n        pass\n", 3, "Class pattern keyword 'now'"),
        ("match datetime.date(2000, 1, 1):\n    case datetime.date(today=f):\n        pass\n", 3, "'today'"),
        # `x.now += y` reads `x.now` unguarded, and y.__radd__ gets it.
        ("datetime.datetime.utcnow += 1\n", 2, "Augmented assignment to '.utcnow'"),
    ],
)
def test_routes_to_the_real_clock_past_the_guard_are_refused(code, line, needle):
    source = "import datetime\n" + code + "class Bot:\n    def on_init(self):\n        pass\n"
    err = error(run(source, "inspect"))
    assert err["kind"] == "policy" and err["line"] == line, err
    assert needle in err["message"], err


# ------------------------------------------------------------ bad jobs


def test_a_malformed_field_is_a_bad_job_and_the_bot_never_runs():
    for extra in ({"entropy": "AB" * 32}, {"entropy": "00" * 31}, {"now": "2026-11-21T11:31:29Z"},
                  {"now": 1795260689123}):
        j = job(EVERYTHING, **extra)
        seed_ = python_hash_seed("00" * 32)
        outcome, _out, err, rc = run_raw(json.dumps(j).encode(), hash_seed=seed_)
        assert (outcome, rc) == (None, 2), (extra, outcome, err)
        assert b"harness: bad job:" in err, err


def test_an_interpreter_that_ignores_the_hash_seed_is_refused():
    # Started as the runner starts hooks without entropy (-I ignores the
    # environment), or with another seed: string hashes would not be the
    # ones the entropy gives, so the harness refuses to run the bot.
    j = json.dumps(job(EVERYTHING, entropy=E1, now=NOW)).encode()
    outcome, _out, err, rc = run_raw(j)
    assert (outcome, rc) == (None, 2) and b"PYTHONHASHSEED ignored" in err, err
    outcome, _out, err, rc = run_raw(j, hash_seed=python_hash_seed(E2))
    assert (outcome, rc) == (None, 2) and b"absent or different" in err, err


def test_inspect_ignores_the_fields():
    out = run(EVERYTHING, "inspect", entropy="not hex", now="never")
    assert out["status"] == "ok", out


def test_limits_still_come_from_the_job():
    # The fields change nothing else: a post over the limit is refused.
    src = "class Bot:\n    def __init__(self, ctx, params):\n        self.ctx = ctx\n"
    src += "    def on_init(self):\n        self.ctx.post('x', 'y' * 100)\n"
    err = error(run(src, entropy=E1, now=NOW, limits={**BASE_LIMITS, "max_post_bytes": 10}))
    assert err["kind"] == "limit", err


def test_install_also_catches_random_and_os_imported_before_it():
    # Today's harness imports neither before the hook; should that change,
    # the module generator is reseeded from the entropy and `os`/`random`
    # read the stream all the same.
    harness = os.path.dirname(HERE)
    code = f"""
import sys, json
sys.path.insert(0, {harness!r})
import os, random, posix
import hx_determinism
hx_determinism.install({{"entropy": {E1!r}}})
print(json.dumps([random.random(), os.urandom(4).hex(), random.SystemRandom().randbytes(2).hex(),
                  os.urandom is posix.urandom]))
"""
    p = subprocess.run(
        [PYTHON, "-s", "-P", "-S", "-c", code],
        env={"PYTHONHASHSEED": str(python_hash_seed(E1))},
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr
    urandom = stream(E1, "urandom", 6)
    assert json.loads(p.stdout) == [random.Random(seed(E1, 0)).random(), urandom[:4].hex(), urandom[4:6].hex(), True]
