"""The layering of docs/architecture.md holds for every import of the package, and there is no import cycle."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from helpers import REPO

SRC = REPO / "src" / "lfa"


def _layers() -> dict[str, int]:
    """Module → layer index, from the table of docs/architecture.md (the one place the layers are written)."""
    text = (REPO / "docs" / "architecture.md").read_text()
    table = text.split("## The package in layers", 1)[1].split("\n## ", 1)[0]
    out: dict[str, int] = {}
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| layer")]
    for index, row in enumerate(rows):
        for module in re.findall(r"`(lfa[\w.]*)`", row.split("|")[2]):
            out[module] = index
    return out


def _module(path: Path) -> str:
    parts = ("lfa", *path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Every module of the package → the package modules it imports (at the top or inside a function)."""
    modules = {_module(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "lfa":
                names = [f"{node.module}.{a.name}" for a in node.names]
                found |= {n for n in names if n in modules} or {node.module}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.split(".")[0] == "lfa"}
        graph[name] = {m for m in found if m != name}
    return graph


def test_every_module_has_a_layer():
    layers, modules = _layers(), set(_imports())
    assert modules - set(layers) == set(), "add these to the table in docs/architecture.md"
    assert set(layers) - modules == set(), "the table names modules that do not exist"


def test_no_module_imports_from_a_lower_layer():
    layers = _layers()
    wrong = [f"{m} ({layers[m]}) imports {d} ({layers[d]})" for m, deps in _imports().items() for d in deps
             if layers[d] > layers[m]]
    assert wrong == []


def test_there_is_no_import_cycle():
    graph = _imports()
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return [*path, node, dep]
            if dep not in state and (cycle := visit(dep, [*path, node])):
                return cycle
        state[node] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            assert visit(module, []) is None
