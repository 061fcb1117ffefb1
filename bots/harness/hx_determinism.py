"""What makes a hook a function of its inputs: the job's `entropy`, `now`
and `hash_seed`.

A referee can only be checked after the fact if running its code again on
the same inputs gives the same posts and state. Two inputs are not in the
transcript: the randomness a bot draws and the time it reads. When the job
carries them (PROTOCOL.md, "Determinism"), `install` makes them the only
ones, before any bot code runs:

- `entropy` (32 bytes) keys one generator, HMAC-SHA256 in counter mode
  (`block(label, i) = HMAC-SHA256(entropy, label || 0x00 || u64_be(i))`),
  the same as the `hook-protocol` crate's. `os.urandom` reads the stream
  "urandom", and with it `random.SystemRandom` and `secrets`; every
  Mersenne Twister that would be seeded from the OS (the `random` module's
  own generator when `random` is imported, `random.Random()`,
  `random.seed()`, down to `_random.Random`'s own `seed` and `__init__`)
  is seeded with the next block of "random.seed".
- `hash_seed` seeds string hashes: the runner passes it as
  `PYTHONHASHSEED`. The daemon sets it per bot (from the bot's seed), so
  that one bot's hooks can run in interpreters started before the hook was
  known; a job with entropy and no `hash_seed` takes it from block 0 of
  "pythonhashseed". The interpreter reads it at start-up, so `install` can
  only check it, and refuses the job if the seed did not take effect.
- `now` (the triggering message's `ts`) is the wall clock: `time.time()`,
  `time_ns()`, and `localtime()`, `gmtime()`, `ctime()`, `asctime()`,
  `strftime()` without a time argument read it, and the clock returned here
  gives the language layer `datetime.now()`/`utcnow()`/`today()` and
  `date.today()` (C methods of immutable types: the checker routes every
  read of those attribute names through the layer's guard). The clocks that
  measure (`monotonic`, `perf_counter`, `process_time`, `thread_time`) and
  `sleep` stay real: they bound work, and a made-up clock would either
  never advance (a budget loop would spin to the CPU limit) or advance by an
  invented step (a budget that no longer bounds real work).

The patches go on the real modules, not only on the facades, because
library code draws on the bot's behalf too: `email` makes boundaries and
message ids from `random` and `time.time()`, `statistics` samples through
`random`. What stays outside (`ssl`'s own generator, identity hashes,
addresses) is listed in PROTOCOL.md.

The key and the counters live in closures of the functions installed;
nothing bot code can reach leads to them. Without the fields nothing here is
imported: the hook runs on the OS's randomness and clock, as before.
"""

import posix
import sys
import time

from hx_protocol import BadJob

URANDOM = b"urandom"
RANDOM_SEED = b"random.seed"
PYTHON_HASH_SEED = b"pythonhashseed"

_HEX = frozenset("0123456789abcdef")
_DIGITS = frozenset("0123456789")
# The form of `now`: "d" stands for an ASCII digit, anything else for itself.
_NOW_SHAPE = "dddd-dd-ddTdd:dd:dd.dddZ"


# Looked up once per process: a fork template's children then find it
# without a failing import of `_sha2` (which searches the whole path) per hook.
try:
    from _sha2 import sha256 as _SHA256  # Python 3.12+
except ImportError:
    from _sha256 import sha256 as _SHA256  # Python 3.11


def keyed(key):
    """`block(label, i)`: HMAC-SHA256 (RFC 2104) under `key` (32 bytes) of
    `label || 0x00 || u64_be(i)`. The padded key's two hash states are
    computed once and copied per block."""
    sha256 = _SHA256
    padded = key.ljust(64, b"\0")
    inner = sha256(bytes(b ^ 0x36 for b in padded))
    outer = sha256(bytes(b ^ 0x5C for b in padded))

    def block(label, i):
        h = inner.copy()
        h.update(label + b"\0" + i.to_bytes(8, "big"))
        o = outer.copy()
        o.update(h.digest())
        return o.digest()

    return block


