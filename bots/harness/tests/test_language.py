"""Language-level escapes out of the harness must be refused with a clear message that
names the line. Every case runs the real harness entry point in a subprocess.

The static cases use the `inspect` hook (the `ast` check alone); the run-time
cases run `on_init`, where facades and the format guard do the refusing.
"""

import pytest

from hxrun import check, error, run

BOT = """
class Bot:
    def __init__(self, ctx, params):
        self.ctx = ctx
    def on_init(self):
        pass
"""


def refused(source, line, *needles, network=False):
    """Inspect `source` (plus a trivial bot class) and assert a policy refusal
    on `line` whose message contains every needle."""
    err = error(check(source + BOT, network=network))
    assert err["kind"] == "policy", err
    assert err["line"] == line, err
    for n in needles:
        assert n in err["message"], err
    return err


def refused_at_run_time(body, line, *needles, network=False):
    """Run `body` inside on_init; assert a policy error on `line` (counted in
    the whole source, whose on_init body starts on line 5)."""
    source = "X = 1\nclass Bot:\n    def __init__(self, ctx, params):\n        self.ctx = ctx\n"
    source += "    def on_init(self):\n"
    source += "".join("        " + ln + "\n" for ln in body.strip("\n").splitlines())
    out = run(source, network=network)
    err = error(out)
    assert err["kind"] == "policy", err
    assert err["line"] == line, err
    for n in needles:
        assert n in err["message"], err
    return err


# --------------------------------------------------------- dunder walks


def test_subclasses_walk_is_refused():
    refused("x = 1\nk = ().__class__.__bases__[0].__subclasses__()\n", 2, "'__class__'")


def test_subclasses_on_object_is_refused():
    refused("\n\nsubs = object.__subclasses__()\n", 3, "'__subclasses__'")


def test_builtins_access_is_refused():
    refused("b = __builtins__['open']\n", 1, "'__builtins__'")


def test_dunder_globals_through_a_function_is_refused():
    refused("def f():\n    pass\ng = f.__globals__\n", 3, "'__globals__'")


@pytest.mark.parametrize(
    "attr",
    ["gi_frame", "gi_code", "f_globals", "f_back", "tb_frame", "cr_frame", "co_code", "ag_frame"],
)
def test_frame_and_code_attributes_are_refused(attr):
    src = f"def g():\n    yield 1\n\nx = g().{attr}\n"
    refused(src, 4, f"'{attr}'", "frame and code internals")


def test_gi_frame_f_globals_chain_is_refused():
    src = "def g():\n    yield 1\nos = g().gi_frame.f_back.f_globals['sys']\n"
    refused(src, 3, "frame and code internals")


# --------------------------------------------------------- forbidden builtins


@pytest.mark.parametrize(
    "call",
    [
        "setattr(1, 'x', 2)",
        "delattr(1, 'x')",
        "breakpoint()",
        "help()",
        "eval('1')",
        "exec('x = 1')",
        "compile('1', 'f', 'eval')",
        "open('/etc/passwd')",
        "globals()",
        "locals()",
        "vars()",
        "input()",
        "memoryview(b'x')",
    ],
)
def test_forbidden_builtins_are_refused(call):
    name = call.partition("(")[0]
    refused(f"\ny = {call}\n", 2, f"'{name}' is not allowed")


def test_dunder_import_is_refused():
    refused("os = __import__('os')\n", 1, "'__import__'")


def test_dir_of_a_facade_lists_only_allowlisted_names():
    src = BOT.replace("pass", "print(dir(typing))").replace("class Bot", "import typing\nclass Bot")
    out = run(src)
    assert out["status"] == "ok", out
    assert "'Dict'" in out["logs"]
    assert "'sys'" not in out["logs"] and "get_type_hints" not in out["logs"], out["logs"]


# --------------------------------------------------------- imports


