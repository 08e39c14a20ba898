"""Cluster grouping as a property: groups are exactly the connected components of the edges."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from medialayer.clusters import connected_groups

edges_strategy = st.dictionaries(
    st.tuples(st.integers(0, 30), st.integers(0, 30)).filter(lambda e: e[0] < e[1]),
    st.floats(0.5, 1.0), max_size=40)


def reachable(edges: dict[tuple[int, int], float], start: int) -> set[int]:
    seen, todo = {start}, [start]
    while todo:
        x = todo.pop()
        for a, b in edges:
            for u, v in ((a, b), (b, a)):
                if u == x and v not in seen:
                    seen.add(v)
                    todo.append(v)
    return seen


@given(edges_strategy)
def test_groups_are_the_connected_components(edges: dict[tuple[int, int], float]) -> None:
    groups = connected_groups(edges)
    keys = [k for g in groups for k in g]
    assert len(keys) == len(set(keys))
    assert set(keys) == {k for e in edges for k in e}
    for g in groups:
        assert set(g) == reachable(edges, g[0])
        assert g == sorted(g)
    assert [len(g) for g in groups] == sorted((len(g) for g in groups), reverse=True)


def test_a_copy_of_a_copy_joins_the_original() -> None:
    assert connected_groups({(1, 2): 0.9, (2, 3): 0.85, (7, 8): 0.9}) == [[1, 2, 3], [7, 8]]
