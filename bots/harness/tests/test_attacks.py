"""Attacks on the language layer, each named after the route it takes and
the mechanism that must stop it. Every one of them worked against the
harness before the mechanism existed (a `match` class pattern reading
`__globals__`, `case str(format=f)`, `type(json)("http")`, a replaced
capture class, an unscrubbed `AttributeError.obj`, a 2,000-deep attribute
chain...); each test asserts the outcome a working mechanism produces, so it
fails if the mechanism breaks.

All run the real entry point (`harness.py` in a subprocess, fd 3 for the
outcome). The OS sandbox stands behind every one of these: the runner's own
attack suite runs them with the language layer off.
"""

import json
import sys
import textwrap

import pytest

from hxrun import error, job, run, run_raw

HEAD = """
import json, sys, typing, collections, functools, traceback, weakref
class Bot:
    def __init__(self, ctx, params):
        self.ctx = ctx
    def on_init(self):
"""


def bot(body, extra="", head=HEAD):
    """`extra` at module level, then a bot whose on_init runs `body`."""
    body = textwrap.indent(textwrap.dedent(body).strip("\n"), " " * 8)
    return textwrap.dedent(extra) + head + body + "\n"


def line_of(source, marker):
    """1-based line of the first line of `source` containing `marker`."""
    for i, ln in enumerate(source.splitlines(), 1):
        if marker in ln:
            return i
    raise AssertionError(f"{marker!r} not in the source")


def policy(outcome, line, *needles):
    err = error(outcome)
    assert err["kind"] == "policy", err
    assert err["line"] == line, err
    for n in needles:
        assert n in err["message"], err
    return err


def ok(outcome):
    assert outcome["status"] == "ok", outcome
    return outcome


def refused_statically(source, marker, *needles, network=False):
    """Refused by the checker (the `inspect` hook, which runs no bot code)
    and so by every hook, at the marked line."""
    line = line_of(source, marker)
    policy(run(source, "inspect", network=network), line, *needles)
    policy(run(source, network=network), line, *needles)


# ------------------------------------------------------------ match
#
# Mechanism: the checker. `case C(p)` makes Python read the attribute named
# by `C.__match_args__[0]`, a name held as data, and a metaclass with
# `__instancecheck__` makes any subject match. So positional sub-patterns
# are refused unless C is one of the builtins that match the subject itself,
# and keyword sub-patterns follow the attribute rules.

GLOBALS_BY_MATCH = """
M = type("M", (type,), {"__instance" + "check__": lambda cls, x: True})
G = M("G", (), {"__match" + "_args__": ("__glo" + "bals__",)})
def leak(ctx):
    match ctx.post:
        case G(g):  # <- positional
            run = g.get("_RUN")
            run.labels.add("mallory")
            run.limits["max_posts"] = 1000
"""


def test_match_positional_pattern_reading_globals_is_refused_by_the_checker():
    src = bot("leak(self.ctx)\nself.ctx.post('x', 1, to='mallory')", extra=GLOBALS_BY_MATCH)
    refused_statically(src, "# <- positional", "Class pattern", "positional")


def test_match_positional_pattern_on_a_plain_bot_class_is_refused():
    # No metaclass and no dunders: the class is the bot's own, but its
    # __match_args__ could be anything by the time the pattern runs.
    src = bot(
        """
        match self.ctx:
            case P(x):  # <- here
                pass
        """,
        extra="class P:\n    pass\n",
    )
    refused_statically(src, "# <- here", "'P(...)'")


@pytest.mark.parametrize("binding", ["int = G", "def f(int):\n    pass", "import json as int", "for int in []:\n    pass"])
def test_match_positional_pattern_on_a_rebound_builtin_name_is_refused(binding):
    src = bot(
        """
        match 3:
            case int(g):  # <- here
                pass
        """,
        extra="G = 1\n" + binding + "\n",
    )
    refused_statically(src, "# <- here", "'int'")


def test_match_positional_patterns_on_builtins_still_work():
    src = bot(
        """
        out = []
        for v in [3, "s", [1, 2], {"k": 1}, 2.5, (1,), True, b"b"]:
            match v:
                case bool(b):
                    out.append(["bool", b])
                case int(n) | float(n):
                    out.append(["num", n])
                case str(s) | bytes(s):
                    out.append(["str", str(s)])
                case list([a, b]):
                    out.append(["pair", a + b])
                case dict({"k": k}):
                    out.append(["k", k])
                case tuple(t):
                    out.append(["tuple", len(t)])
        self.ctx.post("r", out)
        """
    )
    assert ok(run(src))["posts"][0]["body"] == [
        ["num", 3], ["str", "s"], ["pair", 3], ["k", 1], ["num", 2.5],
        ["tuple", 1], ["bool", True], ["str", "b'b'"],
    ]


