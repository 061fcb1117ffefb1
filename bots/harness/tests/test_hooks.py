"""Positive controls and the `ctx` API: ordinary Python works under the
language layer, hooks produce posts and state, limits hold, failures come
back as structured errors on fd 3. All through the real entry point."""

import json
import subprocess
import textwrap

import pytest

from hxrun import DIST_PACKAGES, HARNESS, PYTHON, check, error, job, run, run_raw
import hx_policy

HEAD = """
class Bot:
    def __init__(self, ctx, params):
        self.ctx = ctx
        self.params = params
"""


def bot(on_init_body, extra=""):
    """A bot whose on_init runs `on_init_body` (8-space indented)."""
    body = textwrap.indent(textwrap.dedent(on_init_body).strip("\n"), " " * 8)
    return extra + HEAD + "    def on_init(self):\n" + body + "\n"


def ok(outcome):
    assert outcome["status"] == "ok", outcome
    return outcome


# --------------------------------------------------------- plain Python works


def test_for_loops_comprehensions_and_generators_work():
    out = ok(
        run(
            bot(
                """
                total = 0
                for i in range(10):
                    if i % 2:
                        continue
                    total += i
                else:
                    total += 1000
                squares = [i * i for i in range(5)]
                evens = {i for i in range(10) if i % 2 == 0}
                table = {k: v for k, v in zip("abc", range(3))}
                def gen(n):
                    for i in range(n):
                        yield i * 10
                    yield from range(2)
                nested = [[x * y for x in range(3)] for y in range(2)]
                lazy = sum(x for x in range(4))
                while total > 2000:
                    total -= 1
                for _ in range(2):
                    pass
                self.ctx.post("r", {"total": total, "squares": squares, "evens": sorted(evens),
                                    "table": table, "gen": list(gen(3)), "nested": nested, "lazy": lazy})
                """
            )
        )
    )
    assert out["posts"] == [
        {
            "type": "r",
            "body": {
                "total": 1020,
                "squares": [0, 1, 4, 9, 16],
                "evens": [0, 2, 4, 6, 8],
                "table": {"a": 0, "b": 1, "c": 2},
                "gen": [0, 10, 20, 0, 1],
                "nested": [[0, 0, 0], [0, 1, 2]],
                "lazy": 6,
            },
        }
    ]


def test_classes_inheritance_exceptions_and_formatting_work():
    extra = '''
class GameError(Exception):
    pass

class Base:
    def __init__(self, ctx, params):
        self.ctx = ctx
    def describe(self):
        return "base"

class Card:
    def __init__(self, rank):
        self.rank = rank
    def __repr__(self):
        return f"Card({self.rank!r})"
    def __eq__(self, other):
        return isinstance(other, Card) and other.rank == self.rank
    def __hash__(self):
        return hash(self.rank)

class Ctx:
    def __init__(self):
        self.n = 0
    def __enter__(self):
        self.n += 1
        return self
    def __exit__(self, *exc):
        self.n += 10
        return False
'''
    src = extra + '''
class Bot(Base):
    """Plays cards."""
    def __init__(self, ctx, params):
        super().__init__(ctx, params)
        self.name = type(self).__name__
    def on_init(self):
        out = []
        try:
            raise GameError("bad move")
        except GameError as e:
            out.append(str(e))
        finally:
            out.append("finally")
        try:
            {}["missing"]
        except (KeyError, ValueError) as e:
            out.append(type(e).__name__)
        with Ctx() as c:
            pass
        out.append(c.n)
        out.append(repr(Card(3)))
        out.append(Card(3) == Card(3))
        out.append(len({Card(1), Card(1)}))
        out.append("{} and {}".format("a", "b"))
        out.append("{0[k]} {x.real}".format({"k": 1}, x=2))
        out.append("{name}".format_map({"name": "m"}))
        out.append("%s-%d" % ("p", 4))
        out.append(f"{self.name}:{super().describe()}")
        out.append(sorted([3, 1, 2], key=lambda v: -v))
        out.append(type(1) is int and isinstance(int, type))
        self.ctx.post("r", out)
'''
    out = ok(run(src))
    assert out["posts"][0]["body"] == [
        "bad move",
        "finally",
        "KeyError",
        11,
        "Card(3)",
        True,
        1,
        "a and b",
        "1 2",
        "m",
        "p-4",
        "Bot:base",
        [3, 2, 1],
        True,
    ]


def test_every_allowlisted_module_imports_and_exposes_its_names():
    """Each facade module imports from bot code (network ones with network
    on), and every listed attribute this Python has is reachable by name."""
    import importlib
    import sys

    sys.path.append(DIST_PACKAGES)
    lines = []
    for mod, names in sorted(hx_policy.FACADES.items()):
        real = importlib.import_module(mod)
        lines.append(f"import {mod}")
        for n in names:
            if f"{mod}.{n}" in hx_policy.FACADES or hasattr(real, n):
                lines.append(f"seen.append({mod}.{n} is not None)")
    body = "seen = []\n" + "\n".join(lines) + "\nself.ctx.post('n', len(seen))"
    out = ok(run(bot(body), network=True))
    assert out["posts"][0]["body"] == len(lines) - len(hx_policy.FACADES)


@pytest.mark.parametrize("mod", sorted(hx_policy.CORE | hx_policy.UTILITIES))
def test_core_and_utility_modules_import_without_network(mod):
    ok(run(bot(f"import {mod}\nself.ctx.post('m', {mod}.__name__)")))


def test_from_imports_of_submodules_work():
    out = ok(
        run(
            bot(
                """
                from email import utils
                from email.mime.text import MIMEText
                from collections import abc, Counter
                from urllib.parse import quote
                m = MIMEText("hello")
                self.ctx.post("r", [utils.parseaddr("A <a@b.c>")[1], isinstance({}, abc.Mapping),
                                    Counter("aab")["a"], quote("a b"), m.get_content_type()])
                """
            ),
            network=True,
        )
    )
    assert out["posts"][0]["body"] == ["a@b.c", True, 2, "a%20b", "text/plain"]


