"""The timed-code index: hits vote for (media, time offset); deletes take effect."""

from __future__ import annotations

import numpy as np

from medialayer.index.timed import TimedCodeIndex


def codes(seed: int, n: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2**63, (n, 2), dtype=np.int64).astype(
        np.uint64)


def test_votes_go_to_the_media_and_offset_the_frames_agree_on() -> None:
    index = TimedCodeIndex()
    times = np.arange(20, dtype=np.float32)
    for key in range(5):
        index.add(key, times, codes(key, 20))
    query = codes(3, 20)[6:14, :1]  # frames 6..13 of media 3, played from time 0
    found = index.vote(list(range(8)), [[int(c[0]) ^ 1] for c in query], radius=2, top=3)
    assert found[0].key == 3 and found[0].votes >= 8
    assert abs(found[0].offset - 6.0) <= 1.0
    assert all(c.votes < 2 for c in found[1:])


def test_remove_and_exclude() -> None:
    index = TimedCodeIndex()
    index.add(1, np.zeros(3, np.float32), codes(1, 3))
    index.add(2, np.zeros(3, np.float32), codes(1, 3))
    query = [[int(c)] for c in codes(1, 3)[:, 0]]
    assert {c.key for c in index.vote([0.0] * 3, query, 0, 5)} == {1, 2}
    assert [c.key for c in index.vote([0.0] * 3, query, 0, 5, exclude=1)] == [2]
    assert index.remove(1) and not index.remove(1)
    assert [c.key for c in index.vote([0.0] * 3, query, 0, 5)] == [2]
    assert len(index) == 1 and index.rows() == 6


def test_a_tenant_filters_the_votes() -> None:
    index = TimedCodeIndex()
    index.add_many([], [], [])  # a start-up load of an empty catalog
    index.add_many([1, 2], [np.zeros(3, np.float32)] * 2, [codes(1, 3)] * 2, tenants=[7, 8])
    query = [[int(c)] for c in codes(1, 3)[:, 0]]
    assert [c.key for c in index.vote([0.0] * 3, query, 0, 5, tenant=8)] == [2]
    assert index.vote([0.0] * 3, query, 0, 5, tenant=9) == []
    assert {c.key for c in index.vote([0.0] * 3, query, 0, 5)} == {1, 2}
