"""Keypoint voting index: finds items sharing descriptors, survives merges and removals."""

from __future__ import annotations

import numpy as np
import pytest

from medialayer.index import local
from medialayer.index.local import LocalFeatureIndex

RNG = np.random.default_rng(7)


def descriptors(n: int = 200) -> np.ndarray:
    return RNG.integers(0, 256, (n, 32), dtype=np.uint8)


def flip_bits(d: np.ndarray, fraction: float) -> np.ndarray:
    """The same descriptors with a fraction of bits flipped, as a re-encoded copy would give."""
    bits = np.unpackbits(d, axis=1)
    flips = RNG.random(bits.shape) < fraction
    return np.packbits(bits ^ flips, axis=1)


@pytest.fixture
def index() -> LocalFeatureIndex:
    idx = LocalFeatureIndex()
    for key in range(50):
        idx.add(key, descriptors())
    return idx


def test_a_noisy_copy_votes_for_its_item_first(index: LocalFeatureIndex) -> None:
    target = descriptors()
    index.add(1000, target)
    votes = index.vote(flip_bits(target[:120], 0.08))
    assert votes[0][0] == 1000
    assert votes[0][1] >= 30
    assert all(v.votes < votes[0].votes / 4 for v in votes[1:])


def test_removed_items_stop_voting_at_once(index: LocalFeatureIndex) -> None:
    target = descriptors()
    index.add(1000, target)
    assert index.remove(1000)
    assert not index.remove(1000)
    assert 1000 not in index
    assert all(k != 1000 for k, *_ in index.vote(target))


def test_exclude_skips_the_querys_own_item(index: LocalFeatureIndex) -> None:
    target = descriptors()
    index.add(1000, target)
    index.add(1001, flip_bits(target, 0.05))
    assert index.vote(target, exclude=1000)[0][0] == 1001


def test_results_are_the_same_before_and_after_a_merge(monkeypatch) -> None:
    monkeypatch.setattr(local, "MERGE_AT", 10**9)
    idx = LocalFeatureIndex()
    items = {k: descriptors() for k in range(30)}
    for k, d in items.items():
        idx.add(k, d)
    idx.remove(3)
    query = flip_bits(items[5], 0.06)
    before = plain(idx.vote(query, top=10, min_votes=1))  # everything is in the delta now
    monkeypatch.setattr(local, "MERGE_AT", 0)
    idx._fold()
    assert idx._delta.size == 0 and idx._main.size > 0
    assert idx._main.starts is not None  # the main level is probed by key offsets
    assert plain(idx.vote(query, top=10, min_votes=1)) == before
    assert before[0][0] == 5


def plain(votes: list[local.Vote]) -> list[tuple[int, int, list[list[int]]]]:
    return [(v.key, v.votes, sorted(v.pairs.tolist())) for v in votes]


def test_votes_carry_their_correspondences(index: LocalFeatureIndex) -> None:
    """Query descriptor i is a noisy copy of stored descriptor i: the pairs say so."""
    target = descriptors()
    index.add(1000, target)
    vote = index.vote(flip_bits(target, 0.06))[0]
    assert vote.key == 1000 and vote.pairs.shape == (vote.votes, 2)
    assert np.mean(vote.pairs[:, 0] == vote.pairs[:, 1]) > 0.95


def test_unrelated_items_do_not_reach_the_chance_floor() -> None:
    idx = LocalFeatureIndex()
    for key in range(3000):
        idx.add(key, descriptors(64))
    assert idx.vote(descriptors(), min_votes=1) == []
    assert local.chance_votes(0.375, 100_000) == 8
    assert local.chance_votes(0.001, 10) == 1


def test_only_the_first_256_descriptors_of_an_item_are_indexed() -> None:
    """ORB asked for 256 keypoints now and then returns 257; the item must still be indexed."""
    idx = LocalFeatureIndex()
    many = descriptors(300)
    idx.add(1, many)
    assert idx.vote(many[:256])[0].key == 1
    assert idx.vote(many[256:]) == []


def test_slots_are_compacted_after_many_removals(monkeypatch) -> None:
    monkeypatch.setattr(local, "MERGE_AT", 500)
    idx = LocalFeatureIndex()
    keep = descriptors(20)
    for k in range(3000):
        idx.add(k, descriptors(20) if k != 2999 else keep)
    for k in range(2900):
        idx.remove(k)
    idx._fold()
    assert len(idx) == 100 and len(idx._key_of_slot) == 100
    vote = idx.vote(keep)[0]
    assert vote.key == 2999
    assert (vote.pairs[:, 0] == vote.pairs[:, 1]).all()  # descriptor indexes survive renumbering


def test_replacing_an_items_descriptors(index: LocalFeatureIndex) -> None:
    old, new = descriptors(), descriptors()
    index.add(7, old)
    index.add(7, new)
    assert index.vote(new)[0][0] == 7
    assert all(k != 7 for k, *_ in index.vote(old))
    assert len(index) == 50


def test_interleaved_adds_and_votes_see_every_item(monkeypatch) -> None:
    """Search after every insert (ingest with index=true) across delta and main merges."""
    monkeypatch.setattr(local, "MERGE_AT", 2000)
    idx = LocalFeatureIndex()
    items = {}
    for k in range(60):
        items[k] = descriptors(100)
        idx.add(k, items[k])
        probe = int(RNG.integers(0, k + 1))
        assert idx.vote(flip_bits(items[probe], 0.05))[0][0] == probe
    assert idx._main.size > 0