def test_urlopen_refuses_file_urls():
    out = run(bot("import urllib.request\nurllib.request.urlopen('file:///etc/passwd')"), network=True)
    err = error(out)
    assert err["kind"] == "policy" and "http" in err["message"], err


def test_traceback_facade_formats_bot_lines():
    out = ok(
        run(
            bot(
                """
                import traceback
                try:
                    1 / 0
                except ZeroDivisionError:
                    print(traceback.format_exc())
                """
            )
        )
    )
    assert 'File "bot.py"' in out["logs"] and "1 / 0" in out["logs"], out["logs"]


# --------------------------------------------------------- ctx


def test_ctx_exposes_the_channel():
    out = ok(
        run(
            bot(
                """
                c = self.ctx
                self.ctx.post("info", {"channel": c.channel_id, "bot": c.bot_id,
                    "players": c.players, "workspace": c.workspace, "params": c.params,
                    "mine": self.params})
                """
            ),
            params={"max": 7},
        )
    )
    body = out["posts"][0]["body"]
    assert body["channel"] == "ch1" and body["bot"] == "bot:ref"
    assert body["players"][0] == {"label": "alice", "slot": "invite:alice", "filled": True}
    assert body["workspace"] == "/tmp"
    assert body["params"] == {"max": 7} and body["mine"] == {"max": 7}


def test_state_round_trips_between_hooks():
    src = HEAD + (
        "    def on_init(self):\n"
        "        self.ctx.set_state({'secret': 42, 'seen': []})\n"
        "    def on_join(self, player):\n"
        "        s = self.ctx.get_state()\n"
        "        s['seen'].append(player)\n"
        "        self.ctx.set_state(s)\n"
        "    def on_message(self, msg):\n"
        "        self.ctx.post('state', {'s': self.ctx.get_state(), 'msg': msg})\n"
    )
    first = ok(run(src))
    assert first["state"] == {"secret": 42, "seen": []}
    second = ok(run(src, {"name": "on_join", "player": "bob"}, state=first["state"]))
    assert second["state"] == {"secret": 42, "seen": ["bob"]}
    third = ok(run(src, {"name": "on_message", "message": {"body": "hi"}}, state=second["state"]))
    assert third["posts"][0]["body"] == {"s": {"secret": 42, "seen": ["bob"]}, "msg": {"body": "hi"}}
    assert third["state"] == second["state"]


def test_get_state_returns_a_copy():
    out = ok(run(bot("s = self.ctx.get_state()\ns['x'] = 1"), state={"a": 1}))
    assert out["state"] == {"a": 1}


def test_a_state_the_bot_changes_after_handing_it_over_stays_as_handed_over():
    # `set_state` and `post` keep copies: later changes to the bot's own
    # objects do not reach the outcome, and a list used twice is two lists.
    src = bot(
        """
        shared = [1]
        s = {"a": shared, "b": shared}
        self.ctx.set_state(s)
        self.ctx.post("p", s)
        shared.append(2)
        s["c"] = 3
        t = self.ctx.get_state()
        t["a"].append(9)
        self.ctx.post("q", [t, self.ctx.get_state()])
        """
    )
    out = ok(run(src))
    assert out["state"] == {"a": [1], "b": [1]}
    assert out["posts"][0]["body"] == {"a": [1], "b": [1]}
    assert out["posts"][1]["body"] == [{"a": [1, 9], "b": [1]}, {"a": [1], "b": [1]}]


def test_plain_sized_is_plain_and_the_canonical_size_for_every_value():
    # The fast path (`marshal` and one sizing walk) must give what `plain`
    # and `canonical_size` give, or leave the value to `plain`, which then
    # refuses it with its own message. Regular and irregular values, and
    # random JSON trees.
    import collections
    import random

    import hx_core
    import hx_protocol

    class Str(str):
        pass

    class Int(int):
        pass

    deep = ok_deep = []
    for _ in range(hx_core.MAX_DEPTH):
        ok_deep = [ok_deep]
    for _ in range(hx_core.MAX_DEPTH + 1):
        deep = [deep]
    loop = []
    loop.append(loop)
    shared = [1, "x"]
    values = [
        {}, [], "", None, True, False, 0, -0.0, 1.0, 1.5, 1e21, 1e-7, 123e20, 2**53, 2**53 + 1,
        -(2**53) - 1, 10**400, float("nan"), float("inf"), "é\u2028\n\"\\\x00\x7f", "\ud800", "😀",
        {"k": "\udfff"}, {"a": [1, 2.5, {"b": None}], "c": "d" * 100}, [shared, shared],
        (1, 2), {"t": (1, [2])}, {1: 2}, {True: 1}, {None: 1}, {Str("k"): Str("v")}, Int(5),
        collections.Counter("aab"), collections.OrderedDict(x=1), {1, 2}, b"x", 1j, ...,
        ok_deep, [ok_deep], deep, {"d": deep}, loop, (lambda: 0).__code__, [[]] * 3,
    ]
    rng = random.Random(7)

    def tree(d):
        r = rng.random()
        if d > 4 or r < 0.4:
            return rng.choice(
                [None, True, False, rng.randrange(-(2**60), 2**60), rng.random() * 10 ** rng.randrange(-30, 30),
                 "".join(chr(rng.choice([32, 65, 0x22, 0x5C, 10, 0xE9, 0x1F600, 0x7F, 1])) for _ in range(rng.randrange(5)))]
            )
        if r < 0.7:
            return [tree(d + 1) for _ in range(rng.randrange(4))]
        return {str(rng.randrange(100)): tree(d + 1) for _ in range(rng.randrange(4))}

    values += [tree(0) for _ in range(3000)]
    for v in values:
        try:
            want = hx_core.plain(v, "it")
            want = (want, hx_protocol.canonical_size(want))
        except hx_core.NotJson as e:
            want = str(e)
        try:
            got = hx_core.plain_sized(v, "it")
        except hx_core.NotJson as e:
            got = str(e)
        assert got == want, v
        if type(got) is tuple:
            # Exact types only, and nothing shared with the bot's value.
            assert hx_core.plain(got[0], "it") == got[0]
            assert got[0] is not v or type(v) in (str, int, float, bool, type(None))
    copy, _ = hx_core.plain_sized([shared, shared], "it")
    assert copy[0] is not copy[1] and copy[0] is not shared