def test_match_keyword_pattern_format_is_refused_by_the_checker():
    # `case str(format=f)` read the real `str.format`, past the guard that
    # every `x.format` in bot code goes through.
    src = bot(
        """
        match "{0.__class__.__base__.__subclasses__}":
            case str(format=f):  # <- keyword
                self.ctx.post("leak", f(1)[:40])
        """
    )
    refused_statically(src, "# <- keyword", "'format'")


def test_augmented_assignment_to_format_is_refused_by_the_checker():
    # `s.format += m` reads the real `s.format` (no guard: the target is a
    # store) and hands it to `m.__radd__`.
    src = bot(
        """
        s = "{0." + "__class__}"
        try:
            s.format += M()  # <- here
        except AttributeError:
            pass
        self.ctx.post("leak", got[0](1))
        """,
        extra="got = []\nclass M:\n    def __radd__(self, other):\n        got.append(other)\n        return 0\n",
    )
    refused_statically(src, "# <- here", "'.format'")


@pytest.mark.parametrize("target", ["x.format_map", "x.gi_frame", "sys.modules"])
def test_augmented_assignment_reads_follow_the_attribute_rules(target):
    src = bot(f"x = 1\n{target} += 1  # <- here")
    refused_statically(src, "# <- here", target.rpartition(".")[2])


@pytest.mark.parametrize(
    "kw,needle",
    [
        ("format_map=f", "'format_map'"),
        ("__class__=f", "'__class__'"),
        ("__globals__=f", "'__globals__'"),
        ("gi_frame=f", "frame and code internals"),
        ("f_back=f", "frame and code internals"),
        ("mro=f", "'mro'"),
    ],
)
def test_match_keyword_patterns_follow_the_attribute_rules(kw, needle):
    src = bot(f"match self.ctx:\n    case object({kw}):  # <- keyword\n        pass")
    refused_statically(src, "# <- keyword", needle)


def test_match_keyword_patterns_with_ordinary_names_work():
    src = bot(
        """
        match Point(1, 2):
            case Point(x=0, y=y):
                self.ctx.post("r", ["on the y axis", y])
            case Point(x=x, y=y):
                self.ctx.post("r", [x, y])
        """,
        extra="class Point:\n    def __init__(self, x, y):\n        self.x = x\n        self.y = y\n",
    )
    assert ok(run(src))["posts"][0]["body"] == [1, 2]


# ------------------------------------------------------------ type()
#
# Mechanism: the bot's `type` is a guard. type(x) answers as usual, but
# never with a metaclass other than `type` itself; type(name, bases, dict)
# refuses a dict with special methods or `_` names; no class may derive
# from type. Facades are plain module objects, so type(json) is the module
# type, which builds empty modules only.


def test_type_of_a_facade_cannot_build_a_facade_of_another_module():
    # Before: type(json) was the facade class, and type(json)("http") the
    # http facade, with http.client behind it, in a bot without network.
    src = bot(
        """
        m = type(json)("http")
        try:
            got = m.client.HTTPConnection.__name__
        except AttributeError as e:
            got = "no client: " + str(e)
        self.ctx.post("r", got)
        """
    )
    got = ok(run(src))["posts"][0]["body"]
    assert got.startswith("no client"), got


def test_type_of_a_facade_is_the_plain_module_type():
    src = bot("self.ctx.post('r', [type(json).__name__, type(json) is type(sys)])")
    assert ok(run(src))["posts"][0]["body"] == ["module", True]


@pytest.mark.parametrize(
    "expr",
    [
        "type('Q', (), {'__ex' + 'it__': lambda *a: True})",
        "type('Q', (), {'__match' + '_args__': ('x',)})",
        "type('Q', (), {'__instance' + 'check__': lambda c, x: True})",
        "type('Q', (), {'__del' + '__': lambda s: None})",
        "type('Q', (), {'_private': 1})",
        "type('Q', (), {}, extra=1)",
        "type('Q', (), {1: 2})",
    ],
)
def test_type_with_a_dict_of_special_methods_is_refused_at_run_time(expr):
    src = bot(f"Q = {expr}  # <- here")
    policy(run(src), line_of(src, "# <- here"), "type(")