@pytest.mark.parametrize(
    "stmt,shown",
    [
        ("import ctypes", "'ctypes'"),
        ("import os", "'os'"),
        ("import os.path", "'os.path'"),
        ("from os import system", "'os'"),
        ("import subprocess", "'subprocess'"),
        ("import pickle", "'pickle'"),
        ("import marshal", "'marshal'"),
        ("import operator", "'operator'"),
        ("import inspect", "'inspect'"),
        ("import gc", "'gc'"),
        ("import importlib", "'importlib'"),
        ("import builtins", "'builtins'"),
        ("import linecache", "'linecache'"),
        ("import json.decoder", "'json.decoder'"),
        ("from json import decoder", "'json.decoder'"),
        ("import collections.abc, logging", "'logging'"),
        ("import dataclasses", "'dataclasses'"),
        ("import enum", "'enum'"),
        ("import types", "'types'"),
        ("import abc", "'abc'"),
        ("import contextlib", "'contextlib'"),
        ("import ast", "'ast'"),
        ("import atexit", "'atexit'"),
    ],
)
def test_imports_outside_the_allowlist_are_refused(stmt, shown):
    err = refused(f"x = 1\n{stmt}\n", 2, shown)
    assert "not" in err["message"]


def test_import_of_os_message_is_the_documented_one():
    err = refused("import json\nimport os\n", 2)
    assert err["message"] == "Import of 'os' is not allowed"


def test_relative_and_star_imports_are_refused():
    refused("from . import x\n", 1, "Relative imports")
    refused("\nfrom json import *\n", 2, "import *")


@pytest.mark.parametrize("mod", ["requests", "socket", "ssl", "http.client", "urllib.parse", "urllib3"])
def test_network_modules_need_network(mod):
    refused(f"import json\nimport {mod}\n", 2, "allow_network")


def test_network_modules_import_with_network():
    out = check("import requests, socket, ssl, http.client, urllib.parse\n" + BOT, network=True)
    assert out["status"] == "ok", out


# --------------------------------------------------------- attribute chains to os


@pytest.mark.parametrize(
    "src,shown",
    [
        ("import sys\nm = sys.modules['os']\n", "'sys.modules'"),
        ("import io\nf = io.open('/etc/passwd')\n", "'io.open'"),
        ("import io\nf = io.FileIO(3, 'w')\n", "'io.FileIO'"),
        ("import typing\nm = typing.sys\n", "'typing.sys'"),
        ("import typing\nh = typing.get_type_hints\n", "'typing.get_type_hints'"),
        ("import warnings\nm = warnings.sys\n", "'warnings.sys'"),
        ("import warnings\nf = warnings.formatwarning\n", "'warnings.formatwarning'"),
        ("import warnings\nc = warnings.catch_warnings\n", "'warnings.catch_warnings'"),
        ("import traceback\nf = traceback.walk_stack(None)\n", "'traceback.walk_stack'"),
        ("import traceback\nm = traceback.sys\n", "'traceback.sys'"),
        ("import json\nm = json.decoder.re\n", "'json.decoder'"),
        ("import json\nm = json.codecs\n", "'json.codecs'"),
        ("import base64\nm = base64.binascii\n", "'base64.binascii'"),
        ("import datetime\nm = datetime.sys\n", "'datetime.sys'"),
        ("import collections\nm = collections.abc.sys\n", "'collections.abc.sys'"),
        ("import functools\nf = functools.update_wrapper\n", "'functools.update_wrapper'"),
        ("import functools\nf = functools.singledispatch\n", "'functools.singledispatch'"),
        ("import string\nf = string.Formatter()\n", "'string.Formatter'"),
        ("from string import Formatter\n", "'string.Formatter'"),
        ("import email\nm = email.utils.os\n", "'email.utils.os'"),
        ("import email.utils\nm = email.utils.socket\n", "'email.utils.socket'"),
        ("from email import utils\nm = utils.os\n", "'email.utils.os'"),
        ("import weakref\nm = weakref.sys\n", "'weakref.sys'"),
        ("import statistics\nm = statistics.random\n", "'statistics.random'"),
        ("import sys\nf = sys.exc_info()\n", "'sys.exc_info'"),
        ("import sys as s\nf = s.settrace\n", "'sys.settrace'"),
        ("from sys import modules\n", "'sys.modules'"),
    ],
)
def test_attribute_chains_from_allowed_modules_are_refused(src, shown):
    refused(src, src.count("\n"), shown, "not available")