def test_votes_across_main_and_delta_equal_votes_on_main_alone(monkeypatch) -> None:
    monkeypatch.setattr(local, "MERGE_AT", 0)
    split, merged = LocalFeatureIndex(), LocalFeatureIndex()
    items = {k: descriptors(80) for k in range(40)}
    items[39] = flip_bits(items[3], 0.03)  # a near copy, in the delta
    for k in range(30):
        split.add(k, items[k])
    split._fold()  # the first 30 are in main
    monkeypatch.setattr(local, "MERGE_AT", 10**9)
    for k in range(30, 40):
        split.add(k, items[k])
    split._fold()
    assert split._main.size and split._delta.size
    for k, d in items.items():
        merged.add(k, d)
    monkeypatch.setattr(local, "MERGE_AT", 0)
    merged._fold()
    query = flip_bits(items[3], 0.05)
    assert plain(split.vote(query, top=10, min_votes=1)) == \
        plain(merged.vote(query, top=10, min_votes=1))
    assert {v.key for v in split.vote(query)} == {3, 39}


def test_a_main_level_kept_as_key_offsets_merges_and_compacts_like_a_fresh_build(
        monkeypatch) -> None:
    """The main level keeps where each key's entries start, not the keys: merging a delta into
    it and compacting it must leave the votes a freshly built index of the same items gives."""
    monkeypatch.setattr(local, "MERGE_AT", 500)
    items = {k: descriptors(20) for k in range(3100)}
    idx = LocalFeatureIndex()
    for k in range(3000):
        idx.add(k, items[k])
    idx._fold()
    assert idx._main.keys is None and idx._main.starts is not None
    for k in range(2000):
        idx.remove(k)
    for k in range(3000, 3100):  # a delta past MERGE_AT: merged into main, then compacted
        idx.add(k, items[k])
    idx._fold()
    assert len(idx._key_of_slot) == len(idx) == 1100  # the dead slots are gone
    assert idx._main.keys is None and (idx._main.starts[:, -1] == idx._main.size).all()
    fresh = LocalFeatureIndex()
    for k in range(2000, 3100):
        fresh.add(k, items[k])
    fresh._fold()
    for k in (2000, 2500, 2999, 3000, 3099):
        query = flip_bits(items[k], 0.05)
        assert plain(idx.vote(query, top=10, min_votes=1)) == \
            plain(fresh.vote(query, top=10, min_votes=1))
        assert idx.vote(query)[0].key == k
    assert idx.vote(items[5]) == []  # removed before the merge, gone after it


def test_a_bulk_load_built_straight_into_key_starts_equals_the_two_step_build() -> None:
    items = [descriptors(50) for _ in range(40)]
    slots = RNG.permutation(2000).astype(np.uint32)

    def pending() -> local._Pending:
        out = local._Pending(capacity=64)  # grown several times on the way
        for i, d in enumerate(items):
            out.add(local.table_keys(d), slots[i * 50:(i + 1) * 50])
        return out

    taken = pending()
    direct = local._Tables.build(taken, with_starts=True)
    assert all(keys.size == 0 for keys in taken.keys)  # each table's keys let go as it went
    two_step = local._Tables.build(pending()).with_starts()
    assert direct.keys is None and two_step.keys is None
    assert np.array_equal(direct.slots, two_step.slots)
    assert np.array_equal(direct.starts, two_step.starts)
    assert np.array_equal(np.sort(direct.slots[0]), np.sort(slots))


def test_a_merge_run_apart_keeps_every_item_voting_throughout(monkeypatch) -> None:
    """While a merge runs off the lock, the frozen delta votes, adds and removals go on, and
    no second merge starts; after the swap, votes are those of one index built at once."""
    monkeypatch.setattr(local, "MERGE_AT", 1000)
    items = {key: descriptors() for key in range(40)}
    idx = LocalFeatureIndex()
    for key in range(30):
        idx.add(key, items[key])
    idx.prepare()
    assert idx.begin_merge() is None  # nothing due
    for key in range(30, 36):
        idx.add(key, items[key])
    merge = idx.begin_merge()
    assert merge is not None and idx.begin_merge() is None  # one at a time
    for key in range(36, 40):
        idx.add(key, items[key])
    idx.remove(31)
    idx.prepare()  # folds, does not merge while one is running
    assert idx.ready()

    def best() -> dict[int, int]:
        found = {}
        for key, d in items.items():
            votes = idx.vote(flip_bits(d[:100], 0.05), top=1)
            found[key] = votes[0].key if votes else -1
        return found

    during = best()
    merge.run()
    assert best() == during  # the merge changed nothing yet
    idx.end_merge(merge)
    after = best()
    assert after == during == {key: (-1 if key == 31 else key) for key in items}
    with pytest.raises(ValueError):
        idx.end_merge(merge)


def test_items_added_while_a_merge_runs_survive_the_compaction_that_ends_it(monkeypatch) -> None:
    """Ending a merge may compact (renumber slots): items added during the merge and not yet
    folded still vote for themselves afterwards. (A soak found this as 500s: their entries kept
    the old slot numbers.)"""
    monkeypatch.setattr(local, "MERGE_AT", 1000)
    items = {key: descriptors() for key in range(60)}
    idx = LocalFeatureIndex()
    for key in range(40):
        idx.add(key, items[key])
    idx.prepare()
    monkeypatch.setattr(local, "COMPACT_MIN_DEAD", 10)
    for key in range(30):  # dead enough to compact when the next merge ends
        idx.remove(key)
    for key in range(40, 50):
        idx.add(key, items[key])
    merge = idx.begin_merge()
    assert merge is not None
    for key in range(50, 60):  # pending, not folded, when the merge ends
        idx.add(key, items[key])
    merge.run()
    idx.end_merge(merge)
    found = {key: [v.key for v in idx.vote(flip_bits(items[key][:100], 0.05), top=1)]
             for key in range(30, 60)}
    assert found == {key: [key] for key in range(30, 60)}

