"""One hook, start to finish: read the job, check the source, run the bot,
seal the hook, write one `HookOutcome` to fd 3 (PROTOCOL.md).

The hook's state (`Run`: limits, recipients, posts, state) and the print
buffer are reachable only from the closures of the functions bot code gets
(`ctx`'s, the capture's), never from an attribute of anything it can reach;
bot code may change its own `ctx` and `sys.stdout`, never what they write to.

Start-up cost matters (this runs for every hook), so the module itself imports
only what CPython has already loaded plus `_json`, `_ast`, `_io` and `gc`.
Before it reads the job, `warm_up` loads what hooks need (the language
layer's run-time half, and the modules the builtin bots import): in a
pre-warmed sandbox that happens before the job exists, off the hook's
latency; a fresh sandbox does exactly the same, so a bot sees the same
process either way. A deterministic hook reseeds the generator `random`
made at import before any bot code runs (`hx_determinism.install`), which
gives it the seed it would have had if the bot had imported `random` first.

Everything the bot produces is copied into plain JSON values by `plain()`
(exact `dict`/`list`/`str`/... types, read through the base types' own
methods) and serialized by `_json`'s C encoder, so no bot method runs while
the result is built and no monkeypatched library class can shape it.
"""

import sys
import time

import _io
import _json
import marshal

import hx_check
import hx_protocol

START_NS = time.perf_counter_ns()

MAX_LOG_CHARS = 64 * 1024
# CPU seconds the interpreter's start and `warm_up` may take before the job
# is read (`policy::WARM_UP_CPU_SECS` in the runner).
WARM_UP_CPU_SECS = 1
MAX_DEPTH = 64
RESULT_FD = 3


# ---------------------------------------------------------------- JSON


class _ScanContext:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo = None

    @staticmethod
    def parse_constant(name):
        raise ValueError(f"{name} is not valid JSON")


_scan = _json.make_scanner(_ScanContext())
_encode = _json.make_encoder(
    None, None, _json.encode_basestring, None, ":", ",", False, False, False
)


def loads(text):
    """Parse one JSON document (the C scanner, without importing `json`)."""
    i = 0
    n = len(text)
    while i < n and text[i] in " \t\r\n":
        i += 1
    try:
        value, end = _scan(text, i)
    except Exception:
        # Rare: let the full `json` module produce its precise message.
        import json

        return json.loads(text)
    while end < n and text[end] in " \t\r\n":
        end += 1
    if end != n:
        raise ValueError(f"extra data after the JSON document at {end}")
    return value


def dumps(value):
    """Serialize a value that `plain()` produced."""
    return "".join(_encode(value, 0))


class NotJson(Exception):
    pass


# JSON numbers are doubles to every reader of the outcome: larger integers
# would not parse (the largest finite double, rounded down to an int).
_MAX_INT = int(1.7976931348623157e308)


def plain(value, what, depth=0):
    """A copy of `value` made of exact JSON types only, or `NotJson`.

    Subclasses (a `Counter`, an `IntEnum`) are read through the base type's
    own methods, so none of their overrides run.
    """
    if depth > MAX_DEPTH:
        raise NotJson(f"{what} is nested deeper than {MAX_DEPTH} levels")
    t = type(value)
    if value is None or t is bool:
        return value
    if t is str:
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise NotJson(f"{what} holds a string that is not valid Unicode") from None
        return value
    if t is int:
        if not -_MAX_INT <= value <= _MAX_INT:
            raise NotJson(f"{what} holds an integer too large for JSON's numbers")
        return value
    if t is float:
        if value != value or value in (float("inf"), float("-inf")):
            raise NotJson(f"{what} holds {value!r}, which JSON cannot express")
        return value
    # Subclass checks go by the real type: `isinstance` would believe a
    # bot object's fake `__class__`.
    if t is dict or issubclass(t, dict):
        out = {}
        for k, v in dict.items(value):
            if type(k) is not str:
                if issubclass(type(k), str):
                    k = "".join((k,))
                else:
                    raise NotJson(f"{what} has a key that is not a string ({type(k).__name__})")
            out[plain(k, what, depth + 1)] = plain(v, what, depth + 1)
        return out
    if t is list or t is tuple or issubclass(t, (list, tuple)):
        items = list.copy(value) if issubclass(t, list) else tuple.__iter__(value)
        return [plain(v, what, depth + 1) for v in items]
    if issubclass(t, int):
        return plain(int.__int__(value), what, depth)
    if issubclass(t, float):
        return plain(float.__float__(value), what, depth)
    if issubclass(t, str):
        return plain("".join((value,)), what, depth)
    raise NotJson(f"{what} holds a {t.__name__}, which is not JSON")


