"""The static half of the language layer: parse bot source, refuse what the
policy forbids (naming the line), rewrite what needs a run-time guard, and
read the manifest without running anything.

The rewrites, each to a harness helper bot code cannot name (`__mmh_*__`):
- every `X.format` / `X.format_map` read becomes a call of the format guard,
  and every `X.now` / `X.utcnow` / `X.today` read a call of the clock guard;
- `getattr(obj, "name"[, default])` / `hasattr(obj, "name")` (literal names
  only) become calls of the harness's own getattr/hasattr;
- every bot function and lambda starts by scrubbing its arguments, and every
  `except ... as e` clause by scrubbing `e`: an exception that enters bot
  code carries no library object (`AttributeError.obj`) and no library
  frame.

The walk uses an explicit stack and refuses nesting deeper than
`hx_policy.MAX_NESTING`, so no source can exhaust its recursion or the
compiler's. It works on the `_ast` node classes directly instead of
importing `ast`, whose imports (enum, contextlib, ...) cost more than the
whole check of a typical bot; this runs on every hook.
"""

import _ast

import hx_policy as P

FORMAT_HELPER = "__mmh_format__"
CLOCK_HELPER = "__mmh_clock__"
SCRUB_HELPER = "__mmh_scrub__"
GETATTR_HELPER = "__mmh_getattr__"
HASATTR_HELPER = "__mmh_hasattr__"
HOOKS = ("on_init", "on_join", "on_message")
_ONLY_AST = 0x400  # ast.PyCF_ONLY_AST


class Refusal(Exception):
    """Source the harness will not run: `kind` is "syntax" or "policy"."""

    def __init__(self, kind, line, message):
        super().__init__(message)
        self.kind = kind
        self.line = line
        self.message = message

    def as_error(self):
        return {"kind": self.kind, "line": self.line, "message": self.message}


def parse(source):
    """Parse `source` into an `_ast.Module`, or raise a syntax `Refusal`."""
    try:
        return compile(source, "bot.py", "exec", _ONLY_AST, True)
    except SyntaxError as e:
        msg = e.msg or "invalid syntax"
        return _raise(Refusal("syntax", e.lineno, msg))
    except (ValueError, RecursionError, MemoryError) as e:
        return _raise(Refusal("syntax", None, f"cannot parse the source: {e}"))


def _raise(exc):
    raise exc


def compile_tree(tree):
    """Bytecode for a checked tree. Some errors (`return` outside a function,
    `nonlocal` at module level) only show up here, not in `parse`."""
    try:
        return compile(tree, "bot.py", "exec", 0, True)
    except SyntaxError as e:
        return _raise(Refusal("syntax", e.lineno, e.msg or "invalid syntax"))
    except (ValueError, RecursionError, MemoryError) as e:
        return _raise(Refusal("syntax", None, f"cannot compile the source: {e}"))


