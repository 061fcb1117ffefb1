"""The run-time half of the language layer: module facades, the import hook,
the builtins bot code gets (with its guarded `type`), the `str.format`
guard, the clock guard, the harness's `getattr`/`hasattr`, and the exception
scrub.

`make_layer()` builds all of it for one hook. Everything that holds hook
state (the facades made so far, whether the network is allowed, the
callback that records violations) lives in that function's closure, never
in a module global or an attribute: bot code can reach the functions, not
what they remember. No class or instance of the harness is handed to bot
code either (facades are plain module objects), so there is nothing of the
harness a bot could mutate; test_reachability.py walks the objects bot code
can reach to check that.

Library code keeps the real builtins and imports: only bot frames see this
layer.
"""

import sys

import hx_policy as P

ModuleType = type(sys)
_real_type = type
_NONE = type(None)

# C functions, slot wrappers and method descriptors are library code.
_FUNCTION = type(lambda: None)
_BUILTIN_METHOD = type(len)  # also a C method bound to its class or object
_C_CALLABLES = (
    type(len),  # builtin_function_or_method
    type(object.__init__),  # wrapper_descriptor
    type(str.join),  # method_descriptor
    type(dict.__dict__["fromkeys"]),  # classmethod_descriptor
    type(type.__dict__["__mro__"]),  # getset_descriptor
    type(BaseException.__dict__["args"]),  # getset on exceptions
)
_MRO = type.__dict__["__mro__"]
_DICT = type.__dict__["__dict__"]
# Read through the base classes' own descriptors: a bot subclass may define
# properties of the same names.
_ARGS = BaseException.__dict__["args"]
_TRACEBACK = BaseException.__dict__["__traceback__"]
_CONTEXT = BaseException.__dict__["__context__"]
_CAUSE = BaseException.__dict__["__cause__"]
_GROUP_MEMBERS = BaseExceptionGroup.__dict__["exceptions"]
_ATTRIBUTE_ERROR_OBJ = AttributeError.__dict__["obj"]
# Attributes CPython fills with a name (a string); an exception a library
# made itself may hold anything there.
_NAME_FIELDS = [
    (cls, cls.__dict__[field])
    for cls, fields in ((AttributeError, ("name",)), (NameError, ("name",)), (ImportError, ("name", "path")))
    for field in fields
    if field in cls.__dict__
]


def _bot_line():
    """Line of the innermost bot frame on the stack, or None."""
    f = sys._getframe(1)
    while f is not None:
        if f.f_code.co_filename == "bot.py":
            return f.f_lineno
        f = f.f_back
    return None


# ------------------------------------------------------------ exceptions


def scrub_exception(exc):
    """Make an exception safe to hand to bot code, in place.

    Python fills `AttributeError.obj` with the object whose attribute lookup
    failed, deep inside library code (a real module, say), and a
    traceback's library frames hold library globals. So for `exc` and every
    exception it leads to (its context and cause, the members of a group,
    exceptions among its args or its attributes): `obj` is cleared and the
    traceback is cut to the frames of bot code. `name` (and an import
    error's `path`), strings when Python sets them, are cleared if they hold
    anything else. Other attributes are data the library chose to publish.
    """
    seen = set()
    pending = [exc]
    while pending:
        e = pending.pop()
        if id(e) in seen or not issubclass(_real_type(e), BaseException):
            continue
        seen.add(id(e))
        if issubclass(_real_type(e), AttributeError):
            _ATTRIBUTE_ERROR_OBJ.__set__(e, None)
        for cls, field in _NAME_FIELDS:
            if issubclass(_real_type(e), cls) and _real_type(field.__get__(e)) not in (str, _NONE):
                field.__set__(e, None)
        _cut_to_bot_frames(e)
        pending.append(_CONTEXT.__get__(e))
        pending.append(_CAUSE.__get__(e))
        if issubclass(_real_type(e), BaseExceptionGroup):
            pending.extend(_GROUP_MEMBERS.__get__(e))
        args = _ARGS.__get__(e)
        if _real_type(args) is tuple:
            pending.extend(args)
        try:
            own = object.__getattribute__(e, "__dict__")
        except AttributeError:
            own = None
        if _real_type(own) is dict:
            pending.extend(v for v in dict.values(own) if issubclass(_real_type(v), BaseException))


