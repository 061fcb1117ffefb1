"""Walk everything bot code can reach by attribute from the language layer's
roots, and report what should not be reachable.

Run by test_reachability.py as `python3 -I -S -B walk_facades.py DEPTH` (the
harness's own interpreter flags), it prints one JSON object:
`{"visited": N, "findings": ["sys.stdout.<path> -> <what>", ...]}`.

Roots: every facade of `hx_policy.FACADES` (network ones included), the
builtins dict bot code gets, `ctx`, the print capture, the helpers the
checker's rewrites call, and instances of the allowed classes.

Edges, each one a way bot code reads something, with the policy's own rules:
- an attribute: every name `hx_policy.attr_refused` lets a bot write
  (`obj.name`, or `getattr(obj, "name")`); `format`/`format_map` give what
  the format guard gives, as the checker rewrites them;
- a `match` keyword pattern, `case C(name=v)`: every name
  `hx_policy.pattern_attr_refused` allows, read directly (no guard);
- a `match` positional pattern, `case C(v)`: for every class the policy
  allows there (`MATCH_SELF_BUILTINS`), the attributes its `__match_args__`
  names (none: those builtins match the subject itself);
- `type(x)`, as the bot's guarded `type` answers it;
- the items of dicts, lists, tuples and sets (subscripting is allowed);
- for the objects bot code constructs (the instances below), their own
  dict, `_` keys included: a subclass built outside class syntax could
  intercept what library code stores on `self`.
Nothing is called except `type()` and the instance constructors.

Forbidden: a real module object (only facades may be reached), a module's
`__dict__`, frames, code objects, tracebacks, a metaclass (it builds classes
from a plain dict), a class factory (an enum class without members), the
unguarded `str.format`, anything of the harness except the functions it
hands out and the `type` guard (its classes and instances, the hook's state:
limits, recipients, posts, the capture's buffer), and a list of callables
that read by name, evaluate strings, open files or reach the interpreter's
internals.
"""

import json
import sys

HERE = __file__.rpartition("/")[0]
sys.path.insert(0, HERE.rpartition("/")[0])
sys.path.append("/usr/lib/python3/dist-packages")

import hx_core  # noqa: E402
import hx_policy as P  # noqa: E402
import hx_runtime  # noqa: E402

ModuleType = type(sys)


def forbidden_objects():
    """id -> description of callables no bot may reach."""
    import builtins
    import functools
    import gc
    import importlib
    import io
    import linecache
    import operator
    import os
    import posix
    import string
    import traceback
    import typing
    import warnings
    import _io

    bad = {}

    def add(obj, what):
        bad[id(obj)] = (obj, what)

    for n in P.FORBIDDEN_NAMES | {"__import__"}:
        if hasattr(builtins, n):
            add(getattr(builtins, n), f"builtins.{n}")
    for mod in (os, posix, gc, importlib, linecache):
        for n in dir(mod):
            v = getattr(mod, n)
            if callable(v) and not isinstance(v, type):
                add(v, f"{mod.__name__}.{n}")
    for n in dir(sys):
        if n not in P.FACADES["sys"]:
            v = getattr(sys, n)
            if callable(v):
                add(v, f"sys.{n}")
    for obj, what in [
        (str.format, "the unguarded str.format"),
        (str.format_map, "the unguarded str.format_map"),
        (io.open, "io.open"),
        (io.open_code, "io.open_code"),
        (_io.FileIO, "io.FileIO"),
        (io.TextIOWrapper, "io.TextIOWrapper"),
        (functools.update_wrapper, "functools.update_wrapper"),
        (functools.singledispatch, "functools.singledispatch"),
        (typing.get_type_hints, "typing.get_type_hints"),
        (typing.ForwardRef, "typing.ForwardRef"),
        (string.Formatter, "string.Formatter"),
        (warnings.formatwarning, "warnings.formatwarning"),
        (warnings.showwarning, "warnings.showwarning"),
        (warnings.warn_explicit, "warnings.warn_explicit"),
        (traceback.walk_stack, "traceback.walk_stack"),
        (traceback.walk_tb, "traceback.walk_tb"),
        (traceback.extract_stack, "traceback.extract_stack"),
        (traceback.TracebackException, "traceback.TracebackException"),
        (operator.attrgetter, "operator.attrgetter"),
        (operator.methodcaller, "operator.methodcaller"),
    ]:
        add(obj, what)
    return bad


FRAME_TYPES = (type(sys._getframe()), type((lambda: 0).__code__))
try:
    raise ValueError