def test_posts_with_to():
    out = ok(
        run(
            bot(
                """
                self.ctx.post("pub", "hello")
                self.ctx.post("dm", {"card": 3}, to="alice")
                self.ctx.post("dm2", None, to=["bob", "alice"])
                """
            )
        )
    )
    assert out["posts"] == [
        {"type": "pub", "body": "hello"},
        {"type": "dm", "body": {"card": 3}, "to": ["alice"]},
        {"type": "dm2", "body": None, "to": ["bob", "alice"]},
    ]


@pytest.mark.parametrize(
    "call,needle",
    [
        ("self.ctx.post('x', 1, to='mallory')", "mallory"),
        ("self.ctx.post('x', 1, to=[])", "at least one recipient"),
        ("self.ctx.post('x', 1, to=['alice', 'alice'])", "twice"),
        ("self.ctx.post('x', 1, to=[1])", "list of labels"),
        ("self.ctx.post('x', {1, 2})", "set"),
        ("self.ctx.post('x', float('nan'))", "nan"),
        ("self.ctx.post('x', object())", "object"),
        ("self.ctx.post(5, 1)", "post type must be a string"),
        ("self.ctx.post('x', 10**400)", "too large"),
        ("self.ctx.post('x', 'y' * 70000)", "over the limit"),
        ("self.ctx.set_state([1])", "dict"),
        ("self.ctx.set_state({'k': 'v' * 300000})", "over the limit"),
        ("self.ctx.set_state({1: 2})", "not a string"),
        ("for i in range(21):\n    self.ctx.post('x', i)", "at most 20 posts per hook"),
    ],
)
def test_limits_and_malformed_posts_fail_the_hook(call, needle):
    err = error(run(bot(call)))
    assert err["kind"] == "limit", err
    assert needle in err["message"], err


def test_limits_come_from_the_job():
    err = error(run(bot("self.ctx.post('a', 1)\nself.ctx.post('b', 2)"), limits={"max_posts": 1}))
    assert err["kind"] == "limit" and "at most 1 posts per hook" in err["message"]


def test_a_caught_limit_error_still_fails_the_hook():
    src = bot(
        """
        for i in range(30):
            try:
                self.ctx.post("x", i)
            except Exception:
                pass
        """
    )
    err = error(run(src))
    assert err["kind"] == "limit", err


def test_subclassed_containers_are_copied_as_plain_json():
    out = ok(
        run(
            bot(
                """
                from collections import Counter, OrderedDict
                self.ctx.post("r", {"c": Counter("aab"), "o": OrderedDict(x=(1, 2))})
                """
            )
        )
    )
    assert out["posts"][0]["body"] == {"c": {"a": 2, "b": 1}, "o": {"x": [1, 2]}}


# --------------------------------------------------------- class discovery


def test_imported_names_are_never_the_bot_class():
    src = "from typing import Dict, List\nfrom collections import OrderedDict\n" + bot(
        "self.ctx.post('me', type(self).__name__)"
    )
    assert ok(run(src))["posts"] == [{"type": "me", "body": "Bot"}]
    assert ok(check(src))["manifest"]["class_name"] == "Bot"


def test_a_helper_base_class_yields_to_the_leaf():
    src = textwrap.dedent(
        """
        class Base:
            def __init__(self, ctx, params):
                self.ctx = ctx
            def on_join(self, player):
                self.ctx.post("joined", player)
        class Helper:
            pass
        class Game(Base):
            def on_init(self):
                self.ctx.post("init", type(self).__name__)
        """
    )
    m = ok(check(src))["manifest"]
    assert m["class_name"] == "Game" and m["hooks"] == ["on_init", "on_join"]
    out = ok(run(src, {"name": "on_join", "player": "bob"}))
    assert out["posts"] == [{"type": "joined", "body": "bob"}]


def test_several_bot_classes_need_manifest_class():
    two = "class A:\n    def on_init(self):\n        pass\nclass B:\n    def on_init(self):\n        pass\n"
    err = error(check(two))
    assert err["kind"] == "policy" and "MANIFEST['class']" in err["message"], err
    m = ok(check("MANIFEST = {'class': 'B'}\n" + two))["manifest"]
    assert m["class_name"] == "B"


def test_no_bot_class_is_a_clear_error():
    err = error(check("import typing\nx = typing.Dict\n"))
    assert err["kind"] == "policy" and "no bot class" in err["message"]


# --------------------------------------------------------- inspect


def test_inspect_reads_the_manifest_without_running_code():
    src = textwrap.dedent(
        '''
        MANIFEST = {"name": "guess", "version": "1.2", "params": {"max": {"default": 100}}}
        print("module level ran")
        1 / 0
        class GuessBot:
            """Guess my number.

            Longer text."""
            def on_message(self, msg):
                pass
        '''
    )
    out = ok(check(src))
    assert out["posts"] == [] and out["logs"] == "" and out["state"] == {}
    compiled = out["manifest"].pop("compiled")
    assert compiled["class_name"] == "GuessBot" and compiled["network"] is False
    assert out["manifest"] == {
        "name": "guess",
        "version": "1.2",
        "summary": "Guess my number.",
        "hooks": ["on_message"],
        "params": {"max": {"default": 100}},
        "class_name": "GuessBot",
    }


def test_inspect_defaults():
    m = ok(check("class EchoBot:\n    def on_init(self):\n        pass\n"))["manifest"]
    del m["compiled"]
    assert m == {
        "name": "EchoBot",
        "version": "0",
        "summary": "",
        "hooks": ["on_init"],
        "params": {},
        "class_name": "EchoBot",
    }