def test_a_class_deriving_from_type_is_refused_at_run_time():
    src = bot("class M(type):  # <- here\n    pass")
    policy(run(src), line_of(src, "# <- here"), "metaclass")


def test_a_metaclass_keyword_is_refused_by_the_checker():
    src = bot("pass", extra="def meta(name, bases, ns):\n    return 1\nclass C(metaclass=meta):  # <- here\n    pass\n")
    refused_statically(src, "# <- here", "metaclass")


def test_type_of_a_class_with_a_metaclass_is_refused_at_run_time():
    # ABCMeta would build classes from a plain dict, like type().
    src = bot("m = type(collections.abc.Mapping)  # <- here")
    policy(run(src), line_of(src, "# <- here"), "metaclass")


def test_typing_get_origin_hands_out_the_guard_not_the_real_type():
    src = bot(
        """
        t = typing.get_origin(typing.Type[int])
        try:
            t("Q", (), {"__ex" + "it__": lambda *a: True})  # <- here
        except TypeError:
            pass
        """
    )
    policy(run(src), line_of(src, "# <- here"), "type(")


def test_typing_get_args_hands_out_the_guard_not_the_real_type():
    src = bot(
        """
        out = []
        for tp in [typing.Type[type], typing.Callable[[type], int], typing.Union[int, type],
                   list[type], typing.Annotated[type, "x"]]:
            args = typing.get_args(tp)
            flat = [a for x in args for a in (x if isinstance(x, list) else [x])]
            out.append([a is type for a in flat if a is type or a is int])
        self.ctx.post("r", out)
        """
    )
    assert ok(run(src))["posts"][0]["body"] == [[True], [True, False], [False, True], [True], [True]]


def test_type_still_answers_ordinary_questions():
    src = bot(
        """
        class P:
            pass
        Q = type("Q", (P,), {"x": 1, "__doc__": "made by type()"})
        def annotated(a: type | None = None, b: type[P] = P, c: "type[int]" = int):
            return a
        try:
            type[P]()
            called = "called"
        except TypeError:
            called = "refused"  # typing.Type cannot be called (it would be the real type)
        out = [type(3) is int, type(P()).__name__, isinstance(P, type), issubclass(bool, int),
               isinstance(3, type), issubclass(Q, type), type(int) is type, type(type) is type,
               Q().x, isinstance(Q(), P), repr(type), type.__name__, annotated(int) is int, called]
        self.ctx.post("r", out)
        """
    )
    assert ok(run(src))["posts"][0]["body"] == [
        True, "P", True, True, False, False, True, True, 1, True, "<class 'type'>", "type", True, "refused",
    ]


def test_enum_class_factories_are_out_of_reach_of_mro():
    # Enum("E", {"__exit__": f}) builds a class with any special method;
    # the enum classes bots reach all have members (which refuse that), and
    # `mro` (the way up to enum.Enum itself) is refused.
    src = bot("e = json.JSONDecodeError.mro()  # <- here")
    refused_statically(src, "# <- here", "'mro'")


# ------------------------------------------------------------ harness state
#
# Mechanism: closures, not attributes. ctx and the print capture are
# instances of a builtin type (SimpleNamespace) whose functions keep the
# hook's state in closure cells; no class or state object of the harness
# is on any object bot code can reach (test_reachability walks them).


def test_the_capture_class_cannot_be_replaced_to_lift_the_log_limit():
    src = bot(
        """
        try:
            type(sys.stdout).text = lambda self: "x" * 200000
        except TypeError:
            print("refused")
        try:
            type(sys.stdout).write = lambda self, s: None
        except TypeError:
            print("refused")
        print("y" * 100000)
        """
    )
    logs = ok(run(src))["logs"]
    assert logs.startswith("refused\nrefused\nyyy"), logs[:40]
    assert len(logs) < 70 * 1024 and "characters dropped" in logs, len(logs)


def test_replacing_the_captures_write_does_not_unbound_it():
    # The capture is the bot's to mutate (it is sys.stdout): replacing its
    # `write` diverts the bot's own prints, and the harness still reads its
    # own bounded buffer.
    src = bot(
        """
        print("before")
        sys.stdout.write = lambda s: 0
        print("z" * 100000)
        """
    )
    assert ok(run(src))["logs"] == "before\n"