def check(tree, network):
    """Refuse `tree` (with the first offending line) or rewrite it in place so
    that it can be compiled (see the module docs for the rewrites).

    One walk over the tree. What depends on the whole source is settled
    after it: which names imports bind (for the facade check of
    `module.attr`), and which names the source binds at all (a name it never
    binds is the builtin of that name in every scope: bot code has no other
    way to change its globals or builtins).
    """
    bindings = {}  # name bound by an import -> the module it names
    bound = set()  # every name the source binds, in any scope
    attribute_reads = []  # (receiver, attr, line, node) to check against `bindings`
    positional_patterns = []  # (builtin name, line, node) to check against `bound`
    problems = []

    def refuse(line, message, node=None):
        # Order: by line, then by where the offending expression ends, so
        # `().__class__.__bases__` reports `__class__` first.
        col = getattr(node, "end_col_offset", None) or 0
        problems.append((line or 0, col, message))

    def resolve(expr):
        """The facade module `expr` denotes (`sys`, `email.utils`), or None."""
        attrs = []
        while type(expr) is _ast.Attribute:
            attrs.append(expr.attr)
            expr = expr.value
        if type(expr) is not _ast.Name:
            return None
        mod = bindings.get(expr.id)
        while mod is not None and attrs:
            sub = f"{mod}.{attrs.pop()}"
            mod = sub if sub in P.FACADES else None
        return mod

    def check_attr(receiver, attr, line, node):
        why = P.attr_refused(attr)
        if why:
            return refuse(line, why, node)
        attribute_reads.append((receiver, attr, line, node))

    def guard(attr):
        if attr.attr in P.CLOCK_ATTRS:
            return _attr_guard(attr, CLOCK_HELPER, helpers)
        value = attr.value
        if type(value) is _ast.Constant and type(value.value) is str:
            try:
                why = P.format_refused(value.value)
            except ValueError:
                why = None  # malformed: str.format raises at run time
            if why:
                refuse(attr.lineno, why, attr)
        return _attr_guard(attr, FORMAT_HELPER, helpers)

    def check_name(name, line, node=None):
        if name in P.NAME_READERS:
            return refuse(line, NAME_READER_USE, node)
        why = P.name_refused(name)
        if why:
            refuse(line, why, node)

    def name_reader_call(node, line):
        """Check and rewrite `getattr(o, "name"[, d])` / `hasattr(o, "name")`."""
        reader = node.func.id
        args = node.args
        arity = (2, 3) if reader == "getattr" else (2,)
        if (
            len(args) not in arity
            or node.keywords
            or any(type(a) is _ast.Starred for a in args)
            or type(args[1]) is not _ast.Constant
            or type(args[1].value) is not str
        ):
            return refuse(line, NAME_READER_USE, node)
        if reader == "getattr":
            check_attr(args[0], args[1].value, line, node)
        else:
            why = P.attr_refused(args[1].value)
            if why:
                refuse(line, why, node)
        helper = GETATTR_HELPER if reader == "getattr" else HASATTR_HELPER
        node.func = _helper_name(helper, node.func, helpers)

    def match_class(node, line):
        cls = node.cls
        if node.patterns:
            if type(cls) is not _ast.Name or cls.id not in P.MATCH_SELF_BUILTINS:
                shown = _dotted(cls)
                refuse(
                    line,
                    f"Class pattern '{shown}(...)' with positional sub-patterns is not "
                    f"allowed: it reads the attributes {shown}.__match_args__ names, out "
                    f"of the checker's sight (use keywords, {shown}(x=...))",
                    node,
                )
            else:
                positional_patterns.append((cls.id, line, node))
        for a in node.kwd_attrs:
            why = P.pattern_attr_refused(a)
            if why:
                refuse(line, why, node)

    def class_def(node, line):
        check_name(node.name, line)
        for k in node.keywords:
            if k.arg == "metaclass":
                refuse(line, "metaclass= is not allowed (a metaclass builds classes from a plain dict)", k)
        for stmt in node.body:
            if (
                type(stmt) is _ast.Assign
                and len(stmt.targets) == 1
                and type(stmt.targets[0]) is _ast.Name
                and stmt.targets[0].id == "__slots__"
            ):
                why = _slots_refused(stmt.value)
                if why:
                    refuse(stmt.lineno, why, stmt)
                allowed_names.add(id(stmt.targets[0]))

    AST = _ast.AST
    Attribute, Name, Load, Call = _ast.Attribute, _ast.Name, _ast.Load, _ast.Call
    helpers = set()  # ids of the helper names this pass inserted
    allowed_names = set()  # ids of `__slots__` targets in class bodies
    deep = False
    stack = [(tree, 1, 0)]
    while stack:
        node, line, depth = stack.pop()
        line = getattr(node, "lineno", None) or line
        if depth > P.MAX_NESTING:
            if not deep:
                deep = True
                refuse(line, f"The source is nested more than {P.MAX_NESTING} levels deep here", node)
            continue
        t = type(node)
        if t is Name:
            if type(node.ctx) is not Load:
                bound.add(node.id)
            if id(node) not in helpers and id(node) not in allowed_names:
                check_name(node.id, line, node)
        elif t is Attribute:
            if id(node) in helpers:
                pass  # `kw.values` in an inserted argument scrub
            elif type(node.ctx) is Load:
                check_attr(node.value, node.attr, line, node)
            else:
                why = P.attr_store_refused(node.attr)
                if why:
                    refuse(line, why, node)
        elif t is _ast.AugAssign:
            target = node.target
            if type(target) is Attribute:
                # `x.attr += y` reads `x.attr` as well as storing it; the
                # read gets no guard, and `y.__radd__` receives what it read.
                check_attr(target.value, target.attr, line, target)
                if target.attr in P.GUARDED_ATTRS:
                    refuse(
                        line,
                        f"Augmented assignment to '.{target.attr}' is not allowed (it "
                        f"would read the unguarded str.{target.attr})",
                        target,
                    )
                elif target.attr in P.CLOCK_ATTRS:
                    refuse(
                        line,
                        f"Augmented assignment to '.{target.attr}' is not allowed (it would "
                        f"read the real clock past the hook's time); write "
                        f"x.{target.attr} = x.{target.attr} + ... instead",
                        target,
                    )
        elif t is Call:
            f = node.func
            if type(f) is Name and f.id in P.NAME_READERS and id(f) not in helpers:
                name_reader_call(node, line)
        elif t is _ast.Import:
            for a in node.names:
                if a.asname:
                    bindings[a.asname] = a.name
                    bound.add(a.asname)
                else:
                    top = a.name.partition(".")[0]
                    bindings[top] = top
                    bound.add(top)
                why = P.module_refused(a.name, network)
                if why:
                    refuse(line, why)
                if a.asname:
                    check_name(a.asname, line)
        elif t is _ast.ImportFrom:
            for a in node.names:
                bound.add(a.asname or a.name)
                sub = f"{node.module}.{a.name}"
                if node.module and not node.level and sub in P.FACADES:
                    bindings[a.asname or a.name] = sub
            if node.level or not node.module:
                refuse(line, "Relative imports are not allowed")
            else:
                why = P.module_refused(node.module, network)
                if why:
                    refuse(line, why)
                else:
                    allowed = P.FACADES[node.module]
                    for a in node.names:
                        if a.name == "*":
                            refuse(line, f"'from {node.module} import *' is not allowed")
                        elif a.name not in allowed:
                            if P.name_refused(a.name):
                                check_name(a.name, line)
                            else:
                                refuse(
                                    line,
                                    f"'{node.module}.{a.name}' is not available to bots",
                                )
                        elif f"{node.module}.{a.name}" in P.FACADES:
                            why = P.module_refused(f"{node.module}.{a.name}", network)
                            if why:
                                refuse(line, why)
                        if a.asname:
                            check_name(a.asname, line)
            for a in node.names:
                if not a.asname and a.name != "*":
                    check_name(a.name, line)
        elif t is _ast.FunctionDef or t is _ast.AsyncFunctionDef:
            bound.add(node.name)
            if node.name not in P.SPECIAL_METHODS:
                check_name(node.name, line)
            scrub = _scrub_arguments(node.args, node, helpers)
            if scrub is not None:
                body = node.body
                at = 1 if body and _is_docstring(body[0]) else 0
                body.insert(at, _ast.Expr(value=scrub, **_loc(node)))
        elif t is _ast.Lambda:
            scrub = _scrub_arguments(node.args, node, helpers)
            if scrub is not None:
                node.body = _ast.BoolOp(op=_ast.Or(), values=[scrub, node.body], **_loc(node))
        elif t is _ast.ClassDef:
            bound.add(node.name)
            class_def(node, line)
        elif t is _ast.arg:
            bound.add(node.arg)
            check_name(node.arg, line)
        elif t is _ast.keyword:
            if node.arg is not None:
                check_name(node.arg, line)
        elif t is _ast.Global or t is _ast.Nonlocal:
            bound.update(node.names)
            for n in node.names:
                check_name(n, line)
        elif t is _ast.ExceptHandler:
            if node.name:
                bound.add(node.name)
                check_name(node.name, line)
                arg = _ast.Name(id=node.name, ctx=_ast.Load(), **_loc(node))
                call = _ast.Call(func=_helper_name(SCRUB_HELPER, node, helpers), args=[arg], keywords=[], **_loc(node))
                node.body.insert(0, _ast.Expr(value=call, **_loc(node)))
        elif t is _ast.MatchAs or t is _ast.MatchStar:
            if node.name:
                bound.add(node.name)
                check_name(node.name, line)
        elif t is _ast.MatchMapping:
            if node.rest:
                bound.add(node.rest)
                check_name(node.rest, line)
        elif t is _ast.MatchClass:
            match_class(node, line)
        elif t in TYPE_PARAMS:
            # `def f[T]()`, `class C[T]` (Python 3.12+) bind T.
            bound.add(node.name)
            check_name(node.name, line, node)

        for field in node._fields:
            v = getattr(node, field, None)
            if type(v) is list:
                for i, x in enumerate(v):
                    if isinstance(x, AST):
                        if _reads_guarded(x):
                            v[i] = x = guard(x)
                        stack.append((x, line, depth + 1))
            elif isinstance(v, AST):
                if _reads_guarded(v):
                    v = guard(v)
                    setattr(node, field, v)
                stack.append((v, line, depth + 1))

    for receiver, attr, line, node in attribute_reads:
        mod = resolve(receiver)
        # A module without a facade was refused at its import already.
        if (
            mod is not None
            and mod in P.FACADES
            and attr not in P.FACADES[mod]
            and attr not in P.ALLOWED_UNDERSCORE_ATTRS
        ):
            refuse(line, f"'{mod}.{attr}' is not available to bots", node)
    for name, line, node in positional_patterns:
        if name in bound:
            refuse(
                line,
                f"Class pattern '{name}(...)' with positional sub-patterns: "
                f"'{name}' is rebound in this source, so it may not be the builtin",
                node,
            )

    if problems:
        problems.sort(key=lambda p: (p[0], p[1]))
        line, _col, message = problems[0]
        raise Refusal("policy", line or None, message)