except ValueError as e:
    FRAME_TYPES += (type(e.__traceback__),)


def names_of(obj, refused):
    try:
        names = dir(obj)
    except Exception:
        return []
    out = []
    for n in names:
        if not isinstance(n, str):
            continue
        if n in P.ALLOWED_UNDERSCORE_ATTRS or refused(n) is None:
            out.append(n)
    return out


def harness_module(value):
    return isinstance(value, str) and value.startswith("hx_")


class Walk:
    def __init__(self, layer, state, canary):
        self.layer = layer
        self.bot_type = layer["builtins"]["type"]
        self.format_guard = layer["helpers"]["__mmh_format__"]
        self.state = {id(o): (o, what) for o, what in state}
        self.bad = forbidden_objects()
        self.module_dicts = {id(m.__dict__): name for name, m in list(sys.modules.items()) if m}
        import enum

        self.EnumMeta = enum.EnumMeta
        # Classes a positional class pattern may name, as the checker allows.
        import builtins

        self.pattern_classes = [getattr(builtins, n) for n in sorted(P.MATCH_SELF_BUILTINS)]
        self.pattern_attr_refused = P.pattern_attr_refused
        if canary:
            # What the walk would see under the policy before `match` was
            # modelled: a positional pattern on any class (here one whose
            # __match_args__ names __globals__) and keyword patterns that
            # follow only the attribute rules.
            self.pattern_classes.append(canary_pattern_class())
            self.pattern_attr_refused = P.attr_refused

    def forbidden(self, obj):
        """What `obj` is if bot code must not reach it, or None."""
        if isinstance(obj, ModuleType):
            if obj.__dict__.get("__getattr__") is not None and harness_module(
                getattr(obj.__dict__["__getattr__"], "__module__", None)
            ):
                return None  # a facade
            return f"the real module {obj.__name__}"
        entry = self.bad.get(id(obj))
        if entry is not None and entry[0] is obj:
            return entry[1]
        entry = self.state.get(id(obj))
        if entry is not None and entry[0] is obj:
            return f"harness state: {entry[1]}"
        if isinstance(obj, FRAME_TYPES):
            return f"a {type(obj).__name__}"
        if type(obj) is dict and id(obj) in self.module_dicts:
            return f"the globals of {self.module_dicts[id(obj)]}"
        if (
            type(obj).__name__ == "builtin_function_or_method"
            and getattr(obj, "__name__", None) in P.GUARDED_ATTRS
            and isinstance(getattr(obj, "__self__", None), str)
        ):
            return f"the unguarded str.{obj.__name__}"
        if isinstance(obj, type):
            if issubclass(obj, type):
                return f"a metaclass ({obj.__name__})"
            if isinstance(obj, self.EnumMeta) and not obj.__members__:
                return f"a class factory ({obj.__name__}, an enum without members)"
            if harness_module(obj.__dict__.get("__module__")):
                return f"a class of the harness ({obj.__name__})"
        elif obj is not self.bot_type and harness_module(getattr(type(obj), "__module__", None)):
            return f"an object of the harness ({type(obj).__name__})"
        return None

    def edges(self, obj, path, constructed):
        out = []
        if constructed and not isinstance(obj, (type, ModuleType)):
            try:
                own = object.__getattribute__(obj, "__dict__")
            except Exception:
                own = None
            if type(own) is dict:
                for k, v in list(own.items()):
                    out.append((f"{path}.{k}", v))
        # obj.name / getattr(obj, "name")
        for n in names_of(obj, P.attr_refused):
            try:
                if n in P.GUARDED_ATTRS:
                    out.append((f"{path}.{n}", self.format_guard(obj, n)))
                else:
                    out.append((f"{path}.{n}", getattr(obj, n)))
            except Exception:
                pass
        # case C(name=v): read directly
        for n in names_of(obj, self.pattern_attr_refused):
            try:
                out.append((f"case {path}(..., {n}=)", getattr(obj, n)))
            except Exception:
                pass
        # case C(v): the attributes C.__match_args__ names
        for c in self.pattern_classes:
            for i, n in enumerate(getattr(c, "__match_args__", ())):
                try:
                    out.append((f"case {c.__name__}({path})[{i}]", getattr(obj, n)))
                except Exception:
                    pass
        try:
            out.append((f"type({path})", self.bot_type(obj)))
        except Exception:
            pass  # refused (a metaclass)
        if isinstance(obj, dict):
            for i, (k, v) in enumerate(dict.items(obj)):
                if i > 500:
                    break
                out.append((f"{path}[{k!r}]", v))
        elif isinstance(obj, (list, tuple, set, frozenset)):
            for i, v in enumerate(obj):
                if i > 500:
                    break
                out.append((f"{path}[{i}]", v))
        return out

    def run(self, roots, constructed, depth):
        findings = []
        seen = set()
        keep = []  # keep visited objects alive so ids stay unique
        constructed = {id(obj) for _, obj in constructed}
        # A stack: the constructed objects go last, so they are visited
        # first, as roots (their own dicts count only there).
        queue = [(obj, path, 0) for path, obj in roots if id(obj) not in constructed]
        queue += [(obj, path, 0) for path, obj in roots if id(obj) in constructed]
        visited = 0
        while queue:
            obj, path, d = queue.pop()
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            keep.append(obj)
            visited += 1
            what = self.forbidden(obj)
            if what:
                findings.append(f"{path} -> {what}")
                continue
            if d >= depth:
                continue
            for p, v in self.edges(obj, path, d == 0 and id(obj) in constructed):
                # Plain data ends a path: nothing reachable from an int or
                # str is interesting, and skipping them keeps the walk small.
                if type(v) in (int, float, str, bytes, bool, type(None)):
                    continue
                queue.append((v, p, d + 1))
        return visited, findings