def test_breaking_the_captures_functions_does_not_break_the_harness_exit():
    # sys.stdout is the bot's capture namespace; the harness flushes the
    # real streams on its way out, so nothing the bot replaced runs then.
    src = bot(
        """
        sys.stdout.flush = None
        sys.stderr.write = None
        self.ctx.post("x", 1)
        """
    )
    outcome, stdout, stderr, rc = run_raw(json.dumps(job(src)).encode())
    assert (rc, stdout, stderr) == (0, b"", b""), (rc, stdout, stderr)
    assert outcome["posts"] == [{"type": "x", "body": 1}], outcome


def test_ctx_class_cannot_be_changed():
    src = bot(
        """
        out = []
        for name in ["post", "set_state"]:
            try:
                setattr_target = type(self.ctx)
                if name == "post":
                    setattr_target.post = lambda *a: None
                else:
                    setattr_target.set_state = lambda *a: None
                out.append("changed")
            except TypeError:
                out.append("refused")
        self.ctx.post("r", out)
        """
    )
    assert ok(run(src))["posts"] == [{"type": "r", "body": ["refused", "refused"]}]


def test_ctx_functions_keep_no_state_in_attributes():
    # Replacing ctx's functions on the bot's own ctx changes nothing the
    # harness reads: posts are made through the closures it kept.
    src = bot(
        """
        post = self.ctx.post
        self.ctx.post = None
        self.ctx.get_state = None
        post("still", 1)
        """
    )
    assert ok(run(src))["posts"] == [{"type": "still", "body": 1}]


# ------------------------------------------------------------ exceptions
#
# Mechanism: the scrub. Every exception that enters bot code (in an except
# clause, or as an argument of any bot function, which covers `__exit__`
# however its class was made) is scrubbed first: `AttributeError.obj`
# cleared, tracebacks cut to bot frames, and the same for its context,
# cause, group members, args and exception-valued attributes.

def test_tracebacks_reaching_bot_code_hold_only_bot_frames():
    # A caught exception's traceback (and so traceback.format_exception)
    # shows bot frames only: library frames hold library globals.
    src = bot(
        """
        try:
            json.loads("{not json")
        except ValueError as e:
            text = "".join(traceback.format_exception(e))
        self.ctx.post("r", text)
        """
    )
    text = ok(run(src))["posts"][0]["body"]
    assert 'File "bot.py"' in text and "json.loads" in text, text
    assert "decoder.py" not in text and "json/__init__" not in text, text


def test_context_and_cause_chains_are_scrubbed_too():
    # requests raises InvalidURL while handling urllib3's LocationParseError;
    # both tracebacks are cut to bot frames before the bot sees either.
    src = bot(
        """
        import requests
        try:
            requests.Request("GET", "http://[::1").prepare()
        except requests.exceptions.InvalidURL as e:
            text = "".join(traceback.format_exception(e))
        self.ctx.post("r", text)
        """
    )
    text = ok(run(src, network=True))["posts"][0]["body"]
    assert "During handling" in text and "LocationParseError" in text, text
    assert "/requests/" not in text and "/urllib3/" not in text, text
    assert 'File "bot.py"' in text, text


def test_exceptions_handed_to_a_bot_callback_by_library_code_are_scrubbed():
    # urllib3 hands the connection error (and a traceback) to
    # Retry.increment, which a bot subclass may override: the argument
    # scrub that every bot function starts with cuts it to bot frames.
    src = bot(
        """
        import urllib3
        got = []
        class R(urllib3.Retry):
            def increment(self, *args, **kwargs):
                err = kwargs.get("error")
                got.append("".join(traceback.format_exception(err)))
                raise ValueError("stop")
        pool = urllib3.PoolManager(retries=R(0))
        try:
            pool.request("GET", "http://127.0.0.1:9/")
        except ValueError:
            pass
        self.ctx.post("r", got)
        """
    )
    got = ok(run(src, network=True))["posts"][0]["body"]
    assert len(got) == 1 and "NewConnectionError" in got[0], got
    assert "/urllib3/" not in got[0] and "socket.py" not in got[0], got[0]


