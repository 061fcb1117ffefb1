"""The hook protocol's rules on the harness side.

The rules on a hook's outcome belong to the `hook-protocol` crate
(`protocol/src/check.rs`, `Limits::check`), which the runner applies to what
this harness writes on fd 3 and the daemon to what the runner prints. The
harness applies the very same rules earlier, at the `ctx.post` or
`ctx.set_state` call that breaks one, so the bot author gets a clear error at
the offending line; a bot that got past them still meets the runner's check.
Both sides are tested against one table of edge cases
(`protocol/tests/outcome-cases.json`), and PROTOCOL.md states the rules.

Every limit comes from the job: a job without them is refused.
"""

import _json

# The outcome limits the runner passes in `limits` (all required).
LIMIT_NAMES = ("max_posts", "max_post_bytes", "max_state_bytes", "max_output_bytes")

MAX_KIND_CHARS = 64
RESERVED_KINDS = ("system", "control", "user", "bot")
MAX_ERROR_MESSAGE_CHARS = 2_000
MAX_TRACEBACK_CHARS = 16_000

_KIND_FIRST = frozenset("abcdefghijklmnopqrstuvwxyz")
_KIND_REST = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_.-")
_quote = _json.encode_basestring


class BadJob(Exception):
    """The job breaks the protocol (a runner bug, never the bot's doing)."""


def limits_of(job):
    """The job's limits as a dict of non-negative ints, or `BadJob`."""
    raw = job.get("limits")
    if type(raw) is not dict:
        raise BadJob("the job has no limits object")
    out = {}
    for name in LIMIT_NAMES:
        v = raw.get(name)
        if type(v) is not int or v < 0:
            raise BadJob(f"limits.{name} must be a non-negative integer")
        out[name] = v
    return out


# ---------------------------------------------------------------- rules
# Each returns None when the value keeps the rule, else the sentence that
# `Limits::check` reports for it (word for word where the table compares).


def posts_violation(count, max_posts):
    """For the post that would be number `count` of the hook."""
    if count > max_posts:
        return f"at most {max_posts} posts per hook"
    return None


def kind_violation(kind):
    n = len(kind)
    if n == 0 or n > MAX_KIND_CHARS:
        return f"a post type has 1 to {MAX_KIND_CHARS} characters, not {n}"
    if kind[0] not in _KIND_FIRST or not _KIND_REST.issuperset(kind):
        return (
            "a post type starts with a lowercase letter and holds only "
            "a-z, 0-9, '_', '.' and '-'"
        )
    if kind in RESERVED_KINDS:
        return f"the post type '{kind}' is reserved for the daemon's own messages"
    return None


def quoted(label):
    """A label for a message: JSON-quoted and cut to 40 characters."""
    q = _quote(label[:40])
    return q + "…" if len(label) > 40 else q


def recipients_violation(to, labels):
    """`to` is a list of str; `labels` the players' labels."""
    if not to:
        return "a private post needs at least one recipient"
    seen = set()
    for label in to:
        if label not in labels:
            return f"a post is addressed to {quoted(label)}, which is not a player of this channel"
        if label in seen:
            return f"a post lists the recipient {quoted(label)} twice"
        seen.add(label)
    return None


def body_violation(size, max_bytes):
    """`size`: the body's `canonical_size`."""
    if size > max_bytes:
        return f"a post body of {size} bytes is over the limit of {max_bytes}"
    return None


def state_violation(size, max_bytes):
    """`size`: the state's `canonical_size` (`ctx.set_state` takes a dict
    only)."""
    if size > max_bytes:
        return f"a state of {size} bytes is over the limit of {max_bytes}"
    return None


def bounded_error(error):
    """The error dict with its text cut to what the protocol allows."""
    message = error.get("message")
    if type(message) is str and len(message) > MAX_ERROR_MESSAGE_CHARS:
        error["message"] = message[:MAX_ERROR_MESSAGE_CHARS]
    traceback = error.get("traceback")
    if type(traceback) is str and len(traceback) > MAX_TRACEBACK_CHARS:
        error["traceback"] = traceback[:MAX_TRACEBACK_CHARS]
    return error


# ---------------------------------------------------------------- size


def canonical_size(value):
    """Bytes of `value`'s canonical JSON (RFC 8785), the protocol's one
    measure (`canonical_size` in the crate): no whitespace, strings in UTF-8
    with only `"`, `\\` and control characters escaped, numbers as ECMAScript
    writes a double. `value` is made of exact JSON types (see `plain`)."""
    t = type(value)
    if t is str:
        q = _quote(value)
        return len(q) if q.isascii() else len(q.encode("utf-8"))
    if value is None or value is True:
        return 4
    if value is False:
        return 5
    if t is int and -EXACT_INT <= value <= EXACT_INT:
        # A double holds it exactly, and ECMAScript writes such an integer
        # with all its digits: Python's own.
        return len(str(value))
    if t is int or t is float:
        return number_size(value)
    if t is dict:
        n = 2 + (2 * len(value) - 1 if value else 0)  # braces, ':' each, ',' between
        for k, v in value.items():
            n += canonical_size(k) + canonical_size(v)
        return n
    if t is list:
        n = 2 + (len(value) - 1 if value else 0)
        for v in value:
            n += canonical_size(v)
        return n
    raise TypeError(f"{t.__name__} is not JSON")


# Integers up to this magnitude are doubles exactly (2**53).
EXACT_INT = 1 << 53


def number_size(x):
    """Characters of ECMAScript's `Number.prototype.toString` for the double
    nearest `x`: `1.0` → `1`, `1e21` → `1e+21`, `1e-7` → `1e-7`,
    `123e20` → `12300000000000000000000`... Python's `repr` gives the same
    shortest round-trip digits; only where they are placed differs."""
    x = float(x)
    if x == 0:
        return 1  # "0", also for -0.0
    sign = 1 if x < 0 else 0
    mantissa, _, exp = repr(abs(x)).partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = whole + frac
    n = len(whole) + (int(exp) if exp else 0)  # value = 0.DIGITS × 10^n
    stripped = digits.lstrip("0")
    n -= len(digits) - len(stripped)
    k = len(stripped.rstrip("0"))
    if k <= n <= 21:
        size = n  # digits, then n - k zeros
    elif 0 < n <= 21:
        size = k + 1  # a point inside the digits
    elif -6 < n <= 0:
        size = 2 - n + k  # "0." then -n zeros, then the digits
    else:
        e = n - 1
        size = (k + 1 if k > 1 else 1) + 2 + len(str(abs(e)))  # d[.ddd]e±E
    return sign + size