def copy_json(value):
    """A copy of `value`, which the harness made of exact JSON types (the
    job's data, or what `plain` returned): through `marshal`'s C code,
    several times faster than `plain`. Format 2 writes no references, so a
    value used twice in `value` is two values in the copy, as `plain` makes
    them."""
    return marshal.loads(marshal.dumps(value, 2))


class _Irregular(Exception):
    """A value `plain_sized`'s fast path leaves to `plain`."""


def plain_sized(value, what):
    """`plain(value, what)` and the canonical size of the result
    (`hx_protocol.canonical_size`), or `NotJson`.

    Most values a bot hands over are already made of exact JSON types. For
    them `marshal` copies the value in C (it writes exact builtin types only
    and refuses anything else, a subclass too, without running any code of
    the value's), and one walk over the copy checks what `plain` checks and
    adds up the size. Anything else (a subclass, a tuple, a non-string key,
    a lone surrogate, a number JSON cannot hold, a value nested too deep)
    takes `plain` itself, which copies or refuses it with its own message."""
    try:
        copy = copy_json(value)
        return copy, _exact_size(copy, 0)
    except (ValueError, _Irregular):
        pass
    copy = plain(value, what)
    return copy, hx_protocol.canonical_size(copy)


_quote = _json.encode_basestring
_EXACT = hx_protocol.EXACT_INT
_INFINITIES = (float("inf"), float("-inf"))


def _exact_size(value, depth):
    """The canonical size of `value` if `plain` would return it unchanged
    (exact JSON types, at most `MAX_DEPTH` levels below the top), else
    `_Irregular`. Strings and small integers in a container are sized in
    the loop, without a call each."""
    t = type(value)
    if t is dict:
        n = 1 + 2 * len(value)  # braces, a ':' each, ',' between
        members = value.values()
    elif t is list:
        n = 1 + len(value)  # brackets, ',' between
        members = value
    else:
        return _scalar_size(value)
    if not value:
        return 2
    if depth >= MAX_DEPTH:
        raise _Irregular  # its members would be nested too deep
    if t is dict:
        for k in value:
            if type(k) is not str:
                raise _Irregular
            q = _quote(k)
            n += len(q) if q.isascii() else _utf8_size(q)
    for v in members:
        tv = type(v)
        if tv is str:
            q = _quote(v)
            n += len(q) if q.isascii() else _utf8_size(q)
        elif tv is int and -_EXACT <= v <= _EXACT:
            n += len(str(v))
        elif tv is dict or tv is list:
            n += _exact_size(v, depth + 1)
        else:
            n += _scalar_size(v)
    return n


def _utf8_size(q):
    try:
        return len(q.encode("utf-8"))
    except UnicodeEncodeError:
        raise _Irregular from None  # a lone surrogate: `plain` says so


def _scalar_size(v):
    t = type(v)
    if t is str:
        q = _quote(v)
        return len(q) if q.isascii() else _utf8_size(q)
    if v is None or v is True:
        return 4
    if v is False:
        return 5
    if t is int and -_EXACT <= v <= _EXACT:
        return len(str(v))
    if t is float and v == v and v not in _INFINITIES:
        return hx_protocol.number_size(v)
    raise _Irregular  # a larger integer, a non-finite float, not JSON


# ---------------------------------------------------------------- capture


# `types.SimpleNamespace` without importing `types`: the builtin type that
# `ctx` and the print capture are made of. Bot code can change attributes
# of such an object (its own ctx), never the type.
Namespace = type(sys.implementation)


def make_capture(limit):
    """A bounded stand-in for `sys.stdout`/`sys.stderr`: what the bot prints
    becomes the outcome's `logs`, never bytes on a file descriptor.

    Returns `(stream, text, seal)`. The buffer lives in this closure: the
    stream is a plain namespace whose `write` appends at most `limit`
    characters, and `text()` reads the buffer, not the stream, so replacing
    the stream's functions only diverts the bot's own prints. After
    `seal()`, writes are dropped.
    """
    parts = []
    room = [limit]
    dropped = [0]
    sealed = [False]

    def write(s):
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        s = "".join((s,))
        n = len(s)
        if sealed[0]:
            return n
        if n <= room[0]:
            parts.append(s)
            room[0] -= n
        else:
            if room[0] > 0:
                parts.append(s[: room[0]])
            dropped[0] += n - max(room[0], 0)
            room[0] = 0
        return n

    def flush():
        pass

    def isatty():
        return False

    def writable():
        return True

    def text():
        out = "".join(parts)
        if dropped[0]:
            out += f"\n[... {dropped[0]} more characters dropped]"
        return out

    def seal():
        sealed[0] = True

    stream = Namespace(
        write=write, flush=flush, isatty=isatty, writable=writable, encoding="utf-8", errors="replace"
    )
    return stream, text, seal