# The nodes of type parameters (Python 3.12+; none before).
TYPE_PARAMS = tuple(
    getattr(_ast, n) for n in ("TypeVar", "ParamSpec", "TypeVarTuple") if hasattr(_ast, n)
)

NAME_READER_USE = (
    "getattr and hasattr are allowed only as getattr(obj, \"name\"), "
    "getattr(obj, \"name\", default) or hasattr(obj, \"name\"), with a literal name"
)


def _reads_guarded(node):
    return (
        type(node) is _ast.Attribute
        and type(node.ctx) is _ast.Load
        and (node.attr in P.GUARDED_ATTRS or node.attr in P.CLOCK_ATTRS)
    )


def _dotted(expr):
    parts = []
    while type(expr) is _ast.Attribute:
        parts.append(expr.attr)
        expr = expr.value
    parts.append(getattr(expr, "id", "?"))
    return ".".join(reversed(parts))


def _slots_refused(value):
    """Why a class body's `__slots__ = value` is refused, or None: a literal
    string or a tuple/list of them, each an allowed name."""
    items = [value] if type(value) is _ast.Constant else getattr(value, "elts", None)
    if type(value) not in (_ast.Constant, _ast.Tuple, _ast.List) or items is None:
        return "__slots__ must be a literal string or a tuple or list of literal strings"
    for item in items:
        if type(item) is not _ast.Constant or type(item.value) is not str:
            return "__slots__ must be a literal string or a tuple or list of literal strings"
        why = P.name_refused(item.value)
        if why or not item.value.isidentifier():
            return f"__slots__ names an attribute that is not allowed: {item.value!r}"
    return None