@pytest.mark.parametrize(
    "src,shown",
    [
        ("import http.client\nm = http.client.os\n", "'http.client.os'"),
        ("import http.client\nm = http.client.socket\n", "'http.client.socket'"),
        ("import requests\nm = requests.utils\n", "'requests.utils'"),
        ("import requests\nm = requests.compat\n", "'requests.compat'"),
        ("import urllib.request\nm = urllib.request.os\n", "'urllib.request.os'"),
        ("import socket\nm = socket.os\n", "'socket.os'"),
        ("import socket\nm = socket.fromfd\n", "'socket.fromfd'"),
        ("import ssl\nm = ssl.os\n", "'ssl.os'"),
    ],
)
def test_attribute_chains_from_network_modules_are_refused(src, shown):
    refused(src, src.count("\n"), shown, network=True)


def test_random_os_is_refused_as_underscore():
    refused("import random\nm = random._os\n", 2, "'_os'")


def test_facade_misses_are_refused_at_run_time_too():
    # An alias the static check cannot follow: the facade itself refuses.
    refused_at_run_time("import sys\nm = [sys][0]\nx = m.modules\n", 8, "'sys.modules'")


def test_io_open_through_an_alias_is_refused_at_run_time():
    refused_at_run_time("import io\nfor m in [io]:\n    m.open('/etc/passwd')\n", 8, "'io.open'")


def test_changing_a_facade_changes_only_the_bots_own_view():
    # A facade is the bot's own module object: library code keeps the real
    # module (UserDict.copy still copies after the bot broke its `copy`).
    src = (
        "import copy, collections\nclass Bot:\n    def __init__(self, ctx, params):\n"
        "        self.ctx = ctx\n    def on_init(self):\n        m = [copy][0]\n"
        "        m.copy = None\n        u = collections.UserDict({'a': [1]}).copy()\n"
        "        self.ctx.post('r', [copy.copy is None, u['a']])\n"
    )
    out = run(src)
    assert out["status"] == "ok" and out["posts"][0]["body"] == [True, [1]], out


# --------------------------------------------------------- string formatting


@pytest.mark.parametrize(
    "expr",
    [
        "'{0.__class__}'.format(1)",
        "'{0.__class__.__base__}'.format(1)",
        "'{x.__init__.__globals__}'.format(x=1)",
        "'{0:{1.__class__}}'.format(1, 2)",
        "'{0.__class__}'.format_map([1])",
        "'{0.gi_frame}'.format(1)",
    ],
)
def test_format_templates_reaching_dunders_are_refused_statically(expr):
    refused(f"\n\ns = {expr}\n", 3, "format field")


@pytest.mark.parametrize(
    "body",
    [
        "f = '{0.' + '__class__}'\ns = f.format(1)",
        "f = '{0.' + '__class__}'\ns = str.format(f, 1)",
        "f = '{x.' + '__class__}'\ns = f.format_map({'x': 1})",
        "f = '{0.' + '__class__}'\ns = type('').format(f, 1)",
        "f = '{0.' + '__class__}'\ns = [f.format][0](1)",
    ],
)
def test_dynamic_format_templates_are_refused_at_run_time(body):
    refused_at_run_time(body, 7, "format field")