def test_inspect_returns_the_input_state():
    out = ok(run("class E:\n    def on_init(self):\n        pass\n", "inspect", state={"k": 1}))
    assert out["state"] == {"k": 1}


def test_manifest_must_be_a_literal():
    err = error(check("import json\nMANIFEST = json.loads('{}')\nclass E:\n    def on_init(self):\n        pass\n"))
    assert err["kind"] == "policy" and err["line"] == 2 and "literal" in err["message"]


# --------------------------------------------------------- failures


def test_exceptions_carry_a_traceback_of_bot_frames_only():
    src = textwrap.dedent(
        """
        import json
        def helper(x):
            return json.loads(x)
        class Bot:
            def __init__(self, ctx, params):
                pass
            def on_init(self):
                helper("{not json")
        """
    )
    err = error(run(src))
    assert err["kind"] == "exception", err
    assert err["message"].startswith("JSONDecodeError: Expecting property name"), err
    tb = err["traceback"]
    assert 'File "bot.py", line 9, in on_init' in tb and 'helper("{not json")' in tb, tb
    assert 'File "bot.py", line 4, in helper' in tb, tb
    assert "hx_core" not in tb and "json/decoder.py" not in tb and "/harness" not in tb, tb


def test_syntax_errors_name_the_line():
    err = error(run("x = 1\n\ndef broken(:\n    pass\n"))
    assert err["kind"] == "syntax" and err["line"] == 3, err


def test_memory_error_is_reported_as_memory():
    err = error(run(bot("raise MemoryError")))
    assert err["kind"] == "memory", err


def test_running_out_of_address_space_is_reported_as_memory():
    src = bot("keep = []\nfor i in range(100):\n    keep.append(bytearray(50 * 1024 * 1024))")
    outcome, _, err, rc = run_raw(json.dumps(job(src)).encode(), address_space=400 * 1024 * 1024)
    assert rc == 0, err
    assert outcome["error"]["kind"] == "memory", outcome


def test_system_exit_is_an_exception_not_an_exit():
    err = error(run(bot("raise SystemExit(3)")))
    assert err["kind"] == "exception" and "SystemExit" in err["message"], err


def test_exception_in_module_code_and_constructor():
    err = error(run("x = [][1]\n" + bot("pass")))
    assert err["kind"] == "exception" and "IndexError" in err["message"]
    err = error(run("class B:\n    def __init__(self, ctx, params):\n        raise ValueError('no')\n"
                    "    def on_init(self):\n        pass\n"))
    assert "line 3, in __init__" in err["traceback"], err


def test_missing_hook_is_a_no_op():
    out = ok(run("class B:\n    def on_init(self):\n        pass\n", {"name": "on_join", "player": "bob"}))
    assert out["posts"] == []


# --------------------------------------------------------- output framing


def test_prints_become_logs_and_cannot_forge_the_result():
    fake = json.dumps({"status": "ok", "posts": [{"type": "forged", "body": 1}], "state": {}})
    src = bot(
        f"""
        import sys
        print({fake!r})
        sys.stdout.write("to stdout\\n")
        sys.stderr.write("to stderr\\n")
        self.ctx.post("real", 1)
        """
    )
    outcome, stdout, stderr, rc = run_raw(json.dumps(job(src)).encode())
    assert rc == 0
    assert outcome["posts"] == [{"type": "real", "body": 1}]
    assert outcome["logs"] == fake + "\nto stdout\nto stderr\n"
    assert stdout == b"" and stderr == b""


def test_logs_are_bounded():
    out = ok(run(bot("for i in range(100000):\n    print('x' * 100)")))
    assert len(out["logs"]) < 70 * 1024 and "characters dropped" in out["logs"]


def test_lone_surrogates_in_logs_and_errors_still_give_an_outcome():
    # Prints and exception text are not checked as JSON values are; UTF-8
    # cannot encode a lone surrogate, so it becomes "?" rather than losing
    # the outcome.
    out = ok(run(bot("print('a\\ud800b')\nself.ctx.post('x', 1)")))
    assert out["logs"] == "a?b\n", out["logs"]
    err = error(run(bot("raise ValueError('\\udfff')")))
    assert err["kind"] == "exception" and err["message"] == "ValueError: ?", err


def test_error_text_stays_within_the_protocols_bounds():
    err = error(run(bot("raise ValueError('x' * 100000)")))
    assert len(err["message"]) <= 2000 and len(err["traceback"]) <= 16000, err


def test_oversized_result_is_an_output_overrun():
    src = bot("for i in range(10):\n    self.ctx.post('x', 'y' * 60000)")
    err = error(run(src, limits={"max_output_bytes": 100000}))
    assert err["kind"] == "output_overrun", err


def test_a_bad_job_is_reported_on_stderr_not_on_fd3():
    # Fd 3 carries only what the hook did; a job the harness cannot use is
    # the runner's fault, which the runner reports (`internal`) from the
    # exit code and stderr.
    outcome, _, err, rc = run_raw(b"{not json")
    assert (outcome, rc) == (None, 2) and b"bad job" in err, (outcome, err)
    outcome, _, err, rc = run_raw(json.dumps({"bot": {"source": ""}, "hook": {"name": "on_fire"}}).encode())
    assert (outcome, rc) == (None, 2) and b"hook.name" in err, (outcome, err)


@pytest.mark.parametrize(
    "limits",
    [
        None,
        "20",
        {},
        {"max_posts": 20, "max_post_bytes": 65536, "max_state_bytes": 262144},
        {"max_posts": -1, "max_post_bytes": 65536, "max_state_bytes": 262144, "max_output_bytes": 1},
        {"max_posts": 1.5, "max_post_bytes": 65536, "max_state_bytes": 262144, "max_output_bytes": 1},
    ],
)
def test_a_job_without_every_limit_is_refused(limits):
    # The harness keeps no copy of the protocol's defaults: every limit comes
    # from the job.
    j = job(bot("self.ctx.post('x', 1)"))
    if limits is None:
        del j["limits"]
    else:
        j["limits"] = limits
    outcome, _, err, rc = run_raw(json.dumps(j).encode())
    assert (outcome, rc) == (None, 2) and b"limits" in err, (outcome, err)