def canary_pattern_class():
    class Planted:
        __match_args__ = ("__globals__",)

    return Planted


class Plain:
    """An object of bot code (for weakref.finalize)."""


def instances(layer):
    """Objects bots typically make; their instance attributes differ from
    their classes'. Built through the facades, as a bot would. Nothing here
    touches the network."""
    f = layer["facade"]
    referent = Plain()
    rq, email, http_client = f("requests"), f("email"), f("http.client")
    out = {
        "requests.Session()": lambda: rq.Session(),
        "requests.Session().get_adapter()": lambda: rq.Session().get_adapter("http://x"),
        "requests.Response()": lambda: rq.Response(),
        "requests.Request().prepare()": lambda: rq.Request("GET", "http://x/").prepare(),
        "urllib3.PoolManager()": lambda: f("urllib3").PoolManager(),
        "http.client.HTTPConnection()": lambda: http_client.HTTPConnection("example.com"),
        "http.cookiejar.CookieJar()": lambda: f("http.cookiejar").CookieJar(),
        "urllib.request.Request()": lambda: f("urllib.request").Request("http://x/"),
        "ssl.create_default_context()": lambda: f("ssl").create_default_context(),
        "socket.socket()": lambda: f("socket").socket(),
        "email.message_from_string()": lambda: email.message_from_string("A: b\n\nbody"),
        "EmailMessage()": lambda: f("email.message").EmailMessage(),
        "random.Random()": lambda: f("random").Random(1),
        "decimal.getcontext()": lambda: f("decimal").getcontext(),
        "string.Template()": lambda: f("string").Template("$x"),
        "weakref.finalize()": lambda: f("weakref").finalize(referent, print),
        "json.JSONDecoder()": lambda: f("json").JSONDecoder(),
        "re match": lambda: f("re").compile("a").match("a"),
        "datetime.now()": lambda: f("datetime").datetime.now(),
        "hashlib.sha256()": lambda: f("hashlib").sha256(),
        "hmac.new()": lambda: f("hmac").new(b"k", b"", "sha256"),
        "collections.Counter()": lambda: f("collections").Counter("ab"),
        "io.StringIO()": lambda: f("io").StringIO(),
        "typing.Dict[str, int]": lambda: f("typing").Dict[str, int],
        "functools.partial()": lambda: f("functools").partial(print, 1),
        "functools.lru_cache()": lambda: f("functools").lru_cache(maxsize=2)(len),
        "statistics.NormalDist()": lambda: f("statistics").NormalDist(),
        "fractions.Fraction()": lambda: f("fractions").Fraction(1, 3),
        "urllib3.HTTPConnectionPool()": lambda: f("urllib3").HTTPConnectionPool("localhost"),
        "urllib3.HTTPSConnectionPool()": lambda: f("urllib3").HTTPSConnectionPool("localhost"),
        "urllib3.ProxyManager()": lambda: f("urllib3").ProxyManager("http://localhost:3128"),
        "HTTPSConnection()": lambda: http_client.HTTPSConnection("example.com"),
        "hmac.HMAC()": lambda: f("hmac").HMAC(b"k", digestmod="sha256"),
        "requests.auth.HTTPDigestAuth()": lambda: f("requests.auth").HTTPDigestAuth("u", "p"),
        "email Address": lambda: f("email.headerregistry").Address("A", "a", "b.c"),
        "MIMEText()": lambda: f("email.mime.text").MIMEText("x"),
        "typing.TypeVar()": lambda: f("typing").TypeVar("T"),
        "typing.NewType()": lambda: f("typing").NewType("UserId", int),
        "collections.namedtuple()": lambda: f("collections").namedtuple("P", "x y")(1, 2),
        "http.cookies.SimpleCookie()": lambda: f("http.cookies").SimpleCookie("a=b"),
        "SSLContext.wrap_socket()": lambda: f("ssl").create_default_context().wrap_socket(
            f("socket").socket(), server_hostname="example.com", do_handshake_on_connect=False
        ),
    }
    # Every facade class that constructs without arguments, too.
    for mod in sorted(P.FACADES):
        fac = f(mod)
        for n in P.FACADES[mod]:
            if f"{mod}.{n}" in P.FACADES:
                continue
            cls = getattr(fac, n, None)
            if isinstance(cls, type) and not issubclass(cls, BaseException):
                out.setdefault(f"{mod}.{n}()", cls)
    roots = []
    for name, make in out.items():
        try:
            roots.append((name, make()))
        except Exception as e:
            if isinstance(make, type):
                continue  # needs arguments: covered as a class only
            roots.append((f"{name} failed: {e!r}", None))  # report rather than hide
    return roots


