"""Duplicate clusters: the connected groups of a graph of confident matches."""

from __future__ import annotations


def connected_groups(edges: dict[tuple[int, int], float]) -> list[list[int]]:
    """Groups of keys joined by edges (union-find), largest first, each sorted by key.

    Transitive on purpose: a copy of a copy belongs with the original even when the two
    ends no longer match each other directly; reviewers see the pairs that joined them.
    """
    parent: dict[int, int] = {}

    def root(x: int) -> int:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        parent[root(a)] = root(b)
    groups: dict[int, list[int]] = {}
    for key in parent:
        groups.setdefault(root(key), []).append(key)
    return sorted((sorted(g) for g in groups.values()), key=lambda g: (-len(g), g[0]))