def test_the_scrub_clears_obj_and_non_string_names_of_exceptions_given_to_bot_functions():
    src = bot(
        """
        def look(e):
            return [e.obj is None, e.name is None, e.args[0] == "m", k.name]
        k = AttributeError("k", name="kept")
        e = AttributeError("m", name=[1], obj=[2])
        self.ctx.post("r", look(e))
        """
    )
    assert ok(run(src))["posts"][0]["body"] == [True, True, True, "kept"]


# ------------------------------------------------------------ the checker
#
# Mechanism: the checker walks the tree with an explicit stack and refuses
# nesting deeper than 200 levels (Python itself refuses more than 200 nested
# parentheses), with the line where it happens.


@pytest.mark.parametrize(
    "kind,expr",
    [
        ("attribute", "a" + ".b" * 2000),
        ("binary", " + ".join(["a"] * 2000)),
        ("subscript", "a" + "[0]" * 2000),
        ("not", "not " * 2000 + "a"),
        ("minus", "-" * 2000 + "a"),
        ("lambda", "lambda: " * 300 + "1"),
    ],
    ids=lambda v: v if len(v) < 20 else "",
)
def test_deep_nesting_is_refused_with_a_line(kind, expr):
    src = bot("pass", extra=f"a = 1\n\nx = {expr}  # <- deep\n")
    outcome = run(src, "inspect")
    err = policy(outcome, line_of(src, "# <- deep"), "nested")
    assert "200" in err["message"], err
    policy(run(src), line_of(src, "# <- deep"), "nested")


def test_deep_elif_chains_are_refused_with_a_line():
    src = bot("pass", extra="a = 1\nif a:\n    pass\n" + "elif a:\n    pass\n" * 400)
    err = error(run(src, "inspect"))
    assert err["kind"] == "policy" and "nested" in err["message"], err
    assert err["line"] is not None and err["line"] > 200, err


def test_a_deep_manifest_literal_is_refused_without_running_code():
    src = "MANIFEST = {'params': " + "-" * 2000 + "1}\n" + bot("pass")
    policy(run(src, "inspect"), 1, "nested")
    # The checker is off only for the runner's OS-layer tests; the manifest
    # reader still must not crash there.
    out, _, err, rc = run_raw(json.dumps(job(src, unchecked=True)).encode())
    assert rc == 0 and out is not None, err


def test_moderate_nesting_still_works():
    src = bot("self.ctx.post('r', x)", extra="x = " + " + ".join(["1"] * 150) + "\n")
    assert ok(run(src))["posts"][0]["body"] == 150


# ------------------------------------------------------------ after the hook
#
# Mechanism: the seal. When the hook returns, `ctx` and the capture stop
# accepting anything, garbage collection is off and the bot's objects stay
# alive until the process exits, so no finalizer, generator `finally` or
# weakref callback runs after the outcome is decided.


def test_code_running_after_the_hook_cannot_post_or_print():
    # Left on the bot (no reference cycle, so the bot's last reference
    # going away would close the generator and fire the finalizer at once):
    # a generator whose `finally` prints and posts, and a finalizer.
    src = bot(
        """
        self.gen = late(self.ctx)
        next(self.gen)
        self.box = Box()
        weakref.finalize(self.box, print, "late finalizer")
        self.ctx.post("on_time", 1)
        """,
        extra="""
        def late(ctx):
            try:
                yield 1
            finally:
                print("late print")
                ctx.post("late", 1)
        class Box:
            pass
        """,
    )
    outcome, stdout, stderr, rc = run_raw(json.dumps(job(src)).encode())
    assert rc == 0, stderr
    assert outcome["status"] == "ok" and outcome["posts"] == [{"type": "on_time", "body": 1}], outcome
    assert outcome["logs"] == ""
    assert stdout == b"" and stderr == b"", (stdout, stderr)


def test_a_failing_hooks_error_text_is_taken_inside_the_hook():
    # str() of a bot exception runs bot code (its __str__); the harness
    # takes it while the hook is still running, never after the seal.
    src = bot(
        """
        raise Boom("x")
        """,
        extra="class Boom(Exception):\n    def __str__(self):\n        print('in str')\n        return 'boom text'\n",
    )
    err = error(run(src))
    assert err["kind"] == "exception" and err["message"] == "Boom: boom text", err


# ------------------------------------------------------------ getattr, hasattr
#
# Mechanism: the checker. getattr and hasattr are allowed with a literal
# name, which then follows the attribute rules; any other use (a computed
# name, an alias) is refused, and neither is in the bot's builtins.


