"""Cycles in a dependency graph (containers' depends_on): pure, of any length."""

from __future__ import annotations

from collections import deque


def cycles(graph: dict[str, list[str]]) -> list[tuple[str, ...]]:
    """One shortest cycle per group of names that depend on each other, from its least name.

    Edges to names not in `graph` are ignored (other checks report them). Cost is polynomial:
    a dense graph gets one line per tangle, not one per cycle.
    """
    covered: set[str] = set()
    found: list[tuple[str, ...]] = []
    for start in sorted(graph):
        if start in covered:
            continue
        back = _shortest_path(graph, start, start)
        if back is None:
            continue
        found.append(back)
        reach = _reachable(graph, start)
        covered |= {n for n in reach if start in _reachable(graph, n)}
    return found


def _reachable(graph: dict[str, list[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt in graph and nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _shortest_path(graph: dict[str, list[str]], start: str, goal: str) -> tuple[str, ...] | None:
    """The shortest walk start -> ... -> goal (at least one step), without the final goal."""
    came: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for nxt in sorted(graph.get(node, ())):
            if nxt == goal:
                path = [node]
                while path[-1] != start:
                    path.append(came[path[-1]])
                return tuple(reversed(path))
            if nxt in graph and nxt not in came and nxt != start:
                came[nxt] = node
                queue.append(nxt)
    return None