def _cut_to_bot_frames(e):
    tb = _TRACEBACK.__get__(e)
    keep = []
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "bot.py":
            keep.append(tb)
        tb = tb.tb_next
    for a, b in zip(keep, keep[1:]):
        a.tb_next = b
    if keep:
        keep[-1].tb_next = None
    _TRACEBACK.__set__(e, keep[0] if keep else None)


def scrub_arguments(*values):
    """The first statement of every bot function (inserted by the checker):
    scrub every exception among its arguments."""
    for v in values:
        if issubclass(_real_type(v), BaseException):
            scrub_exception(v)


# ------------------------------------------------------------ copy

# The copy protocol hands an object's whole state, private attributes
# included, to hooks the object's class defines (`__setstate__`,
# `__reduce_ex__`, `__deepcopy__`...), and its `_reconstruct` sets attributes
# by names that come from those hooks. A class statement in bot code cannot
# define them, and `type()` refuses them, but the real `type` may still be
# reached through a library (and copying bot objects is ordinary), so before
# any bot import can reach the `copy` module (directly or through
# `UserDict.copy`, `email.generator`, `requests`' cookies...), its entry
# points refuse objects whose class has a copy hook written in bot code.

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
# Also refused when written by the bot: what could hide the instance dict or
# answer attribute lookups for the copy machinery.
_LOOKUP_HOOKS = ("__dict__", "__getattribute__", "__getattr__")


def _written_by_bot(value):
    """Whether a class attribute is, or wraps, something other than C code
    or a function compiled from a file other than the bot's. Exact type checks
    only: a bot object can claim any `__class__`."""
    if _real_type(value) in (staticmethod, classmethod):
        value = value.__func__
    if _real_type(value) is _FUNCTION:
        return value.__code__.co_filename == "bot.py"
    return _real_type(value) not in _C_CALLABLES


def _refuse_bot_copy_hooks(x):
    cls = _real_type(x)
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
    if _real_type(own) is dict:
        for hook in _COPY_HOOKS:
            if hook in own:
                raise TypeError(f"copy: an instance attribute {hook} is not available to bots")


def _harden_copy():
    """Guard `copy.copy`, `copy.deepcopy` and `copy._reconstruct` in place
    (once per process; the library itself then goes through the guard)."""
    import copy

    if getattr(copy.copy, "hx_guarded", False):
        return
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

    guarded_copy.hx_guarded = True
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


# ------------------------------------------------------------ builtins

_SAFE_BUILTINS = """abs aiter all anext any ascii bin bool bytearray bytes callable
chr classmethod complex dict dir divmod enumerate filter float format frozenset
hash hex id int isinstance issubclass iter len list map max min next
object oct ord pow print property range repr reversed round set slice sorted
staticmethod str sum super tuple zip Ellipsis NotImplemented
__build_class__""".split()


# ------------------------------------------------------------ the layer


def make_layer(network, source, on_violation, clock=None):
    """The language layer of one hook.

    `on_violation(message, line)` records a refusal, so that the hook fails
    even if bot code catches the exception raised with it. `clock` is what
    `hx_determinism.install` returned for a job with `now` (None otherwise):
    `datetime`'s own clock methods then read the hook's time. Returns a dict
    with `builtins` (the bot's builtins dict), `helpers` (the names the
    checker's rewrites call, for the bot's globals), `facade(name)` and
    `is_facade_miss(exc)`.
    """
    layer, bind_hook = prepare_layer(network)
    bind_hook(source, on_violation, clock)
    return layer


# Modules whose facades a fork template may make before its children's jobs:
# nothing in them depends on the hook (the job's clock and entropy patch
# `time`, `os` and `random`, whose facades copy the patched functions, so
# those are made after; `traceback` and `warnings` register the hook's
# source).
PREPARABLE = ("re", "hashlib", "secrets", "json", "math")


def prepare_facades(layer, code):
    """Make, before the job, the facades of the `PREPARABLE` modules that
    `code` (a bot's module code) names, and guard `copy` (both happen
    before any bot code runs either way)."""
    _harden_copy()
    names = set(code.co_names)
    for name in PREPARABLE:
        if name in names and not P.module_refused(name, False):
            layer["facade"](name)


