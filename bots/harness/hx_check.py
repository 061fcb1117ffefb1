"""The static half of the language layer: parse bot source, refuse what the
policy forbids (naming the line), rewrite `.format` lookups, and read the
manifest without running anything.

Works on the `_ast` node classes directly instead of importing `ast`, whose
imports (enum, contextlib, ...) cost more than the whole check of a typical
bot; this runs on every hook.
"""

import _ast

import hx_policy as P

FORMAT_HELPER = "__mmh_format__"
SCRUB_HELPER = "__mmh_scrub__"
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


def _import_bindings(tree):
    """Names bound by import statements anywhere -> the module they name."""
    bound = {}
    stack = [tree]
    Import, ImportFrom, AST = _ast.Import, _ast.ImportFrom, _ast.AST
    while stack:
        node = stack.pop()
        t = type(node)
        if t is Import:
            for a in node.names:
                if a.asname:
                    bound[a.asname] = a.name
                else:
                    top = a.name.partition(".")[0]
                    bound[top] = top
        elif t is ImportFrom and node.module and not node.level:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                if sub in P.FACADES:
                    bound[a.asname or a.name] = sub
        for field in node._fields:
            v = getattr(node, field, None)
            if type(v) is list:
                stack.extend(x for x in v if isinstance(x, AST))
            elif isinstance(v, AST):
                stack.append(v)
    return bound


def check(tree, network):
    """Refuse `tree` (with the first offending line) or rewrite it in place so
    that it can be compiled: every `X.format` / `X.format_map` read becomes a
    call to the harness's format guard.
    """
    bindings = _import_bindings(tree)
    problems = []

    def refuse(line, message, node=None):
        # Order: by line, then by where the offending expression ends, so
        # `().__class__.__bases__` reports `__class__` first.
        col = getattr(node, "end_col_offset", None) or 0
        problems.append((line or 0, col, message))

    def resolve(expr):
        """The facade module `expr` denotes (`sys`, `email.utils`), or None."""
        t = type(expr)
        if t is _ast.Name:
            return bindings.get(expr.id)
        if t is _ast.Attribute:
            base = resolve(expr.value)
            if base is not None:
                sub = f"{base}.{expr.attr}"
                if sub in P.FACADES:
                    return sub
        return None

    def guard(attr):
        value = attr.value
        if type(value) is _ast.Constant and type(value.value) is str:
            try:
                why = P.format_refused(value.value)
            except ValueError:
                why = None  # malformed: str.format raises at run time
            if why:
                refuse(attr.lineno, why, attr)
        return _format_guard(attr, helpers)

    def check_name(name, line, node=None):
        why = P.name_refused(name)
        if why:
            refuse(line, why, node)

    AST = _ast.AST
    Attribute, Name, Load = _ast.Attribute, _ast.Name, _ast.Load
    helpers = set()  # ids of the guard names this pass inserted
    stack = [(tree, 1)]
    while stack:
        node, line = stack.pop()
        line = getattr(node, "lineno", None) or line
        t = type(node)
        if t is Name:
            if id(node) not in helpers:
                check_name(node.id, line, node)
        elif t is Attribute:
            why = P.attr_refused(node.attr)
            if why:
                refuse(line, why, node)
            else:
                mod = resolve(node.value)
                if (
                    mod is not None
                    and node.attr not in P.FACADES[mod]
                    and node.attr not in P.ALLOWED_UNDERSCORE_ATTRS
                ):
                    refuse(line, f"'{mod}.{node.attr}' is not available to bots", node)
        elif t is _ast.Import:
            for a in node.names:
                why = P.module_refused(a.name, network)
                if why:
                    refuse(line, why)
                if a.asname:
                    check_name(a.asname, line)
        elif t is _ast.ImportFrom:
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
            if node.name not in P.SPECIAL_METHODS:
                check_name(node.name, line)
            elif node.name == "__exit__":
                # __exit__(self, type, value, traceback) receives exceptions
                # too; scrub every parameter (a tuple of them for *args).
                a = node.args
                params = [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs]
                if a.vararg is not None:
                    params.append(a.vararg.arg)
                for p in params:
                    node.body.insert(0, _scrub_call(p, node, helpers))
        elif t is _ast.ClassDef:
            check_name(node.name, line)
        elif t is _ast.arg:
            check_name(node.arg, line)
        elif t is _ast.keyword:
            if node.arg is not None:
                check_name(node.arg, line)
        elif t is _ast.Global or t is _ast.Nonlocal:
            for n in node.names:
                check_name(n, line)
        elif t is _ast.ExceptHandler:
            if node.name:
                check_name(node.name, line)
                node.body.insert(0, _scrub_call(node.name, node, helpers))
        elif t is _ast.MatchAs or t is _ast.MatchStar:
            if node.name:
                check_name(node.name, line)
        elif t is _ast.MatchMapping:
            if node.rest:
                check_name(node.rest, line)
        elif t is _ast.MatchClass:
            # `case C(attr=...)` reads `subject.attr` by name.
            for a in node.kwd_attrs:
                why = P.attr_refused(a)
                if why:
                    refuse(line, why)

        for field in node._fields:
            v = getattr(node, field, None)
            if type(v) is list:
                for i, x in enumerate(v):
                    if isinstance(x, AST):
                        if type(x) is Attribute and type(x.ctx) is Load and x.attr in (
                            "format",
                            "format_map",
                        ):
                            v[i] = x = guard(x)
                        stack.append((x, line))
            elif isinstance(v, AST):
                if type(v) is Attribute and type(v.ctx) is Load and v.attr in (
                    "format",
                    "format_map",
                ):
                    v = guard(v)
                    setattr(node, field, v)
                stack.append((v, line))

    if problems:
        problems.sort(key=lambda p: (p[0], p[1]))
        line, _col, message = problems[0]
        raise Refusal("policy", line or None, message)