# ---------------------------------------------------------------- the run


BadJob = hx_protocol.BadJob


class Run:
    """Hook-wide state. Out of reach of bot code: the functions of `ctx`
    hold it in their closure, and nothing the bot can reach by attribute
    leads to it."""

    def __init__(self, job, limits):
        self.limits = limits
        context = job.get("context") or {}
        if type(context) is not dict:
            raise BadJob("context must be an object")
        self.channel_id = str(context.get("channel_id", ""))
        self.bot_id = str(context.get("bot_id", ""))
        players = context.get("players") or []
        if type(players) is not list or any(type(p) is not dict for p in players):
            raise BadJob("context.players must be a list of objects")
        self.players = players
        self.labels = {p.get("label") for p in players if type(p.get("label")) is str}
        state = job.get("state")
        if state is None:
            state = {}
        if type(state) is not dict:
            raise BadJob("state must be a JSON object")
        self.state = state
        bot = job.get("bot") or {}
        params = bot.get("params")
        self.params = {} if params is None else params
        workspace = job.get("workspace", "/workspace")
        self.workspace = workspace if type(workspace) is str else "/workspace"
        self.posts = []
        self.violation = None  # first policy violation, even if caught
        self.limit = None  # first limit error, even if caught
        self.sealed = False  # set when the hook is over: ctx refuses from then on

    # -- ctx operations

    def limit_error(self, message):
        """Record a broken limit (the hook fails with kind `limit` even if
        bot code catches the error) and return the error to raise."""
        if self.limit is None:
            self.limit = message
        return ValueError(message)

    def check_open(self, what):
        if self.sealed:
            raise self.limit_error(f"{what}: the hook is over")

    def post(self, kind, body, to):
        """`ctx.post`, checked by the protocol's rules as it is made."""
        self.check_open("ctx.post")
        lim = self.limits
        broken = hx_protocol.posts_violation(len(self.posts) + 1, lim["max_posts"])
        if broken:
            raise self.limit_error(f"ctx.post: {broken}")
        if not issubclass(type(kind), str):
            raise self.limit_error("ctx.post: a post type must be a string")
        kind = "".join((kind,))
        broken = hx_protocol.kind_violation(kind)
        if broken:
            raise self.limit_error(f"ctx.post: {broken}")
        try:
            body, size = plain_sized(body, "the post body")
        except NotJson as e:
            raise self.limit_error(f"ctx.post: {e}") from None
        broken = hx_protocol.body_violation(size, lim["max_post_bytes"])
        if broken:
            raise self.limit_error(f"ctx.post: {broken}")
        post = {"type": kind, "body": body}
        if to is not None:
            if isinstance(to, str):
                to = [to]
            try:
                to = plain(to, "ctx.post's `to`")
            except NotJson as e:
                raise self.limit_error(str(e)) from None
            if type(to) is not list or any(type(x) is not str for x in to):
                raise self.limit_error(
                    "ctx.post: `to` must be a slot label or a non-empty list of labels"
                )
            broken = hx_protocol.recipients_violation(to, self.labels)
            if broken:
                raise self.limit_error(f"ctx.post: {broken}")
            post["to"] = to
        self.posts.append(post)

    def set_state(self, state):
        """`ctx.set_state`, checked by the protocol's rules as it is made."""
        self.check_open("ctx.set_state")
        if not isinstance(state, dict):
            raise self.limit_error("ctx.set_state: the state must be a JSON object (a dict)")
        try:
            state, size = plain_sized(state, "the state")
        except NotJson as e:
            raise self.limit_error(f"ctx.set_state: {e}") from None
        broken = hx_protocol.state_violation(size, self.limits["max_state_bytes"])
        if broken:
            raise self.limit_error(f"ctx.set_state: {broken}")
        self.state = state

    def on_violation(self, message, line):
        if self.violation is None:
            self.violation = (message, line)


def make_ctx(run):
    """What a bot's `ctx` argument is: a plain namespace of functions that
    keep `run` in their closure, and copies of the channel's data. Bot code
    may change its own ctx's attributes; the harness never reads them."""

    def post(kind, body=None, to=None):
        """Post a message of type `kind`; `to` (a slot label or a list of
        them) makes it private to those players."""
        run.post(kind, body, to)

    def get_state():
        """A copy of the bot's state (a dict)."""
        return copy_json(run.state)

    def set_state(state):
        """Replace the bot's state; takes effect if the hook succeeds."""
        run.set_state(state)

    return Namespace(
        post=post,
        get_state=get_state,
        set_state=set_state,
        workspace=run.workspace,
        channel_id=run.channel_id,
        bot_id=run.bot_id,
        players=copy_json(run.players),
        params=copy_json(run.params),
    )