def prepare_layer(network):
    """`make_layer` in two steps: the layer, built before the job is known
    (a fork template builds it once for all its children), and
    `bind_hook(source, on_violation, clock)`, which the hook calls once
    before any bot code runs. Only the harness holds `bind_hook`; the
    layer's functions read those three when they are called, never
    before."""
    source = on_violation = clock = None

    def bind_hook(source_, on_violation_, clock_):
        nonlocal source, on_violation, clock
        source, on_violation, clock = source_, on_violation_, clock_

    facades = {}  # module name -> its facade, made once per hook
    last_miss = [None]  # the last AttributeError a facade raised
    copy_hardened = [False]

    def refusal(kind, message):
        """Record a violation at the current bot line and return the
        exception (of a builtin type) to raise with it."""
        on_violation(message, _bot_line())
        return kind(message)

    # -- facades

    def facade(name):
        """The (cached) facade of module `name`; imports the real module.

        A facade is a plain module object holding only the allowlisted
        attributes; an allowed submodule is itself a facade, made on first
        access by the module-level `__getattr__` (PEP 562). It keeps no
        reference to the module it mirrors. It is the bot's own: changing
        it changes what that bot sees and nothing else.
        """
        f = facades.get(name)
        if f is not None:
            return f
        # The module itself (a submodule too), without `fromlist`, which
        # would look for a submodule named by its entry on the path.
        __import__(name)
        real = sys.modules[name]
        f = ModuleType(name, getattr(real, "__doc__", None))
        overrides = _overrides(name, real)
        values = {}
        for attr in P.FACADES[name]:
            if f"{name}.{attr}" in P.FACADES:
                continue  # submodule: made on first access
            if attr in overrides:
                values[attr] = overrides[attr]
            elif hasattr(real, attr):
                value = getattr(real, attr)
                if isinstance(value, ModuleType):
                    continue  # never hand out a real module
                values[attr] = value
        own = f.__dict__
        own.update(values)

        def module_getattr(attr):
            full = f"{name}.{attr}"
            if full in P.FACADES and attr in P.FACADES[name]:
                sub = facade(full)
                own[attr] = sub
                return sub
            miss = AttributeError(f"'{full}' is not available to bots", name=attr)
            last_miss[0] = miss
            raise miss

        def module_dir():
            return sorted(n for n in P.FACADES[name] if n in own or f"{name}.{n}" in P.FACADES)

        own["__getattr__"] = module_getattr
        own["__dir__"] = module_dir
        facades[name] = f
        if name in ("traceback", "warnings"):
            _register_source()
        return f

    def is_facade_miss(exc):
        return exc is last_miss[0]

    def bot_import(name, globals=None, locals=None, fromlist=(), level=0):
        """`__import__` for bot frames: allowlisted modules only, as facades."""
        if not copy_hardened[0]:
            _harden_copy()
            copy_hardened[0] = True
        if level:
            raise refusal(ImportError, "Relative imports are not allowed")
        why = P.module_refused(name, network)
        if why:
            raise refusal(ImportError, why)
        leaf = facade(name)
        if fromlist:
            # Check every name here: when `from m import x` finds no `x` on
            # the object returned, CPython falls back to
            # `sys.modules["m.x"]`, which would be the real module.
            for attr in fromlist:
                if attr == "*" or attr not in P.FACADES[name]:
                    raise refusal(ImportError, f"'{name}.{attr}' is not available to bots")
                try:
                    getattr(leaf, attr)
                except AttributeError:
                    raise ImportError(
                        f"cannot import name '{attr}' from '{name}' (not in this Python)"
                    ) from None
            return leaf
        return facade(name.partition(".")[0])

    # -- replacements inside facades

    def _register_source():
        """Let `traceback.format_exc()` show the bot's lines for "bot.py"."""
        import linecache

        lines = source.splitlines(True)
        linecache.cache["bot.py"] = (len(source), None, lines, "bot.py")

    def _overrides(name, real):
        if name == "copy":

            def copy_(x):
                """copy.copy (objects whose class has copy hooks from bot code are refused)."""
                return real.copy(x)

            def deepcopy(x):
                """copy.deepcopy without the `memo` argument (a memo would keep every
                original it met, private state included, for the caller to read)."""
                return real.deepcopy(x)

            return {"copy": copy_, "deepcopy": deepcopy}
        if name == "functools":
            real_wraps = real.wraps

            def wraps(wrapped):
                """functools.wraps with the default attribute lists only."""
                return real_wraps(wrapped)

            return {"wraps": wraps}
        if name == "typing":
            real_origin, real_args = real.get_origin, real.get_args

            def get_origin(tp):
                """typing.get_origin, answering the bot's `type` for `type`."""
                return _bot_view(real_origin(tp))

            def get_args(tp):
                """typing.get_args, answering the bot's `type` for `type`
                (also in the parameter list of a Callable)."""
                return tuple(_bot_view(a) for a in real_args(tp))

            return {"get_origin": get_origin, "get_args": get_args}
        if name == "email.utils" and clock is not None:
            real_localtime = real.localtime
            utc_now = clock["utc_now"]

            def localtime(dt=None, *args, **kwargs):
                """email.utils.localtime; without `dt`, the hook's time."""
                return real_localtime(utc_now() if dt is None else dt, *args, **kwargs)

            return {"localtime": localtime}
        if name == "urllib.request":
            real_urlopen = real.urlopen
            Request = real.Request

            def urlopen(url, data=None, timeout=30, *, context=None):
                """urllib.request.urlopen for http and https URLs only."""
                # Exact types only: a Request subclass could report one
                # scheme here and another to the opener.
                if _real_type(url) is Request:
                    ok = url.type in ("http", "https")
                else:
                    ok = _real_type(url) is str and url.lower().startswith(("http://", "https://"))
                if not ok:
                    raise refusal(ValueError, "urlopen: only http:// and https:// URLs are allowed")
                return real_urlopen(url, data, timeout, context=context)

            return {"urlopen": urlopen}
        return {}

    # -- the bot's `type`

    class BotType:
        """What the name `type` is in bot code.

        `type(x)` answers as usual, except that it never hands out a
        metaclass: for a class whose metaclass is `type` it answers this
        guard itself (so `type(int) is type`), and for any other metaclass
        it refuses. `type(name, bases, dict)` refuses a dict with special
        methods or `_` names (a class statement, which the checker sees, is
        the way to define those) and bases that are metaclasses.
        `isinstance(x, type)` and `issubclass(c, type)` work; deriving a
        class from it is refused. A class with special methods built from a
        plain dict would get them past the checker; a metaclass builds such
        classes.
        """

        __slots__ = ()
        __name__ = "type"
        __qualname__ = "type"

        def __call__(self, *args, **kwargs):
            if len(args) == 1 and not kwargs:
                obj = args[0]
                if obj is self:
                    return self
                t = _real_type(obj)
                if t is _real_type:
                    return self
                if issubclass(t, _real_type):
                    raise refusal(
                        TypeError,
                        f"type() of {obj.__name__} is its metaclass, which is not "
                        "available to bots (a metaclass builds classes from a plain dict)",
                    )
                return t
            if len(args) == 3 and not kwargs:
                name, bases, ns = args
                if _real_type(ns) is not dict:
                    raise TypeError("type(): the class namespace must be a dict")
                for key in dict.keys(ns):
                    why = P.class_dict_key_refused(key)
                    if why:
                        raise refusal(TypeError, why)
                if _real_type(bases) is not tuple:
                    raise TypeError("type(): the bases must be a tuple")
                for b in bases:
                    if b is self or (isinstance(b, _real_type) and issubclass(b, _real_type)):
                        raise refusal(TypeError, METACLASS_REFUSED)
                return _real_type(name, bases, dict(ns))
            if kwargs:
                raise refusal(TypeError, "type(): keyword arguments are not available to bots")
            raise TypeError("type() takes 1 or 3 arguments")

        def __instancecheck__(self, obj):
            return isinstance(obj, _real_type)

        def __subclasscheck__(self, cls):
            return issubclass(cls, _real_type)

        def __mro_entries__(self, bases):
            raise refusal(TypeError, METACLASS_REFUSED)

        def __repr__(self):
            return "<class 'type'>"

        # For annotations: `type[C]` and `type | None`, answered by typing's
        # equivalents (typing.Type cannot be called).
        def __getitem__(self, item):
            import typing

            return typing.Type[item]

        def __or__(self, other):
            import typing

            return typing.Union[self, other]

        def __ror__(self, other):
            import typing

            return typing.Union[other, self]

    bot_type = BotType()

    def _bot_view(value):
        if value is _real_type:
            return bot_type
        if _real_type(value) is list:  # Callable[[type], int] -> ([type], int)
            return [_bot_view(v) for v in value]
        return value

    # -- str.format

    def safe_format(fmt, *args, **kwargs):
        if not issubclass(_real_type(fmt), str):
            return str.format(fmt, *args, **kwargs)  # raises str's TypeError
        why = P.format_refused(fmt)
        if why:
            raise refusal(ValueError, why)
        return str.format(fmt, *args, **kwargs)

    def safe_format_map(fmt, mapping):
        if not issubclass(_real_type(fmt), str):
            return str.format_map(fmt, mapping)
        why = P.format_refused(fmt)
        if why:
            raise refusal(ValueError, why)
        return str.format_map(fmt, mapping)

    def bind(safe, s):
        if safe is safe_format:
            return lambda *a, **k: safe_format(s, *a, **k)
        return lambda mapping: safe_format_map(s, mapping)

    def format_guard(obj, name):
        """What `obj.format` / `obj.format_map` evaluates to in bot code.

        For strings and `str` itself, a version that checks the template's
        fields first; for anything else (a bot class with its own `format`
        method), the real attribute.
        """
        safe = safe_format if name == "format" else safe_format_map
        t = _real_type(obj)  # the real type: `isinstance` would trust a fake __class__
        if issubclass(t, str):
            return bind(safe, obj)
        if issubclass(t, _real_type) and issubclass(obj, str):
            return safe
        value = getattr(obj, name)
        # `super(str, s).format` and the like: the real method, bound to a str.
        if value is str.format or value is str.format_map:
            return safe
        owner = getattr(value, "__self__", None)
        if issubclass(_real_type(owner), str) and getattr(value, "__name__", None) == name:
            return bind(safe, owner)
        return value

    # -- datetime's clock

    def clock_guard(obj, name):
        """What `obj.now` / `obj.utcnow` / `obj.today` evaluates to in bot code.

        Without a hook time, and for anything but `datetime`'s own C
        methods (a bot's attribute of that name, a subclass's override), the
        real attribute. For the C methods, reached through a class, an
        instance or `super()`: a version for the same class that reads the
        hook's time (`hx_determinism`).
        """
        value = getattr(obj, name)
        if clock is None or _real_type(value) is not _BUILTIN_METHOD:
            return value
        datetime = sys.modules.get("datetime")
        owner = value.__self__
        if (
            datetime is not None
            and issubclass(_real_type(owner), _real_type)
            and issubclass(owner, datetime.date)
            and value.__name__ == name
        ):
            return clock["datetime_method"](owner, name)
        return value

    # -- getattr / hasattr with a literal name (see hx_check)

    def bot_getattr(obj, name, *default):
        if name in P.GUARDED_ATTRS or name in P.CLOCK_ATTRS:
            guard = format_guard if name in P.GUARDED_ATTRS else clock_guard
            try:
                return guard(obj, name)
            except AttributeError:
                if default:
                    return default[0]
                raise
        return getattr(obj, name, *default)

    def bot_hasattr(obj, name):
        return hasattr(obj, name)

    # -- assembled

    import builtins

    out = {}
    for n in _SAFE_BUILTINS:
        if hasattr(builtins, n):
            out[n] = getattr(builtins, n)
    for n, v in vars(builtins).items():
        if isinstance(v, _real_type) and issubclass(v, BaseException) and not n.startswith("_"):
            out[n] = v
    out["__import__"] = bot_import
    out["type"] = bot_type

    import hx_check

    helpers = {
        hx_check.FORMAT_HELPER: format_guard,
        hx_check.CLOCK_HELPER: clock_guard,
        hx_check.SCRUB_HELPER: scrub_arguments,
        hx_check.GETATTR_HELPER: bot_getattr,
        hx_check.HASATTR_HELPER: bot_hasattr,
    }
    return {
        "builtins": out,
        "helpers": helpers,
        "facade": facade,
        "is_facade_miss": is_facade_miss,
    }, bind_hook


METACLASS_REFUSED = (
    "a class deriving from type (a metaclass) is not available to bots "
    "(a metaclass builds classes from a plain dict)"
)