def _is_docstring(stmt):
    return (
        type(stmt) is _ast.Expr
        and type(stmt.value) is _ast.Constant
        and type(stmt.value.value) is str
    )


def _loc(at):
    return {
        "lineno": at.lineno,
        "col_offset": at.col_offset,
        "end_lineno": at.lineno,
        "end_col_offset": at.col_offset,
    }


def _helper_name(helper, at, helpers):
    name = _ast.Name(id=helper, ctx=_ast.Load(), **_loc(at))
    helpers.add(id(name))
    return name


def _attr_guard(attr, helper, helpers):
    """`X.format` -> `__mmh_format__(X, "format")` (or the clock guard's
    `__mmh_clock__(X, "now")`), keeping the location."""
    loc = {
        "lineno": attr.lineno,
        "col_offset": attr.col_offset,
        "end_lineno": attr.end_lineno,
        "end_col_offset": attr.end_col_offset,
    }
    func = _ast.Name(id=helper, ctx=_ast.Load(), **loc)
    helpers.add(id(func))
    name = _ast.Constant(value=attr.attr, **loc)
    return _ast.Call(func=func, args=[attr.value, name], keywords=[], **loc)


def _scrub_arguments(args, at, helpers):
    """`__mmh_scrub__(a, b, *rest, *kw.values())` for a function's
    parameters, or None if it has none.

    Library code may hand a bot function an exception: the interpreter
    calls `__exit__` with the one in flight, urllib3 passes its connection
    error to `Retry.increment`. Python fills `AttributeError.obj` with the
    object whose lookup failed, deep inside library code, and a traceback's
    frames hold library globals; the scrub clears both before the body runs.
    """
    loc = _loc(at)
    values = []
    for a in args.posonlyargs + args.args + args.kwonlyargs:
        values.append(_ast.Name(id=a.arg, ctx=_ast.Load(), **loc))
    if args.vararg is not None:
        rest = _ast.Name(id=args.vararg.arg, ctx=_ast.Load(), **loc)
        values.append(_ast.Starred(value=rest, ctx=_ast.Load(), **loc))
    if args.kwarg is not None:
        kw = _ast.Name(id=args.kwarg.arg, ctx=_ast.Load(), **loc)
        values_of = _ast.Attribute(value=kw, attr="values", ctx=_ast.Load(), **loc)
        helpers.add(id(values_of))
        call = _ast.Call(
            func=values_of,
            args=[],
            keywords=[],
            **loc,
        )
        values.append(_ast.Starred(value=call, ctx=_ast.Load(), **loc))
    if not values:
        return None
    return _ast.Call(func=_helper_name(SCRUB_HELPER, at, helpers), args=values, keywords=[], **loc)


