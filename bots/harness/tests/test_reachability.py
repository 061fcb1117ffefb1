"""Nothing an allowed module, the bot builtins or `ctx` lead to by attribute
is a real module, a module's globals, a frame, or a callable that reads by
name, evaluates strings or opens files. See walk_facades.py for the walk."""

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
    found = "\n".join(out["findings"])
    assert "canary.class.mod -> the real module os" in found
    assert "canary.partial.func -> builtins.eval" in found
    assert "canary.dict['g'] -> the globals of json" in found
    assert "canary.list[1][0] -> io.open" in found
    # Instance dicts count, underscore keys included.
    assert "canary.catch_warnings._module -> the real module warnings" in found
    assert len(out["findings"]) == 5, found


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
