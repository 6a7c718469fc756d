"""The PersistenceGuardian: an AST audit of a method's source.  Pure; no I/O.

It enforces the Persistence Covenant: a method that changes its object's state
(assignment to ``self.x`` or ``self.x[k]``, ``setattr``/``delattr`` on self,
or in-place mutation of a slot's value, directly or through a local alias)
must end by setting ``self._p_changed = True``, and every ``return`` that can
follow such a change must come right after that line.

It also refuses the obviously dangerous: imports outside a small allowlist of
pure modules (and their private submodules); ``eval``, ``exec``, ``compile``,
``open``, ``__import__`` and their kind; attribute access to private, dunder or
``_p_`` names (the covenant line and reads of ``__name__``, ``__qualname__`` and
``__doc__`` excepted), to the attributes the sandbox blocks (frames, code,
``format_map``, ``AttributeError.obj``, ``register``, ...) and to the module names it
hides (``string.Formatter``, ``operator.attrgetter``, ``collections.namedtuple``,
``functools.update_wrapper``, ...), by name or through ``getattr`` with a constant;
``global``, class statements, ``type()`` with other than one argument or of a
``type()`` (a metaclass), and format strings that reach into attributes.  Source
that passes must also compile under the sandbox's RestrictedPython policy
(``batos.restricted``), so a method refused there is refused here, at VALIDATING,
and not at its first call.

What it refuses of the language (the allowed modules, the hidden module names, the
blocked attributes, the forbidden names, the covenant line's shape) comes from
``batos.policy``, the same source the sandbox enforces at run time: the audit may
refuse more than the sandbox, never less.
"""
from __future__ import annotations

import ast
import copy
import dataclasses
import re

from batos.policy import (
    ALLOWED_MODULES,
    BLOCKED_ATTRS,
    FORBIDDEN_NAMES,
    HIDDEN_ATTRS,
    HIDDEN_NAMES,
    READABLE_DUNDERS,
    is_covenant,
    module_allowed,
)
from batos.restricted import compile_source

# attributes that lead from a value to frames, code or globals (no underscore needed):
# exactly those the sandbox blocks at run time
FORBIDDEN_ATTRS = BLOCKED_ATTRS

# calls that mutate their receiver in place
MUTATORS = frozenset({
    "append", "extend", "insert", "remove", "pop", "clear", "update", "setdefault", "add",
    "discard", "sort", "reverse", "popitem", "difference_update", "intersection_update",
    "symmetric_difference_update", "appendleft", "extendleft", "popleft", "rotate",
    "__setitem__", "__delitem__",
})

ATTR_FUNCS = frozenset({"getattr", "setattr", "delattr", "hasattr"})
_FORMAT_REACH = re.compile(r"\{[^{}:!]*[.\[][^{}]*\}")   # '{0.x}', '{a[k]}'; not '{:.2f}'



@dataclasses.dataclass
class AuditReport:
    ok: bool
    findings: list[str]
    mutates: bool = False
    signature: str = ""
    doc: str = ""
    params: list[str] = dataclasses.field(default_factory=list)   # positional names after self
    kwonly: list[str] = dataclasses.field(default_factory=list)
    varargs: bool = False
    varkw: bool = False

    def accepts(self, n_args: int, kw_names) -> str | None:
        """Why a call with ``n_args`` positionals and ``kw_names`` would not bind, or None."""
        if n_args > len(self.params) and not self.varargs:
            return (f"the method takes {len(self.params)} argument(s) after self "
                    f"but is called with {n_args}")
        known = set(self.params[n_args:]) | set(self.kwonly)
        extra = [k for k in kw_names if k not in known]
        if extra and not self.varkw:
            return f"the method has no parameter(s) named {', '.join(extra)}"
        return None


def _hidden(attr: str) -> str:
    """'string.Formatter' for 'Formatter': the hidden names an attribute name stands for."""
    return " and ".join(sorted(n for n in HIDDEN_NAMES if n.rpartition(".")[2] == attr))


def _is_self(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id == "self"


def _root_name(node: ast.AST) -> ast.Name | None:
    """The Name at the root of a chain like ``a.b[c].d``."""
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Starred)):
        node = node.value
    return node if isinstance(node, ast.Name) else None