def canaries(run):
    """Roots that must produce findings: proof that the walk can see."""
    import enum
    import functools
    import json as real_json
    import os

    class Holder:
        pass

    Holder.mod = os
    Holder.run = run
    import warnings

    return [
        ("canary.catch_warnings", warnings.catch_warnings()),
        ("canary.class", Holder),
        ("canary.partial", functools.partial(eval)),
        ("canary.dict", {"g": real_json.dumps.__globals__}),
        ("canary.list", [1, [open]]),
        ("canary.types", [type, enum.Enum]),
        ("canary.limits", {"l": run.limits}),
        ("canary.str", "{0.__class__}"),
    ]


def main():
    depth = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    canary = "--canary" in sys.argv
    layer = hx_runtime.make_layer(True, "", lambda message, line: None)
    job = {
        "context": {"channel_id": "c", "bot_id": "bot:b", "players": [{"label": "alice"}]},
        "state": {"k": [1]},
        "bot": {"params": {"p": {}}},
    }
    run = hx_core.Run(job, {"max_posts": 1, "max_post_bytes": 1, "max_state_bytes": 1, "max_output_bytes": 1})
    stream, _text, _seal = hx_core.make_capture(1 << 20)
    # The hook's state, wherever it lives: the Run's attributes and the
    # closure cells of the capture and the layer.
    state = [(v, f"run.{k}") for k, v in vars(run).items() if not isinstance(v, (str, int, bool, type(None)))]
    for what, fn in (("capture", stream.write), ("layer", layer["facade"])):
        for i, cell in enumerate(fn.__closure__ or ()):
            v = cell.cell_contents
            if isinstance(v, (list, dict, set)):
                state.append((v, f"{what} cell {i}"))
    sys.stdout = stream  # as during a hook: sys.stdout is the capture
    sys.stderr = stream
    try:
        roots = [(name, layer["facade"](name)) for name in sorted(P.FACADES)]
        builtins_dict = layer["builtins"]
        roots.append(("<builtins>", builtins_dict))
        roots.append(("ctx", hx_core.make_ctx(run)))
        roots.append(("sys.stdout", stream))
        for name, helper in layer["helpers"].items():
            roots.append((name, helper))
        made = instances(layer)
        if canary:
            made += canaries(run)
        roots += made
        walk = Walk(layer, state, canary)
        live = [r for r in roots if r[1] is not None]
        visited, findings = walk.run(live, [r for r in made if r[1] is not None], depth)
        findings += [f"root {r[0]}" for r in roots if r[1] is None]
        leaked = sorted(
            n for n in P.FORBIDDEN_NAMES | P.NAME_READERS | {"open"} if n in builtins_dict
        )
        findings += [f"<builtins>[{n!r}] is present" for n in leaked]
    finally:
        sys.stdout = sys.__stdout__
        sys.stderr = sys.__stderr__
    print(json.dumps({"visited": visited, "findings": findings}))


if __name__ == "__main__":
    main()