def test_without_fd3_the_harness_refuses_to_run():
    p = subprocess.run([PYTHON, "-I", "-S", "-B", HARNESS], input=b"{}", capture_output=True, env={})
    assert p.returncode == 2 and b"fd 3" in p.stderr


# --------------------------------------------------------- test-only switches


def test_unchecked_mode_runs_raw_python_for_the_os_suite():
    src = "import os\nprint('pid', os.getpid() > 0, open('/etc/hostname').readable())\n"
    out = ok(run(src, unchecked=True))
    assert out["logs"] == "pid True True\n"
    out = ok(run("import os\n" + bot("self.ctx.post('os', os.name)"), unchecked=True))
    assert out["posts"] == [{"type": "os", "body": "posix"}]


def test_unchecked_is_only_honoured_when_exactly_true():
    err = error(run("import os\n", unchecked="yes"))
    assert err["kind"] == "policy"


def test_check_cli(tmp_path):
    good = tmp_path / "good.py"
    good.write_text("class E:\n    def on_message(self, m):\n        pass\n")
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n")
    net = tmp_path / "net.py"
    net.write_text("import requests\nclass E:\n    def on_init(self):\n        pass\n")
    p = subprocess.run([PYTHON, "-I", "-S", "-B", HARNESS, "--check", str(good)], capture_output=True, env={})
    assert p.returncode == 0 and json.loads(p.stdout)["manifest"]["hooks"] == ["on_message"]
    p = subprocess.run([PYTHON, "-I", "-S", "-B", HARNESS, "--check", str(bad)], capture_output=True, env={})
    assert p.returncode == 1
    assert json.loads(p.stdout)["error"] == {"kind": "policy", "line": 1, "message": "Import of 'os' is not allowed"}
    p = subprocess.run([PYTHON, "-I", "-S", "-B", HARNESS, "--check", str(net)], capture_output=True, env={})
    assert p.returncode == 1 and "allow_network" in p.stdout.decode()
    p = subprocess.run(
        [PYTHON, "-I", "-S", "-B", HARNESS, "--check", str(net), "--network"], capture_output=True, env={}
    )
    assert p.returncode == 0, p.stdout


def test_print_capture_cannot_be_unbounded_by_reinitialising_it():
    src = bot(
        """
        import sys
        try:
            sys.stdout.__init__(10 ** 12)
        except TypeError:
            print("refused")
        """
    )
    assert ok(run(src))["logs"] == "refused\n"


def test_inspect_ignores_unchecked():
    err = error(run("import os\nclass B:\n    def on_init(self):\n        pass\n", "inspect", unchecked=True))
    assert err["kind"] == "policy" and err["line"] == 1


@pytest.mark.parametrize("hook", ["inspect", "on_init"])
def test_compile_time_errors_are_syntax_errors(hook):
    src = "class B:\n    def on_init(self):\n        pass\n\nreturn 1\n"
    err = error(run(src, hook))
    assert err["kind"] == "syntax" and err["line"] == 5, err


def test_dotted_imports_with_as_bind_the_submodule():
    src = "import email.mime.text as t\nimport collections.abc as cabc\nimport urllib.parse as up\n" + bot(
        "self.ctx.post('x', [t.MIMEText('a').get_content_type(), isinstance([], cabc.Sequence), up.quote('a b')])"
    )
    assert ok(run(src, network=True))["posts"][0]["body"] == ["text/plain", True, "a%20b"]


# --------------------------------------------------------- special methods