def _format_guard(attr, helpers):
    """`X.format` -> `__mmh_format__(X, "format")`, keeping the location.

    The format check of a constant receiver happens here, since the
    `Attribute` node itself leaves the tree.
    """
    loc = {
        "lineno": attr.lineno,
        "col_offset": attr.col_offset,
        "end_lineno": attr.end_lineno,
        "end_col_offset": attr.end_col_offset,
    }
    func = _ast.Name(id=FORMAT_HELPER, ctx=_ast.Load(), **loc)
    helpers.add(id(func))
    name = _ast.Constant(value=attr.attr, **loc)
    return _ast.Call(func=func, args=[attr.value, name], keywords=[], **loc)


def _scrub_call(name, at, helpers):
    """`__mmh_scrub__(name)` as a statement, located at `at`.

    Python fills `AttributeError.obj` with the object whose attribute lookup
    failed, even deep inside library code, so a caught exception could hand a
    bot an object it never held (a real module, say). The scrub clears it.
    """
    loc = {
        "lineno": at.lineno,
        "col_offset": at.col_offset,
        "end_lineno": at.lineno,
        "end_col_offset": at.col_offset,
    }
    func = _ast.Name(id=SCRUB_HELPER, ctx=_ast.Load(), **loc)
    helpers.add(id(func))
    arg = _ast.Name(id=name, ctx=_ast.Load(), **loc)
    return _ast.Expr(value=_ast.Call(func=func, args=[arg], keywords=[], **loc), **loc)


# ---------------------------------------------------------------- manifest


def _literal(node):
    """A tiny `ast.literal_eval` for the manifest (no `ast` import)."""
    t = type(node)
    if t is _ast.Constant:
        return node.value
    if t is _ast.Dict:
        if any(k is None for k in node.keys):
            raise ValueError("'**' in MANIFEST")
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values)}
    if t is _ast.List:
        return [_literal(e) for e in node.elts]
    if t is _ast.Tuple:
        return [_literal(e) for e in node.elts]
    if t is _ast.UnaryOp and type(node.op) is _ast.USub:
        v = _literal(node.operand)
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
