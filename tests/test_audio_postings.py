"""The landmark postings index: lookups, the append buffer and its merge, deletes, tenants."""

from __future__ import annotations

import numpy as np

from medialayer.index.postings import PostingsIndex


def postings(key: int, n: int = 50) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(key)
    return rng.integers(0, 1 << 22, n).astype(np.uint32), np.arange(n) * 3 + key


def found(index: PostingsIndex, hashes: np.ndarray, tenant: int | None = None) -> set[int]:
    return set(index.lookup(hashes, tenant).keys.tolist())


def test_lookup_returns_each_posting_with_its_time_and_query_position() -> None:
    index = PostingsIndex()
    hashes, times = postings(7)
    index.add(7, hashes, times)
    hits = index.lookup(hashes[[5, 2]])
    assert sorted(zip(hits.query.tolist(), hits.times.tolist(), strict=True)) == [
        (0, int(times[5])), (1, int(times[2]))]
    assert found(index, np.array([1 << 23], np.uint32)) == set()


def test_buffered_and_merged_postings_are_found_alike() -> None:
    index = PostingsIndex()
    for key in range(5):
        index.add(key, *postings(key))
    index.install(index.merged())
    index.add(9, *postings(9))
    assert not index.ready()
    index.prepare()
    assert index.ready()
    assert found(index, postings(3)[0]) == {3}
    assert found(index, postings(9)[0]) == {9}
    assert index.postings() == 300 and len(index) == 6


def test_a_merge_computed_before_an_add_keeps_the_later_add() -> None:
    index = PostingsIndex()
    index.add(1, *postings(1))
    plan = index.merged()  # computed from a snapshot (outside the lock, in the service)
    index.add(2, *postings(2))
    index.install(plan)
    assert found(index, postings(1)[0]) == {1}
    assert found(index, postings(2)[0]) == {2}


def test_deleted_keys_vanish_at_once_and_from_the_arrays_at_the_merge() -> None:
    index = PostingsIndex()
    index.add(1, *postings(1))
    index.add(2, *postings(2))
    index.install(index.merged())
    assert index.remove(1) and not index.remove(1)
    assert found(index, postings(1)[0]) == set()
    index.install(index.merged())
    assert index.postings() == 50 and 1 not in index and 2 in index


def test_re_adding_a_key_replaces_its_postings() -> None:
    index = PostingsIndex()
    index.add(1, *postings(1))
    index.add(1, *postings(11))
    assert found(index, postings(1)[0]) == set()
    assert found(index, postings(11)[0]) == {1}
    assert index.postings() == 50


def test_a_tenant_filter_sees_only_that_tenants_keys() -> None:
    index = PostingsIndex()
    shared = postings(1)[0]
    index.add(1, shared, np.arange(50), tenant=1)
    index.add(2, shared, np.arange(50), tenant=2)
    assert found(index, shared, tenant=1) == {1}
    assert found(index, shared, tenant=2) == {2}
    assert found(index, shared) == {1, 2}


def test_bulk_load_matches_item_by_item_adds() -> None:
    bulk, one_by_one = PostingsIndex(), PostingsIndex()
    keys, hashes, times = [], [], []
    for key in range(4):
        h, t = postings(key)
        one_by_one.add(key, h, t, tenant=key % 2)
        keys.append(np.full(len(h), key))
        hashes.append(h)
        times.append(t)
    k = np.concatenate(keys)
    bulk.add_many(k, np.concatenate(hashes), np.concatenate(times), tenants=k % 2)
    query = np.concatenate(hashes)[::7]
    for tenant in (None, 0, 1):
        a, b = bulk.lookup(query, tenant), one_by_one.lookup(query, tenant)
        assert sorted(zip(a.query.tolist(), a.keys.tolist(), a.times.tolist(), strict=True)) \
            == sorted(zip(b.query.tolist(), b.keys.tolist(), b.times.tolist(), strict=True))


def test_a_deleted_key_bulk_loaded_again_is_found_with_its_new_postings() -> None:
    index = PostingsIndex()
    index.add(1, *postings(1))
    index.remove(1)
    h, t = postings(11)
    index.add_many(np.full(len(h), 1), h, t)
    assert found(index, postings(1)[0]) == set()
    assert found(index, h) == {1}


def test_counts_say_what_a_lookup_costs_and_a_lookup_may_keep_some_keys_only() -> None:
    index = PostingsIndex()
    shared = np.array([11, 12], np.uint32)
    for key in range(4):
        index.add(key, shared, np.array([key, key + 100]))
    index.install(index.merged())
    index.add(9, shared[:1], np.array([7]))  # buffered: counted too
    assert index.counts(np.array([11, 12, 13], np.uint32)).tolist() == [5, 4, 0]
    hits = index.lookup(shared, keys=np.array([2, 9], np.int32))
    assert sorted(zip(hits.keys.tolist(), hits.query.tolist(), hits.times.tolist(),
                      strict=True)) == [(2, 0, 2), (2, 1, 102), (9, 0, 7)]