def test_operator_and_container_special_methods_work():
    """Every special method of hx_policy.SPECIAL_METHODS that Python calls
    for an operator, a conversion or a container protocol runs."""
    extra = '''
import functools, math

@functools.total_ordering
class V:
    def __init__(self, *xs):
        self.xs = list(xs)
    def __repr__(self):
        return f"V{tuple(self.xs)}"
    def __str__(self):
        return "v:" + ",".join(str(x) for x in self.xs)
    def __format__(self, spec):
        return "<" + spec + ">"
    def __bytes__(self):
        return bytes(self.xs)
    def __eq__(self, other):
        return isinstance(other, V) and self.xs == other.xs
    def __lt__(self, other):
        return self.xs < other.xs
    def __hash__(self):
        return hash(tuple(self.xs))
    def __bool__(self):
        return bool(self.xs)
    def __len__(self):
        return len(self.xs)
    def __length_hint__(self):
        return len(self.xs)
    def __iter__(self):
        return iter(self.xs)
    def __reversed__(self):
        return reversed(self.xs)
    def __contains__(self, x):
        return x in self.xs
    def __getitem__(self, i):
        return self.xs[i]
    def __setitem__(self, i, v):
        self.xs[i] = v
    def __delitem__(self, i):
        del self.xs[i]
    def __add__(self, o):
        return V(*[a + b for a, b in zip(self.xs, o.xs)])
    def __radd__(self, o):
        return V(*[a + o for a in self.xs])
    def __iadd__(self, o):
        self.xs = [a + o for a in self.xs]
        return self
    def __matmul__(self, o):
        return sum(a * b for a, b in zip(self.xs, o.xs))
    def __lshift__(self, n):
        return V(*(self.xs[n:] + self.xs[:n]))
    def __rlshift__(self, n):
        return n << len(self.xs)
    def __ilshift__(self, n):
        self.xs = self.xs[n:] + self.xs[:n]
        return self
    def __rshift__(self, n):
        return V(*(self.xs[-n:] + self.xs[:-n]))
    def __rfloordiv__(self, o):
        return V(*[o // a for a in self.xs])
    def __mod__(self, n):
        return V(*[a % n for a in self.xs])
    def __divmod__(self, n):
        return [divmod(a, n) for a in self.xs]
    def __rdivmod__(self, n):
        return "rdivmod"
    def __pow__(self, n):
        return V(*[a ** n for a in self.xs])
    def __and__(self, o):
        return V(*[a for a in self.xs if a in o.xs])
    def __or__(self, o):
        return V(*sorted(set(self.xs) | set(o.xs)))
    def __xor__(self, o):
        return V(*sorted(set(self.xs) ^ set(o.xs)))
    def __neg__(self):
        return V(*[-a for a in self.xs])
    def __invert__(self):
        return V(*reversed(self.xs))
    def __abs__(self):
        return V(*[abs(a) for a in self.xs])
    def __int__(self):
        return sum(self.xs)
    def __float__(self):
        return float(sum(self.xs))
    def __complex__(self):
        return complex(sum(self.xs), 1)
    def __index__(self):
        return len(self.xs)
    def __round__(self, n=None):
        return "round"
    def __trunc__(self):
        return "trunc"
    def __floor__(self):
        return "floor"
    def __ceil__(self):
        return "ceil"
    def __call__(self, k):
        return self.xs[k]

class Table(dict):
    def __missing__(self, key):
        return "missing " + key
'''
    body = """
        a, b = V(1, 2, 3), V(3, 4, 5)
        c = V(1, 2, 3)
        c += 1
        d = V(1, 2, 3)
        d <<= 1
        e = V(1, 2, 3)
        e[0] = 9
        del e[1]
        out = [repr(a), str(a), f"{a:spec}", list(bytes(a)), a == V(1, 2, 3), a < b, a >= b,
               hash(a) == hash(V(1, 2, 3)), bool(V()), len(a), list(a), list(reversed(a)),
               2 in a, a[1], repr(a + b), repr(10 + a), repr(c), a @ b, repr(a << 1), 1 << a,
               repr(d), repr(a >> 1), repr(12 // a), repr(a % 2), divmod(a, 2), divmod(7, a),
               repr(a ** 2), repr(a & b), repr(a | b), repr(a ^ b), repr(-a), repr(~a),
               repr(abs(V(-1, 2))), int(a), float(a), str(complex(a)), [10, 20, 30, 40][a],
               round(a), math.trunc(a), math.floor(a), math.ceil(a), a(0), repr(e),
               Table()["k"], sorted([b, a])[0] == a]
        self.ctx.post("r", out)
    """
    out = ok(run(bot(body, extra)))
    assert out["posts"][0]["body"] == [
        "V(1, 2, 3)", "v:1,2,3", "<spec>", [1, 2, 3], True, True, False,
        True, False, 3, [1, 2, 3], [3, 2, 1],
        True, 2, "V(4, 6, 8)", "V(11, 12, 13)", "V(2, 3, 4)", 26, "V(2, 3, 1)", 8,
        "V(2, 3, 1)", "V(3, 1, 2)", "V(12, 6, 4)", "V(1, 0, 1)", [[0, 1], [1, 0], [1, 1]], "rdivmod",
        "V(1, 4, 9)", "V(3,)", "V(1, 2, 3, 4, 5)", "V(1, 2, 4, 5)", "V(-1, -2, -3)", "V(3, 2, 1)",
        "V(1, 2)", 6, 6.0, "(6+1j)", 40,
        "round", "trunc", "floor", "ceil", 1, "V(9, 3)",
        "missing k", True,
    ]


def test_slots_work():
    extra = '''
class P:
    __slots__ = ("x", "y")
    def __init__(self, x, y):
        self.x = x
        self.y = y

class Q(P):
    __slots__ = "z"

class R:
    __slots__ = []
'''
    body = """
        p = Q(1, 2)
        p.z = 3
        out = [p.x, p.y, p.z]
        try:
            p.w = 4
        except AttributeError:
            out.append("no w")
        try:
            R().anything = 1
        except AttributeError:
            out.append("no dict")
        self.ctx.post("r", out)
    """
    assert ok(run(bot(body, extra)))["posts"][0]["body"] == [1, 2, 3, "no w", "no dict"]


@pytest.mark.parametrize(
    "slots,needle",
    [
        ("('_x',)", "'_x'"),
        ("('__dict__',)", "'__dict__'"),
        ("('__class__',)", "'__class__'"),
        ("NAMES", "literal"),
        ("('a', 1)", "literal"),
        ("('not an identifier',)", "not allowed"),
    ],
)
def test_slots_with_refused_names_are_refused(slots, needle):
    src = f"NAMES = ('a',)\nclass P:\n    __slots__ = {slots}\n" + bot("pass")
    err = error(check(src))
    assert err["kind"] == "policy" and err["line"] == 3 and needle in err["message"], err


def test_slots_outside_a_class_body_stay_refused():
    err = error(check("__slots__ = ()\n" + bot("pass")))
    assert err["kind"] == "policy" and err["line"] == 1 and "'__slots__'" in err["message"], err


def test_common_class_forms_still_work():
    """Library bases with metaclasses of their own (NamedTuple, TypedDict,
    Generic, Protocol, ABCs), exception classes, decorators that set
    special methods, and keyword class patterns on them."""
    extra = '''
import typing, collections, functools
T = typing.TypeVar("T")
class P(typing.NamedTuple):
    x: int
    y: int = 0
class TD(typing.TypedDict):
    a: int
class G(typing.Generic[T]):
    def __init__(self, v: T):
        self.v = v
class Pr(typing.Protocol):
    def m(self) -> int: ...
class E(Exception):
    pass
class OD(collections.OrderedDict):
    pass
class M(collections.abc.Mapping):
    def __getitem__(self, k):
        return 1
    def __len__(self):
        return 1
    def __iter__(self):
        return iter(["k"])
@functools.total_ordering
class O:
    __slots__ = ("k",)
    def __init__(self, k):
        self.k = k
    def __eq__(self, o):
        return self.k == o.k
    def __lt__(self, o):
        return self.k < o.k
'''
    body = """
        p = P(1)
        match p:
            case P(x=x, y=y):
                pass
        self.ctx.post("r", [p.x, TD(a=1), G(3).v, isinstance(E(), Exception), list(OD(a=1)),
                            dict(M()), O(1) <= O(2), x, y])
    """
    assert ok(run(bot(body, extra)))["posts"][0]["body"] == [
        1, {"a": 1}, 3, True, ["a"], {"k": 1}, True, 1, 0,
    ]