# ---------------------------------------------------------------- errors


_TRACEBACK = BaseException.__dict__["__traceback__"]
_TYPE_NAME = type.__dict__["__name__"]


def bot_frames(exc):
    """(line, function) of each bot frame in `exc`'s traceback."""
    out = []
    tb = _TRACEBACK.__get__(exc)
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename == "bot.py":
            out.append((tb.tb_lineno, code.co_name))
        tb = tb.tb_next
    return out


def describe(exc):
    try:
        text = str(exc)
    except BaseException:  # a bot's __str__ may raise anything
        text = "<unprintable>"
    name = _TYPE_NAME.__get__(type(exc))
    return f"{name}: {text}" if text else name


def format_traceback(exc, source_lines):
    lines = ["Traceback (most recent call last):"]
    for lineno, func in bot_frames(exc):
        lines.append(f'  File "bot.py", line {lineno}, in {func}')
        if 0 < lineno <= len(source_lines):
            lines.append("    " + source_lines[lineno - 1].strip())
    lines.append(describe(exc))
    return "\n".join(lines)


def error_for(exc, source_lines, is_facade_miss):
    """The HookError for an exception that escaped bot code.

    Called inside the hook, before the seal: `str()` of a bot exception runs
    bot code (its `__str__`). A violation or broken limit the hook recorded
    takes precedence over this (see `run_hook`)."""
    t = type(exc)
    if issubclass(t, MemoryError):
        return {"kind": "memory", "message": "MemoryError: the hook ran out of memory"}
    frames = bot_frames(exc)
    line = frames[-1][0] if frames else None
    if is_facade_miss(exc):
        return {"kind": "policy", "line": line, "message": str(exc)}
    if issubclass(t, RecursionError):
        msg = "RecursionError: maximum recursion depth exceeded"
        return {"kind": "exception", "message": msg, "traceback": msg}
    return {
        "kind": "exception",
        "message": describe(exc)[:2000],
        "traceback": format_traceback(exc, source_lines)[:16000],
    }


# ---------------------------------------------------------------- main


def read_job(raw):
    try:
        job = loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise BadJob(f"not JSON: {e}") from None
    if type(job) is not dict:
        raise BadJob("not an object")
    bot = job.get("bot")
    if type(bot) is not dict or type(bot.get("source")) is not str:
        raise BadJob("bot.source must be a string")
    hook = job.get("hook")
    if type(hook) is not dict or hook.get("name") not in (
        "inspect",
        "on_init",
        "on_join",
        "on_message",
    ):
        raise BadJob("hook.name must be inspect, on_init, on_join or on_message")
    if hook["name"] == "on_join" and type(hook.get("player")) is not str:
        raise BadJob("on_join needs a player label")
    if hook["name"] == "on_message" and "message" not in hook:
        raise BadJob("on_message needs a message")
    return job


def network_allowed(job):
    net = job.get("network", False)
    if type(net) is dict:
        net = net.get("allowed", False)
    return net is True


def inspect_source(source, network):
    """The `inspect` outcome's manifest and the checked bytecode, or raise
    `Refusal`."""
    tree = hx_check.parse(source)
    hx_check.check(tree, network)
    manifest = hx_check.manifest_of(tree)
    code = hx_check.compile_tree(tree)  # compile-time errors, as a hook would see them
    return manifest, code


# ---------------------------------------------------------------- warm-up

# Loaded before the job is read (see the module docs).
WARM_MODULES = (
    "hx_runtime",
    "re",
    "hashlib",
    "json",
    "base64",
    "hmac",
    "random",
    "secrets",
    "marshal",
    "binascii",
    # The language layer guards `copy` at a bot's first import.
    "copy",
)

# Digest of the checker's files and the interpreter's bytecode tag: what a
# `compiled` artifact must have been made with (`warm_up` sets it).
CHECKER = None


def warm_up():
    """Load what hooks need and compute `CHECKER`; runs no bot code."""
    global CHECKER
    for name in WARM_MODULES:
        __import__(name)
    import hashlib

    h = hashlib.sha256()
    h.update(sys.implementation.cache_tag.encode())
    h.update(sys.modules["_frozen_importlib_external"].MAGIC_NUMBER)
    import hx_policy

    for mod in (hx_check, hx_policy):
        with _io.open(mod.__file__, "rb") as f:
            data = f.read()
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    CHECKER = h.hexdigest()