def reader(block, label):
    """`read(n)`: the next `n` bytes of stream `label`, in call order."""
    from _operator import index

    buffered = [b""]
    next_block = [0]

    def urandom(size, /):
        """os.urandom: the next bytes of the hook's "urandom" stream."""
        size = index(size)
        if size < 0:
            raise ValueError("negative argument not allowed")
        have = buffered[0]
        if len(have) < size:
            parts = [have]
            got = len(have)
            while got < size:
                parts.append(block(label, next_block[0]))
                next_block[0] += 1
                got += 32
            have = b"".join(parts)
        buffered[0] = have[size:]
        return have[:size]

    return urandom


# ------------------------------------------------------------ the fields


def parse_entropy(value):
    """The 32 bytes of a job's `entropy`: exactly 64 lowercase hex digits."""
    if type(value) is not str or len(value) != 64 or not _HEX.issuperset(value):
        raise BadJob("entropy must be 64 lowercase hex digits (32 bytes)")
    return bytes.fromhex(value)


def _days_from_civil(y, m, d):
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * ((m + 9) % 12) + 2) // 5 + d - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


def parse_now(value):
    """Unix milliseconds of a job's `now`: `YYYY-MM-DDTHH:MM:SS.mmmZ`, a
    valid UTC instant from 1970 to 9999 (the transcript's `ts`)."""
    bad = BadJob("now must be a UTC time written YYYY-MM-DDTHH:MM:SS.mmmZ, from 1970 to 9999")
    if type(value) is not str or len(value) != len(_NOW_SHAPE):
        raise bad
    for c, want in zip(value, _NOW_SHAPE):
        if (c not in _DIGITS) if want == "d" else (c != want):
            raise bad
    y, mo, d = int(value[0:4]), int(value[5:7]), int(value[8:10])
    h, mi, s, ms = int(value[11:13]), int(value[14:16]), int(value[17:19]), int(value[20:23])
    leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
    month_days = (31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
    if y < 1970 or not 1 <= mo <= 12 or not 1 <= d <= month_days[mo - 1]:
        raise bad
    if h > 23 or mi > 59 or s > 59:
        raise bad
    return (((_days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * 60 + s) * 1000 + ms


# ------------------------------------------------------------ install


def install(job):
    """Apply the job's `entropy`, `now` and `hash_seed` to this process (each
    only when present); returns the clock for the language layer, or None.
    Raises `BadJob` for a malformed field or a hash seed that did not take
    effect. Call before any bot code runs; a `random` module imported before
    is reseeded, as if it were imported now."""
    entropy, now, seed = job.get("entropy"), job.get("now"), job.get("hash_seed")
    block = None if entropy is None else keyed(parse_entropy(entropy))
    if seed is not None:
        _check_hash_seed(parse_hash_seed(seed), "hash_seed")
    elif block is not None:
        _check_hash_seed(python_hash_seed(block), "entropy")
    if block is not None:
        _install_randomness(block)
    if now is not None:
        return _install_clock(parse_now(now))
    return None


def parse_hash_seed(value):
    """A job's `hash_seed`: an integer from 0 to 2**32 - 1 (what
    `PYTHONHASHSEED` accepts)."""
    if type(value) is not int or not 0 <= value <= 0xFFFFFFFF:
        raise BadJob("hash_seed must be an integer from 0 to 4294967295")
    return value


def python_hash_seed(block):
    """The interpreter's hash seed for this entropy (`PYTHONHASHSEED`)."""
    return int.from_bytes(block(PYTHON_HASH_SEED, 0)[:4], "big")


def _check_hash_seed(seed, field):
    want = str(seed).encode()
    got = posix.environ.get(b"PYTHONHASHSEED")
    if sys.flags.ignore_environment or got != want:
        raise BadJob(
            f"the job has {field}, but the interpreter's hash seed is not the one it gives "
            f"(PYTHONHASHSEED {'ignored: started with -I or -E' if sys.flags.ignore_environment else 'absent or different'}); "
            "the runner sets it and runs the interpreter without -I/-E"
        )


def _install_randomness(block):
    import _random

    urandom = reader(block, URANDOM)
    seeds = [0]

    def next_seed():
        n = seeds[0]
        seeds[0] = n + 1
        return int.from_bytes(block(RANDOM_SEED, n), "big")

    C = _random.Random
    real_seed = C.seed
    real_init = C.__init__

    def seed(self, n=None, /):
        """Seed the generator; without a value, from the hook's entropy."""
        return real_seed(self, next_seed() if n is None else n)

    def init(self, *args, **kwargs):
        if not kwargs and (not args or (len(args) == 1 and args[0] is None)):
            args = (next_seed(),)
        return real_init(self, *args, **kwargs)

    # `random.Random.seed(None)` ends in `super().seed(None)`, i.e. here;
    # `super(random.Random, r)` in bot code reaches these two directly.
    C.seed = seed
    C.__init__ = init
    # `os` copies `posix.urandom` when it is imported, and `random` copies
    # `os.urandom` (as `_urandom`, which SystemRandom and `secrets` call).
    posix.urandom = urandom
    os = sys.modules.get("os")
    if os is not None:
        os.urandom = urandom
    rnd = sys.modules.get("random")
    if rnd is not None:  # imported before the hook: reseed what it made
        rnd._urandom = urandom
        rnd._inst.seed()


def _install_clock(ms):
    """Patch the `time` module's wall clock to `ms`; returns the clock the
    language layer's guard uses for `datetime`'s own methods."""
    secs = ms / 1000  # the double nearest the instant, as time.time() gives
    whole = ms // 1000
    real_localtime, real_gmtime = time.localtime, time.gmtime
    real_ctime, real_asctime, real_strftime = time.ctime, time.asctime, time.strftime

    def time_():
        """time.time(): the triggering message's time, in seconds."""
        return secs

    def time_ns():
        """time.time_ns(): the triggering message's time, in nanoseconds."""
        return ms * 1_000_000

    def localtime(seconds=None, /):
        return real_localtime(whole if seconds is None else seconds)

    def gmtime(seconds=None, /):
        return real_gmtime(whole if seconds is None else seconds)

    def ctime(seconds=None, /):
        return real_ctime(whole if seconds is None else seconds)

    def asctime(t=None, /):
        return real_asctime(real_localtime(whole) if t is None else t)

    def strftime(format, t=None, /):
        return real_strftime(format, real_localtime(whole) if t is None else t)

    for name, fn in (
        ("time", time_),
        ("time_ns", time_ns),
        ("localtime", localtime),
        ("gmtime", gmtime),
        ("ctime", ctime),
        ("asctime", asctime),
        ("strftime", strftime),
    ):
        fn.__name__ = fn.__qualname__ = name
        if fn.__doc__ is None:
            fn.__doc__ = f"time.{name}, reading the triggering message's time when given none."
        setattr(time, name, fn)

    def datetime_method(cls, name):
        """`cls.now`, `cls.utcnow` or `cls.today` for a subclass `cls` of
        `datetime.date`, reading the triggering message's time: as the
        pure-Python `datetime` defines them, on `time.time()`."""
        import datetime

        base = datetime.datetime if issubclass(cls, datetime.datetime) else datetime.date
        # The base's own C classmethod bound to `cls`: a subclass's
        # `fromtimestamp` does not run, as it does not for the C methods.
        fromtimestamp = base.__dict__["fromtimestamp"].__get__(None, cls)
        if name == "now":

            def now(tz=None):
                return fromtimestamp(secs, tz)

            return now
        if name == "utcnow":

            def utcnow():
                return fromtimestamp(secs, datetime.timezone.utc).replace(tzinfo=None)

            return utcnow

        def today():
            return fromtimestamp(secs)

        return today

    def utc_now():
        """The triggering message's time as an aware UTC `datetime`."""
        import datetime

        return datetime.datetime.fromtimestamp(secs, datetime.timezone.utc)

    return {"datetime_method": datetime_method, "utc_now": utc_now}