# --------------------------------------------------------- checked once


def run_compiled(source, compiled, network=False, hash_seed=None):
    """Run `on_init` of `source` with `compiled` as the job's artifact (and
    `hash_seed` as the interpreter's, with the job's entropy)."""
    j = job(source, network=network)
    if hash_seed is not None:
        j.update(entropy="5e" * 32, hash_seed=hash_seed)
    j["bot"]["compiled"] = compiled
    outcome, _, err, rc = run_raw(json.dumps(j).encode(), hash_seed=hash_seed)
    assert rc == 0 and outcome is not None, err.decode()
    return outcome


SAYS_A = bot("self.ctx.post('said', 'A')")
SAYS_B = bot("self.ctx.post('said', 'B')")


def said(outcome):
    return [p["body"] for p in ok(outcome)["posts"]]


def test_the_artifact_inspect_makes_is_what_later_hooks_run():
    compiled = ok(check(SAYS_A))["manifest"]["compiled"]
    assert said(run_compiled(SAYS_A, compiled)) == ["A"]
    # It is used, not re-derived: B's bytecode under A's bindings runs B
    # (which is why only the daemon, from an inspect that ran no bot code,
    # may supply one).
    b_code = ok(check(SAYS_B))["manifest"]["compiled"]["code"]
    assert said(run_compiled(SAYS_A, {**compiled, "code": b_code})) == ["B"]


@pytest.mark.parametrize(
    "change",
    [
        {"source_sha256": "00" * 32},
        {"network": True},
        {"checker": "0" * 64},
        {"class_name": 3},
        {"code": "not base64 at all!"},
        {"code": "AAAA"},
        {"hash_seed": 7},
        {"hash_seed": "7"},
    ],
    ids=[
        "other-source",
        "other-network-mode",
        "other-checker",
        "bad-class",
        "bad-base64",
        "not-code",
        "other-hash-seed",
        "bad-hash-seed",
    ],
)
def test_an_artifact_that_does_not_belong_to_the_job_is_ignored(change):
    # B's bytecode with one binding wrong: the hook checks and compiles A.
    compiled = ok(check(SAYS_A))["manifest"]["compiled"]
    b_code = ok(check(SAYS_B))["manifest"]["compiled"]["code"]
    assert said(run_compiled(SAYS_A, {**compiled, "code": b_code, **change})) == ["A"]


# A set display of constants is a frozenset constant: its order is the hash
# seed's, and (items whose hashes collide) the order its items went in.
SET_DISPLAY = bot(
    "self.ctx.post('order', [w for w in {"
    + ", ".join(repr(f"word{i:02d}") for i in range(48))
    + "}])"
)


@pytest.mark.parametrize("seed", [1, 2, 3, 5, 8, 13, 21, 34, 4000000000, 4294967295])
def test_a_seeded_hook_iterates_set_constants_alike_whether_it_compiled_its_bot_or_not(seed):
    fresh = said(run_compiled(SET_DISPLAY, None, hash_seed=seed))
    compiled = ok(check(SET_DISPLAY, hash_seed=seed))["manifest"]["compiled"]
    assert compiled["hash_seed"] == seed
    assert said(run_compiled(SET_DISPLAY, compiled, hash_seed=seed)) == fresh
    # An artifact made under another hash seed is not used: the hook
    # compiles its bot itself, with the same result.
    other = ok(check(SET_DISPLAY, hash_seed=seed ^ 1))["manifest"]["compiled"]
    assert said(run_compiled(SET_DISPLAY, other, hash_seed=seed)) == fresh


def test_an_artifact_is_used_only_under_the_hash_seed_it_was_made_under():
    compiled = ok(check(SAYS_A, hash_seed=7))["manifest"]["compiled"]
    b_code = ok(check(SAYS_B, hash_seed=7))["manifest"]["compiled"]["code"]
    assert said(run_compiled(SAYS_A, {**compiled, "code": b_code}, hash_seed=7)) == ["B"]
    assert said(run_compiled(SAYS_A, {**compiled, "code": b_code}, hash_seed=8)) == ["A"]
    assert said(run_compiled(SAYS_A, {**compiled, "code": b_code})) == ["A"]
    # An inspection whose hash seed did not take effect is refused.
    j = json.dumps(job(SAYS_A, "inspect", hash_seed=7)).encode()
    outcome, _out, err, rc = run_raw(j, hash_seed=8)
    assert (outcome, rc) == (None, 2) and b"has hash_seed" in err, err


def test_a_templates_preloaded_code_serves_only_exactly_its_own_text(monkeypatch):
    # A fork template decodes a bot's code once (`C` from the runner); a
    # child uses it only for a job whose artifact has that very text, after
    # the artifact's other checks: B's code under A's bindings is decoded on
    # its own (and runs B, as in `test_an_artifact_is_used_only_under...`),
    # never replaced by the preloaded A.
    import hx_core

    monkeypatch.setattr(hx_core, "PRELOADED_CODE", None)
    hx_core.warm_up()
    a = ok(check(SAYS_A))["manifest"]["compiled"]
    b = ok(check(SAYS_B))["manifest"]["compiled"]
    hx_core.preload_code(b"\xff not the code")
    assert hx_core.PRELOADED_CODE is None
    hx_core.preload_code(a["code"].encode())
    preloaded = hx_core.PRELOADED_CODE[1]
    assert hx_core.usable_compiled(a, SAYS_A, False) == (a["class_name"], preloaded)
    _, other = hx_core.usable_compiled({**a, "code": b["code"]}, SAYS_A, False)

    def strings(code):
        for c in code.co_consts:
            if type(c) is type(code):
                yield from strings(c)
            elif type(c) is str:
                yield c

    assert "B" in strings(other) and "B" not in strings(preloaded)
    # The artifact's bindings are still checked: a preloaded text under
    # another source's hash is not used at all.
    assert hx_core.usable_compiled(a, SAYS_B, False) is None