def interpreter_hash_seed():
    """The hash seed this interpreter started with (`PYTHONHASHSEED`, which
    the runner sets for a job with one), or None for a random one."""
    import posix

    seed = posix.environ.get(b"PYTHONHASHSEED")
    if sys.flags.ignore_environment or seed is None or not seed.isdigit():
        return None
    return int(seed)


def compiled_of(source, network, class_name, code):
    """The `compiled` artifact the daemon hands later hooks of `source`."""
    import binascii
    import hashlib
    import marshal

    return {
        "source_sha256": hashlib.sha256(source.encode("utf-8")).hexdigest(),
        "network": network,
        "checker": CHECKER,
        "hash_seed": interpreter_hash_seed(),
        "class_name": class_name,
        "code": binascii.b2a_base64(marshal.dumps(code), newline=False).decode("ascii"),
    }


def as_loaded(code):
    """`code` as a hook gets it from a `compiled` artifact: through
    `marshal`. A set display of constants compiles to a frozenset constant;
    `marshal` writes its items in the order they iterate, and loading
    inserts them in that order, which can change the order they iterate in
    (items whose hashes collide). So a hook that compiles its bot itself
    runs its bytecode through `marshal` too: with the artifact made under
    the same hash seed, both iterate every set constant alike, and a hook's
    output does not depend on whether it compiled its bot."""
    import marshal

    return marshal.loads(marshal.dumps(code))


# `(text, code)`: a bot's compiled code (base64 text, as in a `compiled`
# artifact) and what it decodes and unmarshals to, done once by a fork
# template (`C` from the runner) for all its children.
PRELOADED_CODE = None


def preload_code(raw):
    """Decode and unmarshal a bot's compiled code once (a fork template);
    anything unusable is ignored (each child then decodes its own)."""
    global PRELOADED_CODE
    import binascii
    import marshal

    try:
        text = raw.decode("ascii")
        code = marshal.loads(binascii.a2b_base64(text))
    except (ValueError, TypeError, EOFError, UnicodeError, binascii.Error):
        return
    if type(code) is type(preload_code.__code__):
        PRELOADED_CODE = (text, code)
        precompile_patterns(code)


# What `precompile_patterns` compiles at most, and how long it may take.
MAX_PRECOMPILED = 64
MAX_PRECOMPILED_CHARS = 4096
PRECOMPILE_SECONDS = 0.05
_RE_CALLS = frozenset("compile match fullmatch search sub subn split findall finditer".split())
_RE_FLAGS = frozenset("A ASCII I IGNORECASE L LOCALE M MULTILINE S DOTALL X VERBOSE U UNICODE".split())
_SKIPPED_OPS = frozenset(("PUSH_NULL", "NOP", "EXTENDED_ARG", "CACHE", "PRECALL"))


def regex_constants(code):
    """The `(pattern, flags)` of every call `re.<function>("constant", ...)`
    in `code` and the functions it defines, flags when they are `re.FLAG`s
    joined by `|` right after the pattern (else 0), read from the bytecode
    (nothing of it runs)."""
    import dis
    import re

    found = []
    todo = [code]
    code_type = type(code)
    while todo and len(found) < MAX_PRECOMPILED:
        co = todo.pop()
        todo.extend(c for c in co.co_consts if type(c) is code_type)
        ins = [i for i in dis.get_instructions(co) if i.opname not in _SKIPPED_OPS]

        def flag_at(j):
            if (
                j + 1 < len(ins)
                and ins[j].opname in ("LOAD_NAME", "LOAD_GLOBAL")
                and ins[j].argval == "re"
                and ins[j + 1].opname == "LOAD_ATTR"
                and ins[j + 1].argval in _RE_FLAGS
            ):
                return int(getattr(re, ins[j + 1].argval)), j + 2
            return None, j

        for k in range(len(ins) - 2):
            a, b, c = ins[k], ins[k + 1], ins[k + 2]
            if not (
                a.opname in ("LOAD_NAME", "LOAD_GLOBAL")
                and a.argval == "re"
                and b.opname in ("LOAD_ATTR", "LOAD_METHOD")
                and b.argval in _RE_CALLS
                and c.opname == "LOAD_CONST"
                and type(c.argval) is str
                and len(c.argval) <= MAX_PRECOMPILED_CHARS
            ):
                continue
            flags, j = flag_at(k + 3)
            while flags is not None:
                more, after = flag_at(j)
                if more is None or after >= len(ins) or ins[after].argrepr != "|":
                    break
                flags |= more
                j = after + 1
            found.append((c.argval, flags or 0))
    return found[:MAX_PRECOMPILED]