# ---------------------------------------------------------------- manifest


def _literal(node, depth=0):
    """A tiny `ast.literal_eval` for the manifest (no `ast` import), bounded
    like the check, which does not run for the runner's OS-layer tests."""
    if depth > P.MAX_NESTING:
        raise ValueError(f"nested more than {P.MAX_NESTING} levels deep")
    t = type(node)
    if t is _ast.Constant:
        return node.value
    if t is _ast.Dict:
        if any(k is None for k in node.keys):
            raise ValueError("'**' in MANIFEST")
        return {
            _literal(k, depth + 1): _literal(v, depth + 1) for k, v in zip(node.keys, node.values)
        }
    if t is _ast.List or t is _ast.Tuple:
        return [_literal(e, depth + 1) for e in node.elts]
    if t is _ast.UnaryOp and type(node.op) is _ast.USub:
        v = _literal(node.operand, depth + 1)
        if type(v) in (int, float):
            return -v
    raise ValueError("not a literal")


def _docstring_line(cls):
    body = cls.body
    if body and type(body[0]) is _ast.Expr and type(body[0].value) is _ast.Constant:
        doc = body[0].value.value
        if type(doc) is str:
            for ln in doc.strip().splitlines():
                if ln.strip():
                    return ln.strip()
    return ""


