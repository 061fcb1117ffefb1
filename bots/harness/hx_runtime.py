"""The run-time half of the language layer: module facades, the import hook,
the builtins bot code gets, and the `str.format` guard.

Bot code runs with a builtins dict built here, so `import` statements go
through `bot_import`, which enforces the allowlist of `hx_policy` and hands out
facades instead of modules. Library code keeps the real builtins and imports:
only bot frames see this layer.
"""

import sys

import hx_policy as P

ModuleType = type(sys)


class PolicyError(Exception):
    """Bot code reached for something the language layer refuses at run time.

    Raised from the format guard and the import hook. The harness remembers
    that one was raised, so catching it does not make the hook succeed.
    """


class FacadeAttributeError(AttributeError):
    """An attribute a module facade does not expose (`sys.modules`)."""


# Set to the harness's callback that records a policy violation even when the
# bot catches the exception.
_on_violation = None


def _violation(message):
    if _on_violation is not None:
        _on_violation(message, _bot_line())
    return PolicyError(message)


def _bot_line():
    """Line of the innermost bot frame on the stack, or None."""
    f = sys._getframe(1)
    while f is not None:
        if f.f_code.co_filename == "bot.py":
            return f.f_lineno
        f = f.f_back
    return None


class Facade(ModuleType):
    """A module object holding only the allowlisted attributes of one module.

    Read-only: a bot cannot plant attributes on it, and it has no route back
    to the module it mirrors (no `__dict__`/`__class__` reads pass the `ast`
    check, and it keeps no reference to the real module at all).
    """

    # The module's name lives under a key that `ModuleType.__init__` does not
    # reset, so a bot calling `json.__init__("urllib")` renames nothing that
    # the facade's own lookups use.

    def __init__(self, name, doc=None):
        if "__mmh_name__" in self.__dict__:
            raise FacadeAttributeError("module facades cannot be re-initialised")
        ModuleType.__init__(self, name, doc)
        self.__dict__["__mmh_name__"] = name

    def __getattr__(self, name):
        own = self.__dict__["__mmh_name__"]
        full = f"{own}.{name}"
        if full in P.FACADES and name in P.FACADES[own]:
            sub = facade(full)
            self.__dict__[name] = sub
            return sub
        raise FacadeAttributeError(f"'{full}' is not available to bots")

    def __setattr__(self, name, value):
        raise FacadeAttributeError(f"module '{self.__mmh_name__}' is read-only for bots")

    def __delattr__(self, name):
        raise FacadeAttributeError(f"module '{self.__mmh_name__}' is read-only for bots")

    def __repr__(self):
        return f"<module '{self.__mmh_name__}' (bot facade)>"

    def __dir__(self):
        own = self.__dict__["__mmh_name__"]
        return sorted(
            n for n in P.FACADES[own] if n in self.__dict__ or f"{own}.{n}" in P.FACADES
        )


_facades = {}  # module name -> its facade, made once per hook
_network = False  # whether network modules may be imported (set by configure)


def facade(name):
    """The (cached) facade of module `name`; imports the real module."""
    f = _facades.get(name)
    if f is not None:
        return f
    real = __import__(name, fromlist=["_"])
    f = Facade(name, getattr(real, "__doc__", None))
    overrides = _overrides(name, real)
    values = {}
    for attr in P.FACADES[name]:
        if f"{name}.{attr}" in P.FACADES:
            continue  # submodule: made on first access by __getattr__
        if attr in overrides:
            values[attr] = overrides[attr]
        elif hasattr(real, attr):
            value = getattr(real, attr)
            if isinstance(value, ModuleType):
                continue  # never hand out a real module
            values[attr] = value
    f.__dict__.update(values)
    _facades[name] = f
    if name in ("traceback", "warnings"):
        _register_source()
    return f


def bot_import(name, globals=None, locals=None, fromlist=(), level=0):
    """`__import__` for bot frames: allowlisted modules only, as facades."""
    if not _copy_hardened:
        harden_copy()
    if level:
        raise _violation("Relative imports are not allowed")
    why = P.module_refused(name, _network)
    if why:
        raise _violation(why)
    leaf = facade(name)
    if fromlist:
        # Check every name here: when `from m import x` finds no `x` on the
        # object returned, CPython falls back to `sys.modules["m.x"]`, which
        # would be the real module.
        for attr in fromlist:
            if attr == "*" or attr not in P.FACADES[name]:
                raise _violation(f"'{name}.{attr}' is not available to bots")
            try:
                getattr(leaf, attr)
            except AttributeError:
                raise ImportError(
                    f"cannot import name '{attr}' from '{name}' (not in this Python)"
                ) from None
        return leaf
    return facade(name.partition(".")[0])


# ------------------------------------------------------------ copy

