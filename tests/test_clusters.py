"""Cluster grouping as a property: groups are exactly the connected components of the edges."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from medialayer.clusters import bridges, connected_groups

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


@given(edges_strategy)
def test_bridges_are_exactly_the_edges_whose_removal_splits_a_group(
        edges: dict[tuple[int, int], float]) -> None:
    found = bridges(list(edges))
    for pair in edges:
        rest = {e: s for e, s in edges.items() if e != pair}
        sides = [reachable(rest, end) if any(end in e for e in rest) else {end} for end in pair]
        if sides[0] == sides[1]:
            assert pair not in found
        else:
            assert found[pair] == min(len(sides[0]), len(sides[1])), pair


def test_the_pair_joining_two_groups_has_two_items_on_each_side() -> None:
    chain = bridges([(1, 2), (2, 3), (3, 4)])
    assert chain == {(1, 2): 1, (2, 3): 2, (3, 4): 1}
    assert bridges([(1, 2), (2, 3), (1, 3)]) == {}