def test_getattr_and_hasattr_with_literal_names_work():
    src = bot(
        """
        class P:
            x = 1
        p = P()
        self.ctx.post("r", [getattr(p, "x"), getattr(p, "y", 7), hasattr(p, "x"), hasattr(p, "y"),
                            getattr(json, "dumps")([1]), hasattr(sys, "version"),
                            getattr("{}!", "format")("hi")])
        """
    )
    assert ok(run(src))["posts"][0]["body"] == [1, 7, True, False, "[1]", True, "hi!"]


@pytest.mark.parametrize(
    "expr,needle",
    [
        ("getattr(p, name)", "literal"),
        ("getattr(p, '__class__')", "'__class__'"),
        ("getattr(p, 'gi_frame', None)", "frame and code internals"),
        ("hasattr(p, name)", "literal"),
        ("hasattr(p, '__globals__')", "'__globals__'"),
        ("getattr(sys, 'modules', None)", "'sys.modules'"),
        ("g = getattr", "literal"),
        ("[hasattr][0](p, 'x')", "literal"),
        ("getattr(p, *names)", "literal"),
        ("getattr(p, 'x', None, 1)", "literal"),
    ],
)
def test_getattr_and_hasattr_refusals(expr, needle):
    src = bot(f"p = 1\nname = 'x'\nnames = ['x']\n{expr}  # <- here")
    refused_statically(src, "# <- here", needle)


def test_getattr_of_format_with_a_dunder_template_is_refused_at_run_time():
    src = bot("f = getattr('{0.' + '__class__}', 'format')\nf(1)  # <- here")
    policy(run(src), line_of(src, "# <- here"), "format field")


# ------------------------------------------------------------ beyond the list


def test_namedtuple_cannot_define_special_methods():
    # collections.namedtuple generates code from its field names; CPython
    # refuses names with a leading underscore, and rename=True renames them.
    src = bot(
        """
        out = []
        try:
            collections.namedtuple("P", ["x", "__class__"])
        except ValueError as e:
            out.append("refused")
        P = collections.namedtuple("P", ["x", "__class__"], rename=True)
        out.append(list(P(1, 2)))
        self.ctx.post("r", out)
        """
    )
    assert ok(run(src))["posts"][0]["body"] == ["refused", [1, 2]]


@pytest.mark.parametrize("expr", ["f'{x.__class__}'", "f'{x!r:{x.gi_frame}}'", "f'{x.mro()}'"])
def test_f_strings_are_ordinary_code_to_the_checker(expr):
    # An f-string compiles to attribute reads and calls of repr()/format()
    # that the checker sees like any other code.
    src = bot(f"x = 1\ns = {expr}  # <- here")
    refused_statically(src, "# <- here", "Attribute")


@pytest.mark.skipif(sys.version_info < (3, 12), reason="type parameter syntax is Python 3.12+")
@pytest.mark.parametrize("decl", ["def f[_t]():\n    pass", "class C[**_p]:\n    pass", "type _A = int"])
def test_type_parameters_follow_the_name_rules(decl):
    src = bot("pass", extra=decl.replace("\n", "  # <- here\n", 1) + ("" if "\n" in decl else "  # <- here") + "\n")
    refused_statically(src, "# <- here", "'_")


@pytest.mark.skipif(sys.version_info < (3, 12), reason="type parameter syntax is Python 3.12+")
def test_type_parameters_work():
    src = bot(
        "self.ctx.post('r', [Box(1).v, first([2, 3])])",
        extra="class Box[T]:\n    def __init__(self, v):\n        self.v = v\n"
        "def first[U](xs: list[U]) -> U:\n    return xs[0]\ntype Pair = tuple[int, int]\n",
    )
    assert ok(run(src))["posts"][0]["body"] == [1, 2]


