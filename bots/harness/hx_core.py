"""One hook, start to finish: read the job, check the source, run the bot,
write one `HookOutcome` to fd 3 (PROTOCOL.md).

Start-up cost matters (this runs for every hook), so the module imports only
what CPython has already loaded plus `_json`, `_ast` and `_io`; `json`, `re`,
`ast`, `traceback` and `linecache` are never imported unless the bot itself
asks for them.

Everything the bot produces is copied into plain JSON values by `plain()`
(exact `dict`/`list`/`str`/... types, read through the base types' own
methods) and serialized by `_json`'s C encoder, so no bot method runs while
the result is built and no monkeypatched library class can shape it.
"""

import sys
import time

import _io
import _json

import hx_check
import hx_protocol

START_NS = time.perf_counter_ns()

MAX_LOG_CHARS = 64 * 1024
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


# ---------------------------------------------------------------- capture


class Capture:
    """Bounded stand-in for `sys.stdout`/`sys.stderr`: what the bot prints
    becomes the outcome's `logs`, never bytes on a file descriptor."""

    encoding = "utf-8"
    errors = "replace"

    def __init__(self, limit):
        if hasattr(self, "_parts"):
            # `sys.stdout.__init__(10**12)` would lift the bound.
            raise TypeError("the capture cannot be re-initialised")
        self._parts = []
        self._room = limit
        self._dropped = 0

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        s = "".join((s,))
        n = len(s)
        if n <= self._room:
            self._parts.append(s)
            self._room -= n
        else:
            if self._room > 0:
                self._parts.append(s[: self._room])
            self._dropped += n - max(self._room, 0)
            self._room = 0
        return n

    def flush(self):
        pass

    def isatty(self):
        return False

    def writable(self):
        return True

    def text(self):
        out = "".join(self._parts)
        if self._dropped:
            out += f"\n[... {self._dropped} more characters dropped]"
        return out


# ---------------------------------------------------------------- the run


BadJob = hx_protocol.BadJob


class LimitError(Exception):
    """A `ctx` call broke a limit or was malformed (kind `limit`)."""


class Run:
    """Hook-wide state. Lives here, out of reach of bot code: `ctx` reads and
    writes it through functions and holds no reference to it."""

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

    # -- ctx operations

    def limit_error(self, message):
        if self.limit is None:
            self.limit = message
        return LimitError(message)

    def post(self, kind, body, to):
        """`ctx.post`, checked by the protocol's rules as it is made."""
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
            body = plain(body, "the post body")
        except NotJson as e:
            raise self.limit_error(f"ctx.post: {e}") from None
        broken = hx_protocol.body_violation(body, lim["max_post_bytes"])
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
        if not isinstance(state, dict):
            raise self.limit_error("ctx.set_state: the state must be a JSON object (a dict)")
        try:
            state = plain(state, "the state")
        except NotJson as e:
            raise self.limit_error(f"ctx.set_state: {e}") from None
        broken = hx_protocol.state_violation(state, self.limits["max_state_bytes"])
        if broken:
            raise self.limit_error(f"ctx.set_state: {broken}")
        self.state = state

    def on_violation(self, message, line):
        if self.violation is None:
            self.violation = (message, line)


_RUN = None


class Ctx:
    """What a bot's `ctx` argument is. Stateless: every call goes to the
    hook's `Run`, which bot code cannot name."""

    __slots__ = ()

    def post(self, kind, body=None, to=None):
        """Post a message of type `kind`; `to` (a slot label or a list of
        them) makes it private to those players."""
        _RUN.post(kind, body, to)

    def get_state(self):
        """A copy of the bot's state (a dict)."""
        return plain(_RUN.state, "the state")

    def set_state(self, state):
        """Replace the bot's state; takes effect if the hook succeeds."""
        _RUN.set_state(state)

    @property
    def workspace(self):
        return _RUN.workspace

    @property
    def channel_id(self):
        return _RUN.channel_id

    @property
    def bot_id(self):
        return _RUN.bot_id

    @property
    def players(self):
        return plain(_RUN.players, "players")

    @property
    def params(self):
        return plain(_RUN.params, "params")

    def __repr__(self):
        return f"<ctx {_RUN.bot_id} in {_RUN.channel_id}>"


# ---------------------------------------------------------------- errors


def bot_frames(exc):
    """(line, function) of each bot frame in `exc`'s traceback."""
    out = []
    tb = exc.__traceback__
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
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


def format_traceback(exc, source_lines):
    lines = ["Traceback (most recent call last):"]
    for lineno, func in bot_frames(exc):
        lines.append(f'  File "bot.py", line {lineno}, in {func}')
        if 0 < lineno <= len(source_lines):
            lines.append("    " + source_lines[lineno - 1].strip())
    lines.append(describe(exc))
    return "\n".join(lines)