# The copy protocol hands an object's whole state, private attributes
# included, to hooks the object's class defines (`__setstate__`,
# `__reduce_ex__`, `__deepcopy__`...), and its `_reconstruct` sets attributes
# by names that come from those hooks. Bot code cannot define such hooks with
# `class` syntax, but it can with `type(name, bases, {"__setstate__": f})`; a
# subclass of `warnings.catch_warnings` built that way received the real
# `warnings` module from `copy.copy`. So, before any bot import can reach the
# `copy` module (directly or through `UserDict.copy`, `email.generator`,
# `requests`' cookies...), its entry points refuse objects whose class has a
# copy hook written in bot code.

_COPY_HOOKS = (
    "__reduce_ex__",
    "__reduce__",
    "__getstate__",
    "__setstate__",
    "__copy__",
    "__deepcopy__",
    "__new__",
    "__getnewargs__",
    "__getnewargs_ex__",
)
_copy_hardened = False


_FUNCTION = type(lambda: None)
# C functions, slot wrappers and method descriptors are library code.
_C_CALLABLES = (
    type(len),  # builtin_function_or_method
    type(object.__init__),  # wrapper_descriptor
    type(str.join),  # method_descriptor
    type(dict.__dict__["fromkeys"]),  # classmethod_descriptor
    type(type.__dict__["__mro__"]),  # getset_descriptor
    type(BaseException.__dict__["args"]),  # getset on exceptions
)


def _written_by_bot(value):
    """Whether a class attribute is, or wraps, something other than C code
    or a function compiled from a file other than the bot's. Exact type checks
    only: a bot object can claim any `__class__`."""
    if type(value) in (staticmethod, classmethod):
        value = value.__func__
    if type(value) is _FUNCTION:
        return value.__code__.co_filename == "bot.py"
    return type(value) not in _C_CALLABLES


_MRO = type.__dict__["__mro__"]
_DICT = type.__dict__["__dict__"]
# Also refused when written by the bot: what could hide the instance dict or
# answer attribute lookups for the copy machinery.
_LOOKUP_HOOKS = ("__dict__", "__getattribute__", "__getattr__")


def _refuse_bot_copy_hooks(x):
    cls = type(x)
    for k in _MRO.__get__(cls):
        d = _DICT.__get__(k)
        for hook in _COPY_HOOKS + _LOOKUP_HOOKS:
            if hook in d and _written_by_bot(d[hook]):
                raise TypeError(
                    f"copy: {cls.__name__} has a {hook} written in bot code; "
                    "copying it is not available to bots"
                )
    try:
        own = object.__getattribute__(x, "__dict__")
    except AttributeError:
        return
    if type(own) is dict:
        for hook in _COPY_HOOKS:
            if hook in own:
                raise TypeError(f"copy: an instance attribute {hook} is not available to bots")


def harden_copy():
    """Guard `copy.copy`, `copy.deepcopy` and `copy._reconstruct` in place."""
    global _copy_hardened
    _copy_hardened = True
    import copy

    real_copy, real_deepcopy, real_reconstruct = copy.copy, copy.deepcopy, copy._reconstruct

    def guarded_copy(x):
        _refuse_bot_copy_hooks(x)
        return real_copy(x)

    def guarded_deepcopy(x, memo=None, _nil=[]):  # noqa: B006 (copy's own signature)
        _refuse_bot_copy_hooks(x)
        return real_deepcopy(x, memo, _nil)

    def guarded_reconstruct(x, memo, *args, **kwargs):
        # Its `deepcopy=` default is bound to the unguarded function.
        kwargs["deepcopy"] = guarded_deepcopy
        return real_reconstruct(x, memo, *args, **kwargs)

    copy.copy = guarded_copy
    copy.deepcopy = guarded_deepcopy
    copy._reconstruct = guarded_reconstruct
    # The container copiers (`_deepcopy_list`...) bind `deepcopy=` at
    # definition too; route their recursion through the guard as well.
    table = copy._deepcopy_dispatch
    for t, f in list(table.items()):
        code = getattr(f, "__code__", None)
        if code is not None and "deepcopy" in code.co_varnames[: code.co_argcount]:
            table[t] = lambda x, memo, _f=f: _f(x, memo, deepcopy=guarded_deepcopy)


def _copy_overrides(copy):
    def copy_(x):
        """copy.copy (objects whose class has copy hooks from bot code are refused)."""
        return copy.copy(x)

    def deepcopy(x):
        """copy.deepcopy without the `memo` argument (a memo would keep every
        original it met, private state included, for the caller to read)."""
        return copy.deepcopy(x)

    return {"copy": copy_, "deepcopy": deepcopy}


# ------------------------------------------------------------ replacements

_bot_source = None