def test_a_caught_format_refusal_still_fails_the_hook():
    body = "try:\n    ('{0.' + '__class__}').format(1)\nexcept Exception:\n    pass"
    out = run(
        "class Bot:\n    def __init__(self, ctx, params):\n        pass\n"
        "    def on_init(self):\n" + "".join("        " + ln + "\n" for ln in body.splitlines())
    )
    err = error(out)
    assert err["kind"] == "policy" and "format field" in err["message"], err
    assert err["line"] == 6, err


# --------------------------------------------------------- names


@pytest.mark.parametrize(
    "src,line,shown",
    [
        ("def _helper():\n    pass\n", 1, "'_helper'"),
        ("class _Hidden:\n    pass\n", 1, "'_Hidden'"),
        ("x = 1\ndef f(_secret):\n    pass\n", 2, "'_secret'"),
        ("def f(**kw):\n    pass\nf(__class__=1)\n", 3, "'__class__'"),
        ("try:\n    pass\nexcept Exception as _e:\n    pass\n", 3, "'_e'"),
        ("import json as _j\n", 1, "'_j'"),
        ("\nclass C:\n    def __del__(self):\n        pass\n", 3, "'__del__'"),
        ("\nclass C:\n    def __getattribute__(self, n):\n        pass\n", 3, "'__getattribute__'"),
        ("x = 1\nmatch x:\n    case int(__class__=c):\n        pass\n", 3, "'__class__'"),
        ("def f():\n    global _g\n", 2, "'_g'"),
        ("x = 1\ny = x.__dict__\n", 2, "'__dict__'"),
        ("x = 1\ny = type(x).__mro__\n", 2, "'__mro__'"),
        ("x = 1\ny = x.__reduce_ex__(2)\n", 2, "'__reduce_ex__'"),
    ],
)
def test_underscore_names_are_refused(src, line, shown):
    refused(src, line, shown)


def test_refusal_reports_the_first_offending_line():
    err = refused("x = 1\ny = 2\nimport os\nz = ().__class__\n", 3)
    assert "'os'" in err["message"]


# --------------------------------------------------------- found in review


def test_super_str_format_is_guarded():
    body = "class S(str):\n    pass\nf = S('{0.' + '__class__}')\ns = super(S, f).format(1)"
    refused_at_run_time(body, 9, "format field")


def test_a_fake_dunder_class_cannot_be_made_with_type():
    # A class claiming to be a dict via a `__class__` property in a type()
    # dict: type() refuses the dict (and the result copy goes by exact
    # types anyway, see test_hooks).
    body = (
        "Fake = type('Fake', (), {'__class' + '__': property(lambda s: dict)})\n"
        "self.ctx.set_state(Fake())"
    )
    refused_at_run_time(body, 6, "type()")


def test_facade_cannot_be_renamed_to_reach_other_submodules():
    # json.__init__('urllib') renames the module object, but a facade's
    # lookups go by the name it was made for, so `.request` stays refused.
    refused_at_run_time(
        "import json\njson.__init__('urllib')\nm = [json][0]\nm.request", 9, "'json.request'"
    )


def test_caught_attribute_errors_do_not_carry_library_objects():
    # Python sets AttributeError.obj to the object whose lookup failed; here
    # that is the real `dict` type behind typing.Dict, in other cases it could
    # be a module. The harness clears it in every except clause and __exit__.
    src = '''
import typing
class Quiet:
    def __enter__(self):
        return self
    def __exit__(self, t, value, tb):
        self.seen = value.obj
        return True
class Quieter:
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        self.seen = exc[1].obj
        return True
class Bot:
    def __init__(self, ctx, params):
        self.ctx = ctx
    def on_init(self):
        try:
            typing.Dict.no_such_attribute
        except AttributeError as e:
            first = e.obj
        try:
            typing.Dict.no_such_attribute
        except* AttributeError as g:
            group = g.exceptions[0].obj
        q = Quiet()
        with q:
            typing.Dict.no_such_attribute
        q2 = Quieter()
        with q2:
            typing.Dict.no_such_attribute
        self.ctx.post("objs", [first is None, group is None, q.seen is None, q2.seen is None])
'''
    out = run(src)
    assert out["status"] == "ok", out
    assert out["posts"][0]["body"] == [True, True, True, True]


