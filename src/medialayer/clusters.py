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


def bridges(edges: list[tuple[int, int]]) -> dict[tuple[int, int], int]:
    """The edges whose removal splits their group, each with the size of the smaller part.

    A bridge with two or more items on each side is the pair that joins two groups:
    reviewers look at it first, as a cluster held together by one pair is one "not a
    duplicate" away from being two. Tarjan's low-link with subtree sizes, iteratively
    (clusters can be long chains, deeper than Python's recursion limit).
    """
    adjacent: dict[int, list[tuple[int, int]]] = {}
    for i, (a, b) in enumerate(edges):
        adjacent.setdefault(a, []).append((b, i))
        adjacent.setdefault(b, []).append((a, i))
    order: dict[int, int] = {}
    low: dict[int, int] = {}
    size: dict[int, int] = {}
    found: dict[tuple[int, int], int] = {}
    for start in adjacent:
        if start in order:
            continue
        below: list[tuple[tuple[int, int], int]] = []  # bridge, items on the far side
        order[start] = low[start] = len(order)
        size[start] = 1
        stack = [(start, -1, iter(adjacent[start]))]
        while stack:
            node, via, neighbours = stack[-1]
            step = next(neighbours, None)
            if step is None:
                stack.pop()
                if stack:
                    parent = stack[-1][0]
                    low[parent] = min(low[parent], low[node])
                    size[parent] += size[node]
                    if low[node] > order[parent]:
                        below.append(((min(parent, node), max(parent, node)), size[node]))
                continue
            other, edge_id = step
            if edge_id == via:
                continue
            if other in order:
                low[node] = min(low[node], order[other])
            else:
                order[other] = low[other] = len(order)
                size[other] = 1
                stack.append((other, edge_id, iter(adjacent[other])))
        found.update({pair: min(far, size[start] - far) for pair, far in below})
    return found