def _register_source():
    """Let `traceback.format_exc()` show the bot's lines for "bot.py"."""
    if _bot_source is None:
        return
    import linecache

    lines = _bot_source.splitlines(True)
    linecache.cache["bot.py"] = (len(_bot_source), None, lines, "bot.py")


def _overrides(name, real):
    if name == "copy":
        return _copy_overrides(real)
    if name == "functools":
        real_wraps = real.wraps

        def wraps(wrapped):
            """functools.wraps with the default attribute lists only."""
            return real_wraps(wrapped)

        return {"wraps": wraps}
    if name == "urllib.request":
        real_urlopen = real.urlopen
        Request = real.Request

        def urlopen(url, data=None, timeout=30, *, context=None):
            """urllib.request.urlopen for http and https URLs only."""
            # Exact types only: a Request subclass could report one scheme
            # here and another to the opener.
            if type(url) is Request:
                ok = url.type in ("http", "https")
            else:
                ok = type(url) is str and url.lower().startswith(("http://", "https://"))
            if not ok:
                raise _violation("urlopen: only http:// and https:// URLs are allowed")
            return real_urlopen(url, data, timeout, context=context)

        return {"urlopen": urlopen}
    return {}


# ------------------------------------------------------------ str.format


def _safe_format(fmt, *args, **kwargs):
    if not issubclass(type(fmt), str):
        return str.format(fmt, *args, **kwargs)  # raises str's TypeError
    why = P.format_refused(fmt)
    if why:
        raise _violation(why)
    return str.format(fmt, *args, **kwargs)


def _safe_format_map(fmt, mapping):
    if not issubclass(type(fmt), str):
        return str.format_map(fmt, mapping)
    why = P.format_refused(fmt)
    if why:
        raise _violation(why)
    return str.format_map(fmt, mapping)


def format_guard(obj, name):
    """What `obj.format` / `obj.format_map` evaluates to in bot code.

    For strings and `str` itself, a version that checks the template's fields
    first; for anything else (a bot class with its own `format` method), the
    real attribute.
    """
    safe = _safe_format if name == "format" else _safe_format_map
    t = type(obj)  # the real type: `isinstance` would trust a fake __class__
    if issubclass(t, str):
        return _bind(safe, obj)
    if issubclass(t, type) and issubclass(obj, str):
        return safe
    value = getattr(obj, name)
    # `super(str, s).format` and the like: the real method, bound to a str.
    if value is str.format or value is str.format_map:
        return safe
    owner = getattr(value, "__self__", None)
    if issubclass(type(owner), str) and getattr(value, "__name__", None) == name:
        return _bind(safe, owner)
    return value


def _bind(safe, s):
    if safe is _safe_format:
        return lambda *a, **k: _safe_format(s, *a, **k)
    return lambda mapping: _safe_format_map(s, mapping)


def scrub_exception(exc):
    """Clear `AttributeError.obj` in a caught exception, the groups it
    holds and the exceptions in its args (see hx_check._scrub_call)."""
    seen = set()
    pending = [exc]
    while pending:
        e = pending.pop()
        if type(e) is tuple:  # `def __exit__(self, *exc)`
            pending.extend(e)
            continue
        if id(e) in seen or not issubclass(type(e), BaseException):
            continue
        seen.add(id(e))
        if issubclass(type(e), AttributeError):
            try:
                e.obj = None
            except BaseException:  # a bot subclass may forbid it; its own object then
                pass
        if issubclass(type(e), BaseExceptionGroup):
            pending.extend(BaseExceptionGroup.exceptions.__get__(e))
        args = BaseException.args.__get__(e)
        if type(args) is tuple:
            pending.extend(args)


# ------------------------------------------------------------ builtins

_SAFE_BUILTINS = """abs aiter all anext any ascii bin bool bytearray bytes callable
chr classmethod complex dict dir divmod enumerate filter float format frozenset
hasattr hash hex id int isinstance issubclass iter len list map max min next
object oct ord pow print property range repr reversed round set slice sorted
staticmethod str sum super tuple type zip Ellipsis NotImplemented
__build_class__""".split()


def bot_builtins():
    """The builtins dict of bot code: safe functions and types, every
    exception class, and the import hook."""
    import builtins

    out = {}
    for n in _SAFE_BUILTINS:
        if hasattr(builtins, n):
            out[n] = getattr(builtins, n)
    for n, v in vars(builtins).items():
        if isinstance(v, type) and issubclass(v, BaseException) and not n.startswith("_"):
            out[n] = v
    out["__import__"] = bot_import
    return out


def configure(network, source, on_violation):
    """Set the hook-wide parameters before any bot code runs."""
    global _network, _bot_source, _on_violation
    _network = bool(network)
    _bot_source = source
    _on_violation = on_violation
