"""Imports flow one way: no cycle in builder/ or activate/, function-level imports included.

import-linter (`lint-imports` in .ci/run, contract in pyproject.toml) checks the layers; this
test reads the source itself, so an import placed inside a function cannot hide a cycle, and
every such import must say in one line which start-up cost it defers.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("builder", "activate")
WHY = "# start-up:"


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str, path: Path, known: dict[str, Path]) -> Iterator[tuple[str, ast.stmt]]:
    """(imported module of this repository, the statement) for every import, at any depth."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            names = [base, *(f"{base}.{a.name}" for a in node.names)]
        else:
            continue
        for name in names:
            target = _resolve(name, known)
            if target and target != module:
                yield target, node


def graph() -> dict[str, set[str]]:
    known = modules()
    return {m: {t for t, _ in imports_of(m, p, known)} for m, p in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle(package: str) -> None:
    edges = {m: {t for t in ts if t.split(".")[0] == package} for m, ts in graph().items()}
    edges = {m: ts for m, ts in edges.items() if m.split(".")[0] == package}
    found = cycles(edges)
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_switcher_never_imports_the_builder() -> None:
    leaks = [f"{m} imports {t}" for m, ts in graph().items() for t in ts
             if m.startswith("activate") and t.startswith("builder")]  # fmt: skip
    assert not leaks, "\n".join(leaks)


def test_function_level_imports_say_which_start_up_cost_they_defer() -> None:
    unexplained = []
    for path in modules().values():
        lines = path.read_text().splitlines()
        tree = ast.parse("\n".join(lines))
        top = {id(n) for n in tree.body}
        guarded = {
            id(inner)
            for node in tree.body
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for inner in ast.walk(node)
        }
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom) or id(node) in top | guarded:
                continue
            # the reason sits on the import or on a comment above its run of imports
            first = node.lineno - 1
            while first > 0 and lines[first - 1].strip().startswith(("#", "from ", "import ")):
                first -= 1
            if not any(WHY in line for line in lines[first : node.end_lineno]):
                unexplained.append(
                    f"{path.relative_to(REPO)}:{node.lineno}: {lines[node.lineno - 1].strip()}"
                )
    assert not unexplained, f"function-level imports without `{WHY} ...`:\n" + "\n".join(
        unexplained
    )