def error_for(exc, run, source_lines):
    """The HookError for an exception that escaped bot code."""
    import hx_runtime

    if isinstance(exc, MemoryError):
        return {"kind": "memory", "message": "MemoryError: the hook ran out of memory"}
    frames = bot_frames(exc)
    line = frames[-1][0] if frames else None
    if isinstance(exc, (hx_runtime.PolicyError, hx_runtime.FacadeAttributeError)):
        return {"kind": "policy", "line": line, "message": str(exc)}
    if isinstance(exc, LimitError):
        return {"kind": "limit", "message": str(exc)}
    if isinstance(exc, RecursionError):
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
    """The `inspect` outcome's manifest, or raise `Refusal`."""
    tree = hx_check.parse(source)
    hx_check.check(tree, network)
    manifest = hx_check.manifest_of(tree)
    hx_check.compile_tree(tree)  # compile-time errors, as a hook would see them
    return manifest


def run_hook(job, limits):
    """Run the job; returns the outcome dict (never raises for bot faults)."""
    global _RUN
    run = Run(job, limits)
    source = job["bot"]["source"]
    hook = job["hook"]
    network = network_allowed(job)
    unchecked = job.get("unchecked") is True

    if hook["name"] == "inspect":  # always checked, `unchecked` or not
        try:
            manifest = inspect_source(source, network)
        except hx_check.Refusal as r:
            return {"status": "error", "error": r.as_error()}
        return ok([], run.state, "", manifest)

    paths = job.get("sys_path") or []
    if type(paths) is not list or any(type(p) is not str for p in paths):
        raise BadJob("sys_path must be a list of strings")
    sys.path.extend(paths)

    class_name = None
    try:
        tree = hx_check.parse(source)
        if not unchecked:
            hx_check.check(tree, network)
        try:
            class_name = hx_check.select_class(tree, hx_check.read_manifest(tree))[0]
        except hx_check.Refusal:
            if not unchecked:
                raise
            # unchecked attack code without a bot class: module code only
        code = hx_check.compile_tree(tree)
    except hx_check.Refusal as r:
        return {"status": "error", "error": r.as_error()}

    _RUN = run
    capture = Capture(min(MAX_LOG_CHARS, run.limits["max_output_bytes"] // 4))
    if unchecked:
        import builtins

        env = {"__name__": "bot", "__builtins__": builtins}
    else:
        import hx_runtime

        hx_runtime.configure(network, source, run.on_violation)
        env = {
            "__name__": "bot",
            "__builtins__": hx_runtime.bot_builtins(),
            hx_check.FORMAT_HELPER: hx_runtime.format_guard,
            hx_check.SCRUB_HELPER: hx_runtime.scrub_exception,
        }
    sys.stdout = sys.stderr = capture

    error = None
    try:
        exec(code, env)
        if class_name is not None:
            cls = env.get(class_name)
            if not isinstance(cls, type):
                raise TypeError(f"{class_name} is no longer a class after the module ran")
            params = plain(run.params, "params")
            if cls.__init__ is object.__init__:
                # A bot without its own constructor still gets its context.
                bot = cls()
                bot.ctx = Ctx()
                bot.params = params
            else:
                bot = cls(Ctx(), params)
            name = hook["name"]
            method = getattr(bot, name, None)
            if method is not None:
                if name == "on_init":
                    method()
                elif name == "on_join":
                    method(hook["player"])
                else:
                    method(plain(hook["message"], "the message"))
    except BaseException as exc:  # the bot may raise anything, SystemExit too
        error = error_for(exc, run, source.splitlines())
        del exc
    finally:
        sys.stdout = sys.__stdout__
        sys.stderr = sys.__stderr__
    _RUN = None

    if error is None and run.violation is not None:
        message, line = run.violation
        error = {"kind": "policy", "line": line, "message": message}
    if error is None and run.limit is not None:
        error = {"kind": "limit", "message": run.limit}
    if error is not None:
        return {"status": "error", "error": error}
    return ok(run.posts, run.state, capture.text(), None)


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


def main_hook():
    """`harness.py` with the job on stdin: the outcome goes to fd 3.

    Fd 3 carries only what the hook did. When the job itself is unusable (a
    runner bug: the bot has not run), the harness says so on stderr and exits
    2 without a result, and the runner reports `internal`."""
    try:
        out = _io.FileIO(RESULT_FD, "w", closefd=True)
    except OSError as e:
        sys.stderr.write(f"harness: fd {RESULT_FD} is not open for the result: {e}\n")
        return 2
    try:
        job = read_job(sys.stdin.buffer.read())
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
            outcome = ok([], {}, "", inspect_source(source, network))
        except hx_check.Refusal as r:
            outcome = {"status": "error", "error": r.as_error()}
    # `inspect` makes no posts and keeps no state: no limit applies here.
    data = finish(outcome, 1 << 30)
    sys.stdout.write(data.decode("utf-8") + "\n")
    sys.stdout.flush()
    return 0 if outcome["status"] == "ok" else 1


USAGE = """usage: harness.py                       (job JSON on stdin, outcome on fd 3)
       harness.py --check FILE [--network]  (language-layer verdict on stdout)"""


def main(argv):
    if not argv:
        return main_hook()
    if argv[0] == "--check" and len(argv) in (2, 3):
        network = argv[2:] == ["--network"]
        if len(argv) == 3 and not network:
            sys.stderr.write(USAGE + "\n")
            return 2
        return main_check(argv[1], network)
    sys.stderr.write(USAGE + "\n")
    return 2