# --------------------------------------------------------- the copy protocol

COPY_BOT = """
import copy, warnings, collections
got = []
def grab(self, state):
    got.append(state)
class Bot:
    def __init__(self, ctx, params):
        self.ctx = ctx
    def on_init(self):
{body}
        self.ctx.post("got", len(got))
"""


@pytest.mark.parametrize(
    "body",
    [
        # A subclass made by type() with a __setstate__ of its own received
        # the state of warnings.catch_warnings, `_module` (the real warnings
        # module) included, before the copy guard (and before catch_warnings
        # left the facade). type() now refuses such a dict outright.
        "Sub = type('Sub', (collections.OrderedDict,), {'__set' + 'state__': grab})\n"
        "copy.copy(Sub())",
        "Sub = type('Sub', (collections.UserDict,), {'__set' + 'state__': grab})\n"
        "Sub({'a': 1}).copy()",
        "Sub = type('Sub', (), {'__reduce' + '_ex__': lambda self, p: (list, (), None, None, None)})\n"
        "copy.copy(Sub())",
        "Sub = type('Sub', (), {'__deep' + 'copy__': lambda self, memo: got.append(memo)})\n"
        "copy.deepcopy(Sub())",
    ],
)
def test_copy_hooks_written_by_the_bot_are_refused(body):
    src = COPY_BOT.format(body="".join("        " + ln + "\n" for ln in body.splitlines()))
    err = error(run(src))
    assert err["kind"] == "policy" and "type()" in err["message"], err


@pytest.mark.parametrize(
    "hook", ["__setstate__", "__reduce_ex__", "__deepcopy__", "__getstate__", "__getattr__"]
)
def test_the_copy_guard_refuses_classes_with_hooks_from_bot_code(hook):
    """The copy guard behind type(): should a class with a copy hook
    written in bot code be made some other way, `copy` refuses it. (In
    process: the class is made here, its hook compiled as "bot.py".)"""
    import collections
    import copy

    import hx_runtime

    hx_runtime._harden_copy()
    ns = {}
    exec(compile("def hook(self, *a):\n    return {}\n", "bot.py", "exec"), ns)
    Sub = type("Sub", (collections.OrderedDict,), {hook: ns["hook"]})
    for f in (copy.copy, copy.deepcopy, lambda x: copy.deepcopy([x])):
        with pytest.raises(TypeError, match="written in bot code"):
            f(Sub())
    # Library-made classes with such hooks still copy.
    assert copy.deepcopy(collections.OrderedDict(a=[1])) == {"a": [1]}


def test_deepcopy_takes_no_memo():
    src = COPY_BOT.format(body="        copy.deepcopy([1], {})\n")
    err = error(run(src))
    assert err["kind"] == "exception" and "TypeError" in err["message"], err


def test_copy_still_copies_data_and_bot_objects():
    body = (
        "class P:\\n"
        "    def __init__(self, xs):\\n"
        "        self.xs = xs\\n"
        "p = P([1, [2]])\\n"
        "q = copy.deepcopy(p)\\n"
        "q.xs[1].append(3)\\n"
        "s = copy.copy({'a': [1]})\\n"
        "d = copy.deepcopy(collections.OrderedDict(a={'b': 1}))\\n"
        "self.ctx.post('r', [p.xs, q.xs, s, d, collections.UserDict({'u': 1}).copy()['u']])"
    )
    src = COPY_BOT.format(body="".join("        " + ln + "\n" for ln in body.replace("\\n", "\n").splitlines()))
    out = run(src)
    assert out["status"] == "ok", out
    assert out["posts"][0]["body"] == [[1, [2]], [1, [2, 3]], {"a": [1]}, {"a": {"b": 1}}, 1]
