"""The package's shape, checked by parsing it: imports point down, no cycles, no private imports.

Parts (``../shared/STYLE.md``): core <- methods, metrics, lfi <- evaluation <- cli. Imports are read
from the source with :mod:`ast`, at module level and inside functions alike (imports under
``if TYPE_CHECKING:`` never run and are left out), so a late import cannot hide a cycle.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "xcam"

#: part of each top-level module or subpackage of xcam, and the parts' order (imports point down)
CORE = {"__init__", "errors", "_checks", "outputs", "layers", "capture", "autolayer", "targets",
        "explanation", "registry", "postprocess", "viz", "embeddings", "_layout"}
MIDDLE = {"methods", "metrics", "lfi"}
EVALUATION = {"compare", "data", "report", "models", "evaluation"}
RANK = {**{m: 0 for m in CORE}, **{m: 1 for m in MIDDLE}, **{m: 2 for m in EVALUATION}, "cli": 3,
        "__main__": 3}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from (n for branch in node.orelse for n in _imports_in(branch))
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        yield from _imports(node)


def _imports_in(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
    yield from _imports(node)


def _target(name: str) -> str | None:
    """The xcam module that ``name`` (a module or a module.attribute) refers to."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def edges() -> dict[str, set[tuple[str, list[str]]]]:
    """Module -> {(imported module, names imported from it)} for every import inside xcam."""
    graph: dict[str, set[tuple[str, list[str]]]] = {}
    for mod, path in MODULES.items():
        is_pkg = path.name == "__init__.py"
        package = mod if is_pkg else mod.rpartition(".")[0]
        out: set[tuple[str, list[str]]] = set()
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("xcam"):
                        target = _target(alias.name)
                        if target:
                            out.add((target, ()))  # type: ignore[arg-type]
                continue
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if not source.startswith("xcam"):
                continue
            for alias in node.names:
                full = f"{source}.{alias.name}"
                target = full if full in MODULES else _target(source)
                if target:
                    names = () if full in MODULES else (alias.name,)
                    out.add((target, names))  # type: ignore[arg-type]
        graph[mod] = {(t, n) for t, n in out if t != mod}
    return graph


def part(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_module_belongs_to_a_part():
    unknown = sorted({part(m) for m in MODULES} - set(RANK))
    assert not unknown, f"modules outside the layout of STYLE.md: {unknown}"


def test_imports_point_down():
    upward = []
    for mod, targets in edges().items():
        for target, _ in targets:
            a, b = part(mod), part(target)
            if a == b or a == "__init__" or b == "__init__" and target == "xcam":
                continue
            if RANK[b] > RANK[a] or (RANK[a] == RANK[b] == 1):
                upward.append(f"{mod} -> {target}")
    assert not upward, "imports that point up (or sideways between methods, metrics, lfi):\n" + \
        "\n".join(upward)


def test_no_import_cycle():
    graph = {m: {t for t, _ in ts if t != "xcam"} for m, ts in edges().items()}
    # a package's __init__ may import its own submodules; a submodule importing its package's
    # __init__ back is then a cycle, and is reported like any other
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for mod in sorted(graph):
        if mod not in state:
            visit(mod)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_private_name_is_imported_across_modules():
    crossings = [f"{mod} imports {target}.{name}"
                 for mod, targets in edges().items() for target, names in targets
                 for name in names if name.startswith("_") and not name.startswith("__")]
    assert not crossings, "\n".join(crossings)


@pytest.mark.parametrize("module, forbidden", [
    ("xcam.metrics", ("xcam.methods", "xcam.lfi")),
    ("xcam.methods", ("xcam.metrics", "xcam.lfi.train", "xcam.compare")),
    ("xcam", ("xcam.methods", "xcam.metrics", "xcam.lfi", "xcam.compare")),
])
def test_importing_a_part_loads_nothing_above_or_beside_it(module, forbidden):
    code = (f"import sys, {module}\n"
            f"bad = sorted(m for m in sys.modules if m.startswith({forbidden!r}))\n"
            "print('\\n'.join(bad))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "", f"import {module} loads {loaded.stdout.split()}"


def test_the_checker_sees_a_planted_cycle_and_an_upward_import(tmp_path, monkeypatch):
    """The checks above can fail: a fake package with metrics -> compare and a <-> b."""
    global MODULES
    fake = tmp_path / "xcam"
    (fake / "metrics").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "metrics" / "__init__.py").write_text("from ..compare import run\n")
    (fake / "compare.py").write_text("def run():\n    from .report import page\n")
    (fake / "report.py").write_text("from .compare import run as _run\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    saved = MODULES
    MODULES = {module_name(p): p for p in sorted(fake.rglob("*.py"))}
    try:
        with pytest.raises(AssertionError, match="xcam.metrics -> xcam.compare"):
            test_imports_point_down()
        with pytest.raises(AssertionError, match="xcam.compare -> xcam.report -> xcam.compare"):
            test_no_import_cycle()
    finally:
        MODULES = saved