def read_manifest(tree):
    """The module-level `MANIFEST` literal (a dict, maybe empty)."""
    found = {}
    for stmt in tree.body:
        t = type(stmt)
        if t is _ast.Assign:
            targets = stmt.targets
            value = stmt.value
        elif t is _ast.AnnAssign and stmt.value is not None:
            targets = [stmt.target]
            value = stmt.value
        else:
            continue
        if any(type(x) is _ast.Name and x.id == "MANIFEST" for x in targets):
            try:
                found = _literal(value)
            except (ValueError, TypeError) as e:
                raise Refusal("policy", stmt.lineno, f"MANIFEST must be a literal dict ({e})")
            if type(found) is not dict or any(type(k) is not str for k in found):
                raise Refusal("policy", stmt.lineno, "MANIFEST must be a dict with string keys")
    return found


def select_class(tree, manifest):
    """Pick the bot class among the classes defined in the source itself.

    Candidates are module-level classes with at least one hook (defined in the
    class or inherited from another class of the source). Imported names are
    never candidates: the original picked `typing.Dict`. With several, a base
    class that another candidate extends is set aside; if that still leaves
    several, `MANIFEST['class']` must name one.

    Returns `(class_name, hooks)`.
    """
    classes = {}
    for stmt in tree.body:
        if type(stmt) is _ast.ClassDef:
            classes[stmt.name] = stmt

    def own_methods(c):
        return {
            s.name
            for s in c.body
            if type(s) is _ast.FunctionDef or type(s) is _ast.AsyncFunctionDef
        }

    def ancestors(name, seen):
        c = classes.get(name)
        if c is None or name in seen:
            return
        seen.add(name)
        for b in c.bases:
            if type(b) is _ast.Name and b.id in classes:
                ancestors(b.id, seen)

    def lineage(name):
        seen = set()
        ancestors(name, seen)
        return seen

    def hooks_of(name):
        found = set()
        for n in lineage(name):
            found |= own_methods(classes[n])
        return [h for h in HOOKS if h in found]

    wanted = manifest.get("class")
    if wanted is not None:
        if type(wanted) is not str or wanted not in classes:
            raise Refusal(
                "policy", None, f"MANIFEST['class'] names no class defined in the source: {wanted!r}"
            )
        hooks = hooks_of(wanted)
        if not hooks:
            raise Refusal(
                "policy",
                classes[wanted].lineno,
                f"class {wanted} defines none of on_init, on_join, on_message",
            )
        return wanted, hooks

    candidates = [n for n in classes if hooks_of(n)]
    if not candidates:
        raise Refusal(
            "policy",
            None,
            "no bot class: define a class with on_init, on_join or on_message",
        )
    if len(candidates) > 1:
        bases = set()
        for n in candidates:
            bases |= lineage(n) - {n}
        leaves = [n for n in candidates if n not in bases]
        if len(leaves) == 1:
            candidates = leaves
        else:
            names = ", ".join(leaves or candidates)
            raise Refusal(
                "policy",
                None,
                f"several bot classes ({names}): name one with MANIFEST['class']",
            )
    return candidates[0], hooks_of(candidates[0])


def manifest_of(tree):
    """The manifest the `inspect` hook reports, and the bot class's name."""
    raw = read_manifest(tree)
    class_name, hooks = select_class(tree, raw)
    cls = next(s for s in tree.body if type(s) is _ast.ClassDef and s.name == class_name)
    params = raw.get("params", {})
    if type(params) is not dict:
        raise Refusal("policy", None, "MANIFEST['params'] must be a dict")
    out = {
        "name": raw.get("name", class_name),
        "version": raw.get("version", "0"),
        "summary": raw.get("summary", _docstring_line(cls)),
        "hooks": hooks,
        "params": params,
        "class_name": class_name,
    }
    for key in ("name", "version", "summary"):
        if type(out[key]) is not str:
            raise Refusal("policy", None, f"MANIFEST['{key}'] must be a string")
    return out