def precompile_patterns(code):
    """Put the regular expressions `code` passes to `re` as constants into
    `re`'s cache (a fork template, once for all its children: each hook of
    the bot would otherwise compile them again). Only the text of `code` is
    read; a pattern that does not compile is left for the hook to find. A
    child whose job brings other code empties the cache (`run_hook`)."""
    import re

    deadline = time.perf_counter() + PRECOMPILE_SECONDS
    try:
        patterns = regex_constants(code)
    except Exception:  # noqa: BLE001 - a cache, never needed
        return
    for pattern, flags in patterns:
        if time.perf_counter() > deadline:
            break
        try:
            re.compile(pattern, flags)
        except Exception:  # noqa: BLE001 - re.error, OverflowError, RecursionError...
            pass


def usable_compiled(compiled, source, network):
    """`(class_name, code)` from a job's `compiled` artifact when it was made
    by this checker, in this interpreter, under this interpreter's hash seed,
    for exactly this source and network mode; otherwise None (the hook then
    checks and compiles the source)."""
    if type(compiled) is not dict or CHECKER is None:
        return None
    import binascii
    import hashlib
    import marshal

    try:
        seed = compiled.get("hash_seed")
        if (
            compiled.get("checker") != CHECKER
            or not (seed is None or type(seed) is int)
            or seed != interpreter_hash_seed()
            or compiled.get("network") is not network
            or type(compiled.get("class_name")) is not str
            or type(compiled.get("code")) is not str
            or compiled.get("source_sha256")
            != hashlib.sha256(source.encode("utf-8")).hexdigest()
        ):
            return None
        if PRELOADED_CODE is not None and compiled["code"] == PRELOADED_CODE[0]:
            code = PRELOADED_CODE[1]  # the same text, decoded by the template
        else:
            code = marshal.loads(binascii.a2b_base64(compiled["code"]))
    except (ValueError, TypeError, EOFError, UnicodeError, binascii.Error):
        return None
    if type(code) is not type(usable_compiled.__code__):
        return None
    return compiled["class_name"], code