def test_a_value_handed_to_ctx_runs_none_of_its_methods_while_it_is_copied():
    # `ctx.set_state` and `ctx.post` copy what they get (`plain_sized`:
    # `marshal` for exact types, which refuses subclasses without calling
    # anything, else `plain`, which reads subclasses through the base
    # types' own methods). Subclasses that override every method a copy,
    # a size or an encoder might call must see none of them called, and
    # the copy is the base types' values.
    src = bot(
        """
        self.ctx.set_state(VALUE)
        self.ctx.post("v", VALUE)
        self.ctx.post("v", L([VALUE, S("s"), I(7)]))
        self.ctx.post("ran", list(RAN))
        """,
        extra="""
RAN = []
# Each override records its call and answers nonsense: a copy that called
# one would be wrong as well as recorded.
class D(dict):
    def __iter__(self): RAN.append("D.iter"); return iter(())
    def __len__(self): RAN.append("D.len"); return 0
    def __getitem__(self, k): RAN.append("D.getitem"); return None
    def __contains__(self, k): RAN.append("D.contains"); return False
    def items(self): RAN.append("D.items"); return []
    def keys(self): RAN.append("D.keys"); return []
    def values(self): RAN.append("D.values"); return []
    def get(self, k, d=None): RAN.append("D.get"); return None
    def copy(self): RAN.append("D.copy"); return {}
class L(list):
    def __iter__(self): RAN.append("L.iter"); return iter(())
    def __len__(self): RAN.append("L.len"); return 0
    def __getitem__(self, i): RAN.append("L.getitem"); return None
    def __reversed__(self): RAN.append("L.reversed"); return iter(())
    def copy(self): RAN.append("L.copy"); return []
class S(str):
    def __str__(self): RAN.append("S.str"); return "x"
    def __repr__(self): RAN.append("S.repr"); return "'x'"
    def __format__(self, f): RAN.append("S.format"); return "x"
    def __len__(self): RAN.append("S.len"); return 0
    def __iter__(self): RAN.append("S.iter"); return iter(())
    def __getitem__(self, i): RAN.append("S.getitem"); return "x"
    def __eq__(self, o): RAN.append("S.eq"); return False
    def __hash__(self): RAN.append("S.hash"); return 0
    def encode(self, *a): RAN.append("S.encode"); return b"x"
    def isascii(self): RAN.append("S.isascii"); return True
class I(int):
    def __int__(self): RAN.append("I.int"); return 0
    def __index__(self): RAN.append("I.index"); return 0
    def __repr__(self): RAN.append("I.repr"); return "0"
    def __str__(self): RAN.append("I.str"); return "0"
    def __format__(self, f): RAN.append("I.format"); return "0"
    def __eq__(self, o): RAN.append("I.eq"); return False
    def __hash__(self): RAN.append("I.hash"); return 0
    def __bool__(self): RAN.append("I.bool"); return False
class F(float):
    def __float__(self): RAN.append("F.float"); return 0.0
    def __repr__(self): RAN.append("F.repr"); return "0.0"
    def __str__(self): RAN.append("F.str"); return "0.0"
    def __eq__(self, o): RAN.append("F.eq"); return False
    def __ne__(self, o): RAN.append("F.ne"); return True
    def __hash__(self): RAN.append("F.hash"); return 0
VALUE = D({S("k"): L([I(1), F(2.5), S("v"), D({"n": L([])})])})
RAN.clear()
""",
    )
    out = ok(run(src))
    assert out["posts"][-1] == {"type": "ran", "body": []}
    plain_value = {"k": [1, 2.5, "v", {"n": []}]}
    assert out["state"] == plain_value
    assert out["posts"][0]["body"] == plain_value
    assert out["posts"][1]["body"] == [plain_value, "s", 7]


def test_percent_formatting_reads_mappings_not_attributes():
    src = bot(
        """
        class M:
            def __getitem__(self, k):
                return "<" + k + ">"
        self.ctx.post("r", "%(__class__)s %(x)s" % M())
        """
    )
    assert ok(run(src))["posts"][0]["body"] == "<__class__> <x>"


@pytest.mark.parametrize(
    "name",
    [
        "__del__", "__getattr__", "__getattribute__", "__setattr__", "__delattr__",
        "__init_subclass__", "__class_getitem__", "__set_name__", "__mro_entries__",
        "__get__", "__set__", "__delete__", "__reduce__", "__reduce_ex__", "__getstate__",
        "__setstate__", "__copy__", "__deepcopy__", "__instancecheck__", "__subclasscheck__",
        "__subclasshook__", "__new__", "__dir__", "__prepare__", "__aexit__", "__fspath__",
    ],
)
def test_special_methods_that_hook_the_machinery_are_refused(name):
    src = bot("pass", extra=f"class C:\n    def {name}(self, *a):  # <- here\n        pass\n")
    refused_statically(src, "# <- here", f"'{name}'")