PATTERNS = textwrap.dedent(
    """
    import re
    import re as r
    A = re.compile(r"^a+(b)$", re.IGNORECASE | re.MULTILINE)
    B = r.compile("not read: the module under another name")
    C = re.compile("LONG")
    class Bot:
        def __init__(self, ctx, params):
            self.ctx = ctx
        def on_init(self):
            p = "not a constant"
            re.match(p, "x")
            self.ctx.post("m", [bool(re.match(r"^-?\\d+$", "12")), bool(A.match("AB"))])
            try:
                re.sub("(", "", "")
            except re.error:
                pass
    """
).replace("LONG", "x" * 5000)


def test_a_template_compiles_its_bots_constant_patterns_for_its_own_code_only(tmp_path):
    # A fork template puts the patterns its bot's code passes to `re` as
    # constants into `re`'s cache once, read from the bytecode; a child whose
    # job brings other code finds the cache emptied of them.
    import os
    import re

    import hx_core

    assert sorted(hx_core.regex_constants(compile(PATTERNS, "bot", "exec"))) == sorted(
        [("^a+(b)$", int(re.IGNORECASE | re.MULTILINE)), ("^-?\\d+$", 0), ("(", 0)]
    )
    compiled = ok(check(PATTERNS))["manifest"]["compiled"]
    other = ok(check(SAYS_A))["manifest"]["compiled"]

    def cached():
        return {(k[1], k[2]) for k in re._cache if k[0] is str}

    want = {("^a+(b)$", int(re.IGNORECASE | re.MULTILINE)), ("^-?\\d+$", 0)}
    out = tmp_path / "out"
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            re.purge()
            hx_core.warm_up()
            hx_core.preload_code(compiled["code"].encode())
            # A pattern that does not compile is left for the hook.
            before = cached()
            j = job(SAYS_A)
            j["bot"]["compiled"] = other
            sys_out, sys_err = __import__("sys").stdout, __import__("sys").stderr
            outcome = hx_core.run_hook(j, hx_core.hx_protocol.limits_of(j))
            __import__("sys").stdout, __import__("sys").stderr = sys_out, sys_err
            out.write_text(json.dumps([sorted(before), sorted(cached()), outcome["status"]]))
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert status == 0
    before, after, status = json.loads(out.read_text())
    assert {tuple(x) for x in before} >= want
    assert not {tuple(x) for x in after} & want
    assert status == "ok"
    # And the patterns still mean what they say in a hook of the bot itself.
    assert ok(run_compiled(PATTERNS, compiled))["posts"] == [{"type": "m", "body": [True, True]}]


def test_a_refused_source_is_refused_even_with_an_artifact_made_for_another():
    bad = bot("import os\nos.system('true')")
    compiled = ok(check(SAYS_A))["manifest"]["compiled"]
    err = error(run_compiled(bad, compiled))
    assert err["kind"] == "policy" and "'os'" in err["message"]


def test_the_size_of_an_exact_integer_is_that_of_the_general_number_rule():
    # `canonical_size` writes integers a double holds exactly with their own
    # digits; the general rule (`number_size`, ECMAScript's) must agree on
    # every one of them, and the general rule still sizes the others.
    import random

    import hx_protocol

    rng = random.Random(1)
    edge = [0, 1, -1, 9, 10, 99, 100, 10**15, 10**16 - 1, 2**53 - 1, 2**53, -(2**53)]
    samples = edge + [rng.randrange(-(2**53), 2**53 + 1) for _ in range(20000)]
    samples += [rng.randrange(-(10**k), 10**k) for k in range(1, 17) for _ in range(200)]
    for n in samples:
        assert hx_protocol.canonical_size(n) == hx_protocol.number_size(n), n
    # Past 2**53 the double nearest rounds: 2**53 + 1 is written 9007199254740992.
    assert hx_protocol.canonical_size(2**53 + 1) == hx_protocol.number_size(2**53 + 1) == 16
    assert hx_protocol.canonical_size(10**21) == len("1e+21")


PREWARM_PROBE = r"""
import _random, gc, json, posix, random, sys, time
sys.path.insert(0, sys.argv[1])
import hx_core

hx_core.warm_up()
import hx_determinism

def seen():
    return {
        "modules": sorted(sys.modules),
        "harness globals": [len(hx_core.KEPT), len(hx_core.PREPARED_LAYER), hx_core.PRELOADED_CODE is None],
        "patched": [id(f) for f in (time.time, time.time_ns, time.localtime, time.strftime, posix.urandom,
                                    _random.Random.seed, _random.Random.__init__)],
        "random": list(random.getstate()[1][:16]),
        "gc": gc.isenabled(),
        "streams": [sys.stdout is sys.__stdout__, sys.stderr is sys.__stderr__],
        "path": list(sys.path),
    }

before = seen()
hx_core.prewarm_hook_path()
after = seen()
print(json.dumps({k: before[k] == after[k] for k in before}))
"""


def test_prewarming_a_hooks_path_changes_nothing_a_hook_could_see():
    # A fork template's child runs the job-independent parts of a hook's
    # path before its job; nothing of that may be left for the hook: no
    # module imported, no clock or randomness patched or drawn from, no
    # harness state, collection still on, the streams as they were.
    import os

    r = subprocess.run(
        [PYTHON, "-I", "-S", "-B", "-c", PREWARM_PROBE, os.path.dirname(HARNESS)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    same = json.loads(r.stdout)
    assert same and all(same.values()), same