def run_hook(job, limits):
    """Run the job; returns the outcome dict (never raises for bot faults)."""
    run = Run(job, limits)
    source = job["bot"]["source"]
    hook = job["hook"]
    network = network_allowed(job)
    unchecked = job.get("unchecked") is True

    if hook["name"] == "inspect":  # always checked, `unchecked` or not
        if job.get("hash_seed") is not None:
            # The artifact says which hash seed it was compiled under: the
            # job's, which must have taken effect.
            import hx_determinism

            hx_determinism.install({"hash_seed": job["hash_seed"]})
        try:
            manifest, code = inspect_source(source, network)
        except hx_check.Refusal as r:
            return {"status": "error", "error": r.as_error()}
        compiled = compiled_of(source, network, manifest["class_name"], code)
        # Within the outcome's bound with room for the manifest; a bot too
        # large for that is checked and compiled by every hook instead.
        if len(compiled["code"]) <= run.limits["max_output_bytes"] // 2:
            manifest["compiled"] = compiled
        return ok([], run.state, "", manifest)

    # Before any bot code runs (it reseeds what `warm_up`'s import of
    # `random` made); a job without these fields does not even import the
    # module.
    clock = None
    if any(job.get(k) is not None for k in ("entropy", "now", "hash_seed")):
        import hx_determinism

        clock = hx_determinism.install(job)

    paths = job.get("sys_path") or []
    if type(paths) is not list or any(type(p) is not str for p in paths):
        raise BadJob("sys_path must be a list of strings")
    sys.path.extend(paths)

    # Checked and compiled once, at attach: used only when it verifiably
    # belongs to this source (never for the attack suite's unchecked runs).
    reused = None if unchecked else usable_compiled(job["bot"].get("compiled"), source, network)
    if reused is not None:
        class_name, code = reused
    else:
        try:
            code, class_name = check_and_compile(source, network, unchecked)
        except hx_check.Refusal as r:
            return {"status": "error", "error": r.as_error()}
        code = as_loaded(code)
    if PRELOADED_CODE is not None and code is not PRELOADED_CODE[1]:
        # The template compiled the patterns of other code: none of them here.
        import re

        re.purge()

    limit = min(MAX_LOG_CHARS, run.limits["max_output_bytes"] // 4)
    capture, logs, seal_capture = make_capture(limit)
    if unchecked:
        import builtins

        env = {"__name__": "bot", "__builtins__": builtins}

        def is_facade_miss(exc):
            return False

    else:
        import hx_runtime

        prepared = PREPARED_LAYER.pop() if PREPARED_LAYER else None
        if prepared is not None and prepared[0] is network:
            layer, bind = prepared[1], prepared[2]
        else:
            layer, bind = hx_runtime.prepare_layer(network)
        bind(source, run.on_violation, clock)
        env = {"__name__": "bot", "__builtins__": layer["builtins"]}
        env.update(layer["helpers"])
        is_facade_miss = layer["is_facade_miss"]
    # Everything bot code made stays alive until the process exits (see
    # `seal` below): the module's globals, the bot, an escaped exception.
    KEPT.append(env)
    sys.stdout = sys.stderr = capture

    error = None
    try:
        exec(code, env)
        if class_name is not None:
            cls = env.get(class_name)
            if not isinstance(cls, type):
                raise TypeError(f"{class_name} is no longer a class after the module ran")
            params = copy_json(run.params)
            ctx = make_ctx(run)
            if cls.__init__ is object.__init__:
                # A bot without its own constructor still gets its context.
                bot = cls()
                bot.ctx = ctx
                bot.params = params
            else:
                bot = cls(ctx, params)
            KEPT.append(bot)
            name = hook["name"]
            method = getattr(bot, name, None)
            if method is not None:
                if name == "on_init":
                    method()
                elif name == "on_join":
                    method(hook["player"])
                else:
                    method(copy_json(hook["message"]))
    except BaseException as exc:  # the bot may raise anything, SystemExit too
        KEPT.append(exc)
        error = error_for(exc, source.splitlines(), is_facade_miss)
        del exc
    seal(run, seal_capture)

    if run.violation is not None:
        message, line = run.violation
        error = {"kind": "policy", "line": line, "message": message}
    elif run.limit is not None:
        error = {"kind": "limit", "message": run.limit}
    if error is not None:
        return {"status": "error", "error": error}
    return ok(run.posts, run.state, logs(), None)


def check_and_compile(source, network, unchecked):
    """The language layer's check (unless `unchecked`) and the bytecode:
    `(code, class_name)`, or raise `Refusal`."""
    class_name = None
    tree = hx_check.parse(source)
    if not unchecked:
        hx_check.check(tree, network)
    try:
        class_name = hx_check.select_class(tree, hx_check.read_manifest(tree))[0]
    except hx_check.Refusal:
        if not unchecked:
            raise
        # unchecked attack code without a bot class: module code only
    return hx_check.compile_tree(tree), class_name


# Objects of bot code, held until the process exits.
KEPT = []

# `(network, layer, bind)` from `hx_runtime.prepare_layer`, made before the
# job was read (by a fork template: `hx_fork`); used by the one hook
# of this process if its network mode is the same, else made anew.
PREPARED_LAYER = []


def seal(run, seal_capture):
    """End the hook: from here on no bot code may change the outcome.

    `ctx` refuses, the capture drops what is printed, and bot code gets no
    chance to run at all: garbage collection is off and every object bot
    code made is held in `KEPT`, so no finalizer (a `weakref.finalize`, a
    generator's `finally`, a weakref callback) runs before the process ends
    with `posix._exit`, which runs none either. `sys.stdout` stays the
    sealed capture.
    """
    import gc

    gc.disable()
    run.sealed = True
    seal_capture()


def ok(posts, state, logs, manifest):
    out = {"status": "ok", "posts": posts, "state": state, "logs": logs}
    if manifest is not None:
        out["manifest"] = manifest
    return out


def finish(outcome, max_output):
    """Serialize the outcome, with the harness's own timing and error text
    within the protocol's bounds; an outcome over `max_output` bytes becomes
    an output overrun."""
    if outcome["status"] == "error":
        hx_protocol.bounded_error(outcome["error"])
    outcome["timings"] = {"confine_us": 0, "hook_us": (time.perf_counter_ns() - START_NS) // 1000}
    # Posts and state hold valid Unicode only (`plain`); logs and error text
    # may carry a bot's lone surrogates, which UTF-8 cannot encode.
    data = dumps(outcome).encode("utf-8", "replace")
    if len(data) > max_output:
        msg = f"the result is {len(data)} bytes, over the limit of {max_output}"
        data = dumps({"status": "error", "error": {"kind": "output_overrun", "message": msg}})
        data = data.encode("utf-8")
    return data


def prewarm_hook_path():
    """Run the parts of a hook's path that do not depend on its job, on
    made-up data, and keep nothing: the reading and checking of a job, the
    determinism module's key schedule and clock parsing, a run's `ctx`
    (posts, state copies) and the outcome's encoding. A fork template's
    child calls this while it waits for its job: the pages these touch (the
    code and objects it shares with its template) are then its own copies
    before the job arrives, not copied during the hook. Imports nothing a
    hook does not, reaches no bot code and changes no module or global."""
    import hashlib

    import hx_determinism

    block = hx_determinism.keyed(bytes(32))
    hx_determinism.reader(block, b"prewarm")(40)
    hx_determinism.parse_entropy("00" * 32)
    hx_determinism.parse_now("1970-01-01T00:00:00.000Z")
    hashlib.sha256(b"prewarm").hexdigest()
    limits = {name: 1 << 16 for name in hx_protocol.LIMIT_NAMES}
    player = {"label": "a", "slot": "invite:a", "filled": True}
    message = {"seq": 1, "sender": "a", "type": "chat", "body": "x", "ts": "1970-01-01T00:00:00.000Z"}
    job = {
        "bot": {"name": "prewarm", "source": "", "params": {}},
        "hook": {"name": "on_message", "message": message},
        "context": {"channel_id": "prewarm", "bot_id": "bot:prewarm", "players": [player]},
        "state": {"k": [1, "v"]},
        "limits": limits,
    }
    job = read_job(dumps(job).encode("utf-8"))
    run = Run(job, hx_protocol.limits_of(job))
    ctx = make_ctx(run)
    copy_json(job["hook"]["message"])
    ctx.get_state()
    ctx.set_state({"k": [2, "w"]})
    ctx.post("prewarm", {"a": [1, "b"]})
    finish(ok(run.posts, run.state, "", None), limits["max_output_bytes"])


def main_hook(warm=True):
    """`harness.py` with the job on stdin: the outcome goes to fd 3.

    `warm=False`: a fork template's child (`hx_fork`), whose template
    already ran `warm_up`.

    Fd 3 carries only what the hook did. When the job itself is unusable (a
    runner bug: the bot has not run), the harness says so on stderr and exits
    2 without a result, and the runner reports `internal`."""
    try:
        out = _io.FileIO(RESULT_FD, "w", closefd=True)
    except OSError as e:
        sys.stderr.write(f"harness: fd {RESULT_FD} is not open for the result: {e}\n")
        return 2
    if warm:
        warm_up()  # before the job: a pre-warmed sandbox waits for it after this
    try:
        raw = sys.stdin.buffer.read()
        # RLIMIT_CPU counts from the process's start; the runner sets it one
        # second above the hook's budget for the start and the warm-up, so
        # the budget holds from here only if they took less than that.
        used = time.process_time()
        if used >= WARM_UP_CPU_SECS:
            raise BadJob(f"{used:.2f} s of CPU used before the job arrived (at most {WARM_UP_CPU_SECS})")
        job = read_job(raw)
        limits = hx_protocol.limits_of(job)
        outcome = run_hook(job, limits)
        data = finish(outcome, limits["max_output_bytes"])
    except BadJob as e:
        sys.stderr.write(f"harness: bad job: {e}\n")
        return 2
    except MemoryError:
        # Before or after the hook, not in it: a small outcome, bounded.
        data = dumps({"status": "error", "error": {"kind": "memory", "message": "MemoryError"}})
        data = data.encode("utf-8")
    view = memoryview(data)
    while view:
        n = out.write(view)
        view = view[n:]
    out.close()
    return 0


def main_check(path, network):
    """`harness.py --check FILE`: the inspect outcome on stdout."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
        source = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        outcome = {"status": "error", "error": {"kind": "syntax", "line": None, "message": str(e)}}
    else:
        try:
            outcome = ok([], {}, "", inspect_source(source, network)[0])
        except hx_check.Refusal as r:
            outcome = {"status": "error", "error": r.as_error()}
    # `inspect` makes no posts and keeps no state: no limit applies here.
    data = finish(outcome, 1 << 30)
    sys.stdout.write(data.decode("utf-8") + "\n")
    sys.stdout.flush()
    return 0 if outcome["status"] == "ok" else 1


USAGE = """usage: harness.py                       (job JSON on stdin, outcome on fd 3)
       harness.py --template            (fork template: see hx_fork.py)
       harness.py --check FILE [--network]  (language-layer verdict on stdout)"""


def main(argv):
    if not argv:
        return main_hook()
    if argv == ["--template"]:
        import hx_fork

        return hx_fork.serve()
    if argv[0] == "--check" and len(argv) in (2, 3):
        network = argv[2:] == ["--network"]
        if len(argv) == 3 and not network:
            sys.stderr.write(USAGE + "\n")
            return 2
        return main_check(argv[1], network)
    sys.stderr.write(USAGE + "\n")
    return 2
