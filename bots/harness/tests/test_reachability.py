"""Nothing an allowed module, the bot builtins, `ctx` or the print capture
lead to, by attribute, `match` pattern, `type()` or subscript, is a real
module, a module's globals, a frame, a metaclass, the unguarded
`str.format`, any class, object or state of the harness, or a callable that
reads by name, evaluates strings or opens files. See walk_facades.py for the
walk."""

import json
import os
import subprocess

from hxrun import PYTHON

WALKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "walk_facades.py")


def walk(*args):
    p = subprocess.run(
        [PYTHON, "-I", "-S", "-B", WALKER, *args], capture_output=True, env={}, timeout=300
    )
    assert p.returncode == 0, p.stderr.decode()
    return json.loads(p.stdout)


def test_nothing_forbidden_is_reachable_within_depth_4():
    out = walk("4")
    assert out["visited"] > 5000, out["visited"]  # the walk really ran
    assert out["findings"] == [], "\n".join(out["findings"][:40])


def test_the_walk_sees_planted_escapes():
    out = walk("3", "--canary")
    found = out["findings"]
    text = "\n".join(found)
    for expected in [
        "case canary.class(..., mod=) -> the real module os",
        "case canary.partial(..., func=) -> builtins.eval",
        "canary.dict['g'] -> the globals of json",
        "canary.list[1][0] -> io.open",
        # Instance dicts of constructed objects count, underscore keys included.
        "canary.catch_warnings._module -> the real module warnings",
        "canary.types[0] -> a metaclass (type)",
        "canary.types[1] -> a class factory (Enum, an enum without members)",
        # The harness's own objects and state.
        "case canary.class(..., run=) -> an object of the harness (Run)",
        "canary.limits['l'] -> harness state: run.limits",
    ]:
        assert expected in found, expected + "\n\n" + text


def test_the_walk_models_match_patterns():
    # With the canary, the walk applies the policy `match` had before:
    # keyword patterns under the attribute rules only, and a positional
    # pattern on a class whose __match_args__ names __globals__. It must
    # then find what that policy let through: the unguarded str.format of
    # `case str(format=f)` and the harness's globals behind ctx.
    found = "\n".join(walk("3", "--canary")["findings"])
    assert "case canary.str(..., format=) -> the unguarded str.format" in found, found
    assert "case Planted(case sys.stdout(..., write=))[0] -> the globals of hx_core" in found, found


def test_facade_lists_name_no_module_except_listed_submodules():
    """A listed attribute that is a real module would be silently dropped by
    the facade (and `from m import x` would fail oddly): list submodules as
    their own FACADES entries instead."""
    import importlib
    import sys

    import hx_policy as P

    sys.path.append("/usr/lib/python3/dist-packages")
    ModuleType = type(sys)
    wrong = []
    for mod, names in P.FACADES.items():
        real = importlib.import_module(mod)
        for n in names:
            if f"{mod}.{n}" not in P.FACADES and isinstance(getattr(real, n, None), ModuleType):
                wrong.append(f"{mod}.{n}")
        assert mod.partition(".")[0] in P.TOP_LEVEL, mod
    assert wrong == []