class _Auditor(ast.NodeVisitor):
    def __init__(self, func: ast.FunctionDef):
        self.func = func
        self.findings: list[str] = []
        self.mutation_lines: list[int] = []
        self.aliases: set[str] = set()      # local names bound to a slot's value
        self.covenant_nodes: set[int] = set()
        self.docstrings: set[int] = set()
        for n in ast.walk(func):
            if isinstance(n, ast.FunctionDef) and n.body and isinstance(n.body[0], ast.Expr) \
                    and isinstance(n.body[0].value, ast.Constant):
                self.docstrings.add(id(n.body[0].value))

    def refuse(self, node: ast.AST, text: str) -> None:
        self.findings.append(f"line {getattr(node, 'lineno', '?')}: {text}")

    def _slot_rooted(self, node: ast.AST) -> bool:
        root = _root_name(node)
        return root is not None and (root.id == "self" and node is not root
                                     or root.id in self.aliases)

    def _target_mutates(self, target: ast.AST) -> bool:
        if isinstance(target, (ast.Tuple, ast.List)):
            return any(self._target_mutates(t) for t in target.elts)
        if isinstance(target, ast.Starred):
            return self._target_mutates(target.value)
        if isinstance(target, (ast.Attribute, ast.Subscript)):
            return self._slot_rooted(target)
        return False

    # -- collection passes ------------------------------------------------------
    def collect_aliases(self) -> None:
        """Names assigned from ``self.<attr>...``: mutating them mutates a slot."""
        changed = True
        while changed:
            changed = False
            for node in ast.walk(self.func):
                targets, value = [], None
                if isinstance(node, ast.Assign):
                    targets, value = node.targets, node.value
                elif isinstance(node, (ast.AnnAssign, ast.NamedExpr)) and node.value is not None:
                    targets, value = [node.target], node.value
                elif isinstance(node, (ast.For, ast.comprehension)):
                    targets, value = [node.target], node.iter
                elif isinstance(node, ast.withitem) and node.optional_vars is not None:
                    targets, value = [node.optional_vars], node.context_expr
                if value is None or not self._slot_rooted(value):
                    continue
                for t in targets:
                    for n in ast.walk(t):
                        if isinstance(n, ast.Name) and n.id != "self" and n.id not in self.aliases:
                            self.aliases.add(n.id)
                            changed = True

    # -- visitors ---------------------------------------------------------------
    def visit_Assign(self, node: ast.Assign) -> None:
        if is_covenant(node):
            self.covenant_nodes.add(id(node.targets[0]))
        elif any(self._target_mutates(t) for t in node.targets):
            self.mutation_lines.append(node.lineno)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if self._target_mutates(node.target):
            self.mutation_lines.append(node.lineno)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None and self._target_mutates(node.target):
            self.mutation_lines.append(node.lineno)
        self.generic_visit(node)

    def visit_Delete(self, node: ast.Delete) -> None:
        if any(self._target_mutates(t) for t in node.targets):
            self.mutation_lines.append(node.lineno)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        f = node.func
        if isinstance(f, ast.Attribute) and f.attr in MUTATORS and self._slot_rooted(f.value):
            self.mutation_lines.append(node.lineno)
        if isinstance(f, ast.Name) and f.id in ATTR_FUNCS:
            name = node.args[1] if len(node.args) > 1 else None
            if not (isinstance(name, ast.Constant) and isinstance(name.value, str)):
                self.refuse(node, f"{f.id}() needs a constant attribute name")
            elif name.value in READABLE_DUNDERS and f.id in ("getattr", "hasattr"):
                pass
            elif name.value.startswith("_"):
                self.refuse(node, f"{f.id}() may not reach the private attribute {name.value!r}")
            elif name.value in FORBIDDEN_ATTRS or name.value in HIDDEN_ATTRS:
                self.refuse(node, f"{f.id}() may not reach the attribute {name.value!r}")
            if f.id in ("setattr", "delattr") and node.args and (
                    _is_self(node.args[0]) or self._slot_rooted(node.args[0])
                    or (isinstance(node.args[0], ast.Name) and node.args[0].id in self.aliases)):
                self.mutation_lines.append(node.lineno)
        if isinstance(f, ast.Name) and f.id == "type":
            if len(node.args) != 1 or node.keywords or isinstance(node.args[0], ast.Starred):
                self.refuse(node, "type() takes exactly one argument in a method "
                                  "(three would create a class)")
            elif isinstance(node.args[0], ast.Call) and isinstance(node.args[0].func, ast.Name) \
                    and node.args[0].func.id == "type":
                self.refuse(node, "type(type(...)) is a metaclass, which creates classes")
        if isinstance(f, ast.Attribute) and f.attr == "format":   # format_map, vformat: blocked
            if not (isinstance(f.value, ast.Constant) and isinstance(f.value.value, str)):
                self.refuse(node, f".{f.attr}() is allowed only on a literal string")
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr in FORBIDDEN_ATTRS:
            self.refuse(node, f"access to the attribute '{node.attr}' is not allowed")
        elif node.attr in HIDDEN_ATTRS:
            self.refuse(node, f"access to the attribute '{node.attr}' is not allowed "
                              f"({_hidden(node.attr)} is held back from methods)")
        if node.attr in READABLE_DUNDERS:
            if not isinstance(node.ctx, ast.Load):
                self.refuse(node, f"'{node.attr}' may be read in a method, not set or deleted")
        elif node.attr.startswith("_") and id(node) not in self.covenant_nodes:
            if node.attr.startswith("_p_"):
                self.refuse(node, f"'{node.attr}' is persistence machinery; the only use allowed "
                                  "is the covenant line 'self._p_changed = True'")
            else:
                self.refuse(node, f"access to the private or dunder attribute '{node.attr}'")
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in FORBIDDEN_NAMES:
            self.refuse(node, f"'{node.id}' is not allowed in a method")
        elif node.id.startswith("__"):
            self.refuse(node, f"the dunder name '{node.id}' is not allowed")
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._check_module(node, alias.name)
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            self.refuse(node, "relative imports are not allowed")
        else:
            self._check_module(node, node.module or "")
        for alias in node.names:
            if alias.name == "*" or alias.name.startswith("_"):
                self.refuse(node, f"'from {node.module} import {alias.name}' is not allowed")
            elif f"{node.module}.{alias.name}" in HIDDEN_NAMES or alias.name in HIDDEN_ATTRS:
                self.refuse(node, f"'from {node.module} import {alias.name}' is not allowed "
                                  f"({_hidden(alias.name)} is held back from methods)")
        self.generic_visit(node)

    def _check_module(self, node: ast.AST, module: str) -> None:
        if module_allowed(module):
            return
        if module.split(".")[0] in ALLOWED_MODULES:
            self.refuse(node, f"import of '{module}' is not allowed (a private submodule)")
        else:
            self.refuse(node, f"import of '{module}' is not allowed "
                              f"(allowed: {', '.join(sorted(ALLOWED_MODULES))})")

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        caught = [] if node.type is None else (
            node.type.elts if isinstance(node.type, ast.Tuple) else [node.type])
        if node.type is None:
            self.refuse(node, "a bare 'except:' is not allowed; catch Exception or narrower")
        for c in caught:
            if isinstance(c, ast.Name) and c.id in ("BaseException", "SystemExit",
                                                     "KeyboardInterrupt", "GeneratorExit"):
                self.refuse(node, f"catching {c.id} is not allowed; catch Exception or narrower")
        self.generic_visit(node)

    def visit_Global(self, node: ast.Global) -> None:
        self.refuse(node, "'global' is not allowed in a method")

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.refuse(node, "class statements are not allowed in a method")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and id(node) not in self.docstrings \
                and _FORMAT_REACH.search(node.value):
            self.refuse(node, "format fields may not reach into attributes or items "
                              "(like '{0.attr}' or '{0[key]}')")

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        self.generic_visit(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self.refuse(node, "async functions are not allowed")
        self.generic_visit(node)

    def visit_Await(self, node: ast.Await) -> None:
        self.refuse(node, "await is not allowed")
        self.generic_visit(node)


def _check_returns(func: ast.FunctionDef, first_mutation: int, findings: list[str]) -> None:
    """Every return after a mutation must come right after the covenant line.

    The body's own last statement is judged by the end-of-method rule instead.
    """
    final = func.body[-1]

    def walk_block(stmts: list[ast.stmt]) -> None:
        for i, stmt in enumerate(stmts):
            if isinstance(stmt, ast.Return) and stmt.lineno > first_mutation and stmt is not final:
                if not (i > 0 and is_covenant(stmts[i - 1])):
                    findings.append(
                        f"line {stmt.lineno}: Persistence Covenant: this return can follow a state "
                        "change; put 'self._p_changed = True' right before it")
            for field in ("body", "orelse", "finalbody", "handlers"):
                block = getattr(stmt, field, None)
                if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
                    walk_block(block)
                elif isinstance(block, list):
                    for h in block:
                        if isinstance(h, ast.ExceptHandler):
                            walk_block(h.body)
            if isinstance(stmt, ast.Match):
                for case in stmt.cases:
                    walk_block(case.body)

    walk_block(func.body)


def _signature(func: ast.FunctionDef) -> str:
    """``name(a, b=1, *rest)``: the parameters a caller passes (self left out)."""
    a = copy.deepcopy(func.args)
    if a.posonlyargs and a.posonlyargs[0].arg == "self":
        a.posonlyargs.pop(0)
    elif a.args and a.args[0].arg == "self":
        a.args.pop(0)
    for arg in a.posonlyargs + a.args + a.kwonlyargs + [a.vararg, a.kwarg]:
        if arg is not None:
            arg.annotation = None
    return f"{func.name}({ast.unparse(a)})"


def audit(source: str, selector: str | None = None, *, max_bytes: int = 20_000) -> AuditReport:
    """Audit one method's source; ``ok`` is True only when there are no findings."""
    if not isinstance(source, str) or not source.strip():
        return AuditReport(False, ["the source is empty"])
    if len(source.encode("utf-8", "replace")) > max_bytes:
        return AuditReport(False, [f"the source is larger than {max_bytes} bytes"])
    try:
        tree = ast.parse(source, mode="exec")
    except SyntaxError as exc:
        return AuditReport(False, [f"line {exc.lineno}: syntax error: {exc.msg}"])
    except (ValueError, MemoryError, RecursionError) as exc:
        return AuditReport(False, [f"the source cannot be parsed: {exc}"])

    findings: list[str] = []
    funcs = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    others = [n for n in tree.body if not isinstance(n, (ast.FunctionDef, ast.Import, ast.ImportFrom))
              and not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)
                       and isinstance(n.value.value, str))]
    if len(funcs) != 1:
        return AuditReport(False, [f"the source must define exactly one function; found {len(funcs)}"])
    for n in others:
        findings.append(f"line {n.lineno}: only imports and the function may stand at the top level")
    func = funcs[0]
    if selector is not None and func.name != selector:
        findings.append(f"the function is named '{func.name}' but the selector is '{selector}'")
    if func.name.startswith("_"):
        findings.append(f"the method name '{func.name}' is private")
    if func.decorator_list:
        findings.append(f"line {func.lineno}: decorators are not allowed")
    a = func.args
    positional = [p.arg for p in a.posonlyargs + a.args]
    if not positional or positional[0] != "self":
        findings.append("the method's first parameter must be 'self'")
    for default in a.defaults + [d for d in a.kw_defaults if d is not None]:
        if not isinstance(default, (ast.Constant, ast.UnaryOp, ast.Tuple)):
            findings.append(f"line {default.lineno}: parameter defaults must be constants")

    auditor = _Auditor(func)
    auditor.collect_aliases()
    for node in tree.body:
        auditor.visit(node)
    findings.extend(auditor.findings)

    mutates = bool(auditor.mutation_lines)
    if mutates:
        body = func.body
        last = body[-1]
        if isinstance(last, ast.Return):
            ends_ok = len(body) > 1 and is_covenant(body[-2])
        else:
            ends_ok = is_covenant(last)
        if not ends_ok:
            findings.append(
                f"Persistence Covenant: the method changes its object's state (line "
                f"{min(auditor.mutation_lines)}) but does not end with 'self._p_changed = True'")
        _check_returns(func, min(auditor.mutation_lines), findings)

    if not findings:
        findings.extend(compile_source(source, func.name)[1])
    doc = ast.get_docstring(func) or ""
    return AuditReport(
        ok=not findings, findings=findings, mutates=mutates, signature=_signature(func),
        doc=doc.strip(), params=positional[1:], kwonly=[p.arg for p in a.kwonlyargs],
        varargs=a.vararg is not None, varkw=a.kwarg is not None)
