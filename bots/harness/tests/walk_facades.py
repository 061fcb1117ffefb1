"""Walk everything bot code can reach by attribute from the language layer's
roots, and report what should not be reachable.

Run by test_reachability.py as `python3 -I -S -B walk_facades.py DEPTH` (the
harness's own interpreter flags), it prints one JSON object:
`{"visited": N, "findings": ["sys.stdout.<path> -> <what>", ...]}`.

Roots: every facade of `hx_policy.FACADES` (network ones included), the
builtins dict bot code gets, and `ctx`. Edges: every attribute name the `ast`
check lets a bot write (`dir()` names without a leading underscore, minus
frame/code internals, plus `__init__`/`__name__`/`__doc__`), `type(x)` and the
classes of its MRO (`type(x).mro()`), and the items of dicts, lists, tuples
and sets (subscripting is allowed). Nothing is called except `mro()`.

Forbidden: a real module object (only facades may be reached), a module's
`__dict__`, frames, code objects, tracebacks, and a list of callables that
read by name, evaluate strings, open files or reach the interpreter's
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


def attr_names(obj):
    try:
        names = dir(obj)
    except Exception:
        return []
    out = []
    for n in names:
        if not isinstance(n, str):
            continue
        if n in P.ALLOWED_UNDERSCORE_ATTRS or P.attr_refused(n) is None:
            out.append(n)
    return out


def walk(roots, depth):
    bad = forbidden_objects()
    module_dicts = {id(m.__dict__): name for name, m in list(sys.modules.items()) if m}
    findings = []
    seen = set()
    keep = []  # keep visited objects alive so ids stay unique
    queue = [(obj, path, 0) for path, obj in roots]
    visited = 0
    while queue:
        obj, path, d = queue.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        keep.append(obj)
        visited += 1
        if isinstance(obj, ModuleType) and not isinstance(obj, hx_runtime.Facade):
            findings.append(f"{path} -> the real module {obj.__name__}")
            continue
        if id(obj) in bad and bad[id(obj)][0] is obj:
            findings.append(f"{path} -> {bad[id(obj)][1]}")
            continue
        if isinstance(obj, FRAME_TYPES):
            findings.append(f"{path} -> a {type(obj).__name__}")
            continue
        if type(obj) is dict and id(obj) in module_dicts:
            findings.append(f"{path} -> the globals of {module_dicts[id(obj)]}")
            continue
        if d >= depth:
            continue
        edges = []
        # An instance's own dict, underscore keys included: a bot subclass
        # made with type() can intercept what library code stores on self
        # (a data descriptor or property named `_module` sees the value).
        if not isinstance(obj, (type, ModuleType)):
            try:
                own = object.__getattribute__(obj, "__dict__")
            except Exception:
                own = None
            if type(own) is dict:
                for k, v in list(own.items()):
                    edges.append((f"{path}.{k}", v))
        for n in attr_names(obj):
            try:
                edges.append((f"{path}.{n}", getattr(obj, n)))
            except Exception:
                pass
        t = type(obj)
        edges.append((f"type({path})", t))
        if isinstance(obj, type):
            try:
                for i, c in enumerate(type.mro(obj)):
                    edges.append((f"{path}.mro()[{i}]", c))
            except Exception:
                pass
        if isinstance(obj, dict):
            for i, (k, v) in enumerate(dict.items(obj)):
                if i > 500:
                    break
                edges.append((f"{path}[{k!r}]", v))
        elif isinstance(obj, (list, tuple, set, frozenset)):
            for i, v in enumerate(obj):
                if i > 500:
                    break
                edges.append((f"{path}[{i}]", v))
        for p, v in edges:
            # Plain data ends a path: nothing reachable from an int or str
            # is interesting, and skipping them keeps the walk small.
            if type(v) in (int, float, str, bytes, bool, type(None)):
                continue
            queue.append((v, p, d + 1))
    return visited, findings


def instances():
    """Objects bots typically make; their instance attributes differ from
    their classes'. Built through the facades, as a bot would. Nothing here
    touches the network."""
    f = hx_runtime.facade
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
        "weakref.finalize()": lambda: f("weakref").finalize(hx_core.Ctx, print),
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


def canaries():
    """Roots that must produce findings: proof that the walk can see."""
    import functools
    import json as real_json
    import os

    class Holder:
        pass

    Holder.mod = os
    import warnings

    return [
        ("canary.catch_warnings", warnings.catch_warnings()),
        ("canary.class", Holder),
        ("canary.partial", functools.partial(eval)),
        ("canary.dict", {"g": real_json.dumps.__globals__}),
        ("canary.list", [1, [open]]),
    ]


def main():
    depth = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    hx_runtime.configure(True, "", None)
    sys.stdout = hx_core.Capture(1 << 20)  # as during a hook: sys.stdout is the capture
    sys.stderr = sys.stdout
    try:
        roots = [(name, hx_runtime.facade(name)) for name in sorted(P.FACADES)]
        builtins_dict = hx_runtime.bot_builtins()
        roots.append(("<builtins>", builtins_dict))
        roots.append(("ctx", hx_core.Ctx()))
        roots.append(("format_guard", hx_runtime.format_guard))
        roots += instances()
        if "--canary" in sys.argv:
            roots += canaries()
        visited, findings = walk([r for r in roots if r[1] is not None], depth)
        findings += [f"root {r[0]}" for r in roots if r[1] is None]
        leaked = sorted(n for n in P.FORBIDDEN_NAMES | {"open", "getattr"} if n in builtins_dict)
        findings += [f"<builtins>[{n!r}] is present" for n in leaked]
    finally:
        sys.stdout = sys.__stdout__
        sys.stderr = sys.__stderr__
    print(json.dumps({"visited": visited, "findings": findings}))


if __name__ == "__main__":
    main()
