"""Domain errors below, one mapping at the edge: the table in batos/errors.py, and a
package whose imports run one way."""
import ast
from pathlib import Path

import pytest

from batos import errors
from batos.errors import BadRequest, Busy, wire_error

ROOT = Path(__file__).resolve().parent.parent


def test_every_lower_layer_exception_maps_to_its_protocol_type():
    from batos.image import ConflictsExhausted, ObjectNotFound
    from batos.kernel import CycleFailed, CycleQueueFull, InstallRefused, NotAMethod, ShuttingDown
    from batos.knowledge import KnowledgeLoading, KnowledgeUnavailable
    from batos.llm import GenerationError, ModelUnavailable
    from batos.memory import KnowledgeError, NothingToIngest
    from batos.plain import NotPlain
    from batos.sandbox.pool import MethodFailed, MethodTimedOut, SandboxBusy, SandboxClosed, SandboxUnavailable
    from batos.uvm import ChangeRefused
    cases = [
        (ObjectNotFound("no object 'x'"), "UnknownObject"),
        (ConflictsExhausted("gave up"), "Internal"),
        (NotPlain("a set"), "BadRequest"),
        (NothingToIngest("empty"), "BadRequest"),          # more specific than its base:
        (KnowledgeError("broken"), "Internal"),            # the MRO decides
        (KnowledgeUnavailable("off"), "BadRequest"),
        (KnowledgeLoading("loading"), "Busy"),
        (ModelUnavailable("no such adapter"), "BadRequest"),
        (GenerationError("no model"), "Internal"),
        (MethodFailed("m raised ValueError", exception="ValueError"), "MethodError"),
        (ChangeRefused("private slot"), "MethodError"),
        (NotAMethod("a data slot"), "MethodError"),
        (MethodTimedOut("too long"), "Timeout"),
        (InstallRefused(["uses eval"]), "Rejected"),
        (CycleFailed("genesis_obj", "f", {"cycle_id": "c1", "state": "FAILED", "reason": "r"}), "Rejected"),
        (ShuttingDown("stopping"), "Busy"),
        (CycleQueueFull("16 waiting"), "Busy"),
        (SandboxClosed("closed"), "Busy"),
        (SandboxBusy("no worker"), "Busy"),
        (SandboxUnavailable("cannot start"), "Internal"),
    ]
    for exc, wire_type in cases:
        mapped = wire_error(exc)
        assert mapped is not None and mapped.type == wire_type, (exc, mapped)
        assert mapped.message == str(exc)
    assert {t for _, t in cases} <= set(errors.PROTOCOL_ERRORS)
    # what travels beside the error
    assert wire_error(MethodFailed("m", exception="ValueError")).details == {"exception": "ValueError"}
    refused = wire_error(InstallRefused(["uses eval"]))
    assert refused.result == {"state": "FAILED", "findings": ["uses eval"], "examples": []}
    assert refused.details == {"findings": ["uses eval"]}
    failed = wire_error(CycleFailed("g", "f", {"cycle_id": "c1", "reason": "r"}))
    assert failed.details == {"cycle_id": "c1"} and failed.result["cycle_id"] == "c1"


def test_edge_errors_keep_their_type_and_unknown_ones_are_bugs():
    assert wire_error(BadRequest("not msgpack")).type == "BadRequest"
    assert wire_error(Busy("stopping", result={"x": 1})).result == {"x": 1}
    assert wire_error(ZeroDivisionError("x")) is None       # the server answers Internal and logs it
    table_types = {t for _, t in errors.error_table() if t}
    assert table_types <= set(errors.PROTOCOL_ERRORS)


def _module_imports(path: Path, package: str) -> set[str]:
    """The package's modules a file imports, at module level or inside functions (an
    import that runs later is still a dependency); ``TYPE_CHECKING`` blocks excluded."""
    tree = ast.parse(path.read_text())
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
               and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
    found = set()
    for sub in ast.walk(tree):
        if id(sub) in skipped:
            continue
        if isinstance(sub, ast.ImportFrom) and sub.module and sub.level == 0:
            names = [sub.module] + [f"{sub.module}.{a.name}" for a in sub.names]
            found.update(n for n in names if n.split(".")[0] == package)
        elif isinstance(sub, ast.Import):
            found.update(a.name for a in sub.names if a.name.split(".")[0] == package)
    return found


def test_the_package_has_no_import_cycle():
    modules = {}
    for path in (ROOT / "batos").rglob("*.py"):
        rel = path.relative_to(ROOT).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        modules[name] = path
    graph = {}
    for name, path in modules.items():
        graph[name] = {m for m in _module_imports(path, "batos") if m in modules and m != name}
    seen, stack, cycles = set(), [], []

    def visit(node):
        if node in stack:
            cycles.append(stack[stack.index(node):] + [node])
            return
        if node in seen:
            return
        seen.add(node)
        stack.append(node)
        for dep in sorted(graph[node]):
            visit(dep)
        stack.pop()
    for node in sorted(graph):
        visit(node)
    assert not cycles, cycles
    # the request's direction: app -> server -> errors, handlers -> kernel, never back
    assert "batos.server" not in graph["batos.kernel"] and "batos.handlers" not in graph["batos.kernel"]
    assert "batos.kernel" not in graph["batos.server"] and "batos.kernel" not in graph["batos.handlers"]
    assert {"batos.kernel", "batos.server", "batos.handlers"} <= graph["batos.app"]
