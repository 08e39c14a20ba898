"""Keypoint voting index: finds items sharing descriptors, survives merges and removals."""

from __future__ import annotations

import numpy as np
import pytest

from medialayer.index import local
from medialayer.index.local import LocalFeatureIndex

RNG = np.random.default_rng(7)
EXTENT = 480.0


def descriptors(n: int = 200) -> np.ndarray:
    return RNG.integers(0, 256, (n, 32), dtype=np.uint8)


def points(n: int) -> np.ndarray:
    return (RNG.random((n, 2)) * EXTENT).astype(np.float32)


class Index(LocalFeatureIndex):
    """The index with positions made up for items added without them."""

    def __init__(self) -> None:
        super().__init__(extent=EXTENT)

    def add(self, key: int, descriptors: np.ndarray, points_: np.ndarray | None = None
            ) -> None:
        super().add(key, descriptors, points(len(descriptors)) if points_ is None else points_)


def flip_bits(d: np.ndarray, fraction: float) -> np.ndarray:
    """The same descriptors with a fraction of bits flipped, as a re-encoded copy would give."""
    bits = np.unpackbits(d, axis=1)
    flips = RNG.random(bits.shape) < fraction
    return np.packbits(bits ^ flips, axis=1)


@pytest.fixture
def index() -> Index:
    idx = Index()
    for key in range(50):
        idx.add(key, descriptors())
    return idx


def test_a_noisy_copy_votes_for_its_item_first(index: Index) -> None:
    target = descriptors()
    index.add(1000, target)
    votes = index.vote(flip_bits(target[:120], 0.08))
    assert votes[0][0] == 1000
    assert votes[0][1] >= 30
    assert all(v.votes < votes[0].votes / 4 for v in votes[1:])


def test_removed_items_stop_voting_at_once(index: Index) -> None:
    target = descriptors()
    index.add(1000, target)
    assert index.remove(1000)
    assert not index.remove(1000)
    assert 1000 not in index
    assert all(k != 1000 for k, *_ in index.vote(target))


def test_exclude_skips_the_querys_own_item(index: Index) -> None:
    target = descriptors()
    index.add(1000, target)
    index.add(1001, flip_bits(target, 0.05))
    assert index.vote(target, exclude=1000)[0][0] == 1001


def test_results_are_the_same_before_and_after_a_merge(monkeypatch) -> None:
    monkeypatch.setattr(local, "MERGE_AT", 10**9)
    monkeypatch.setattr(local, "STARTS_FROM", 0)
    idx = Index()
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


def test_votes_carry_their_correspondences_and_stored_positions(index: Index) -> None:
    """Query descriptor i is a noisy copy of stored descriptor i: the pairs say so (stored
    descriptors counted among the indexed ones), and carry where the stored ones are, to
    within half a position step."""
    target, where = descriptors(300), points(300)
    index.add(1000, target, where)
    vote = index.vote(flip_bits(target, 0.06))[0]
    assert vote.key == 1000 and vote.pairs.shape == (vote.votes, 2)
    original = local.spread(300)[vote.pairs[:, 1]]
    assert np.mean(vote.pairs[:, 0] == original) > 0.95
    step = EXTENT / local.POSITION_STEPS
    assert np.abs(vote.points - where[original]).max() <= step / 2 + 1e-3


def test_descriptors_one_key_bit_off_in_every_table_still_vote(index: Index) -> None:
    """A copy's descriptor that misses its stored twin's key in every table by one sampled bit
    is found by the probes of the keys next to its own."""
    target = descriptors()
    index.add(1000, target)
    bits = np.unpackbits(target, axis=1)
    rows = np.arange(len(bits))
    for sampled in local._POSITIONS:  # one sampled bit of each table, a different one per row
        bits[rows, sampled[rows % local.KEY_BITS]] ^= 1
    query = np.packbits(bits, axis=1)
    assert (local.table_keys(query) != local.table_keys(target)).all()
    assert index.vote(query)[0].key == 1000


def test_unrelated_items_do_not_reach_the_chance_floor() -> None:
    idx = Index()
    for key in range(3000):
        idx.add(key, descriptors(64))
    assert idx.vote(descriptors(), min_votes=1) == []
    assert local.chance_votes(0.375, 100_000) == 8
    assert local.chance_votes(0.001, 10) == 1


def test_an_item_indexes_INDEXED_descriptors_spread_through_all_of_its_keypoints() -> None:
    """ORB lists keypoints level by level: the indexed ones come from every part of the list,
    so a copy found only at coarse levels (the list's end) still votes."""
    idx = Index()
    many = descriptors(300)
    idx.add(1, many)
    idx.prepare()
    assert idx._delta.size == local.INDEXED
    chosen = local.spread(300)
    assert len(set(chosen.tolist())) == local.INDEXED and chosen.max() >= 290
    assert idx.vote(many[200:])[0].key == 1
    assert np.array_equal(local.spread(100), np.arange(100))  # a small item indexes all


def test_slots_are_compacted_after_many_removals(monkeypatch) -> None:
    monkeypatch.setattr(local, "MERGE_AT", 500)
    idx = Index()
    keep = descriptors(20)
    for k in range(3000):
        idx.add(k, descriptors(20) if k != 2999 else keep)
    for k in range(2900):
        idx.remove(k)
    idx._fold()
    assert len(idx) == 100 and idx._used == 100
    vote = idx.vote(keep)[0]
    assert vote.key == 2999
    assert (vote.pairs[:, 0] == vote.pairs[:, 1]).all()  # descriptor indexes survive renumbering


def test_replacing_an_items_descriptors(index: Index) -> None:
    old, new = descriptors(), descriptors()
    index.add(7, old)
    index.add(7, new)
    assert index.vote(new)[0][0] == 7
    assert all(k != 7 for k, *_ in index.vote(old))
    assert len(index) == 50


def test_interleaved_adds_and_votes_see_every_item(monkeypatch) -> None:
    """Search after every insert (ingest with index=true) across delta and main merges."""
    monkeypatch.setattr(local, "MERGE_AT", 2000)
    idx = Index()
    items = {}
    for k in range(60):
        items[k] = descriptors(100)
        idx.add(k, items[k])
        probe = int(RNG.integers(0, k + 1))
        assert idx.vote(flip_bits(items[probe], 0.05))[0][0] == probe
    assert idx._main.size > 0


def test_votes_across_main_and_delta_equal_votes_on_main_alone(monkeypatch) -> None:
    monkeypatch.setattr(local, "MERGE_AT", 0)
    split, merged = Index(), Index()
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
    monkeypatch.setattr(local, "STARTS_FROM", 0)
    items = {k: descriptors(20) for k in range(3100)}
    idx = Index()
    for k in range(3000):
        idx.add(k, items[k])
    idx._fold()
    assert idx._main.keys is None and idx._main.starts is not None
    for k in range(2000):
        idx.remove(k)
    for k in range(3000, 3100):  # a delta past MERGE_AT: merged into main, then compacted
        idx.add(k, items[k])
    idx._fold()
    assert idx._used == len(idx) == 1100  # the dead slots are gone
    assert idx._main.keys is None and (idx._main.starts[:, -1] == idx._main.size).all()
    fresh = Index()
    for k in range(2000, 3100):
        fresh.add(k, items[k])
    fresh._fold()
    for k in (2000, 2500, 2999, 3000, 3099):
        query = flip_bits(items[k], 0.05)
        assert plain(idx.vote(query, top=10, min_votes=1)) == \
            plain(fresh.vote(query, top=10, min_votes=1))
        assert idx.vote(query)[0].key == k
    assert idx.vote(items[5]) == []  # removed before the merge, gone after it


def test_a_bulk_load_built_straight_into_key_starts_equals_the_two_step_build(monkeypatch
                                                                              ) -> None:
    monkeypatch.setattr(local, "STARTS_FROM", 0)
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


def prepared(items: dict[int, np.ndarray], keys: range) -> Index:
    """An index holding `keys` of `items`, folded (nothing pending)."""
    idx = Index()
    for key in keys:
        idx.add(key, items[key])
    idx.prepare()
    return idx


def test_a_merge_run_apart_keeps_every_item_voting_throughout(monkeypatch) -> None:
    """While a merge runs off the lock, the frozen delta votes, adds and removals go on, and
    no second merge starts; after the swap, votes are those of one index built at once."""
    monkeypatch.setattr(local, "MERGE_AT", 500)
    items = {key: descriptors() for key in range(40)}
    idx = prepared(items, range(30))
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
    idx = prepared(items, range(40))
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
    found = {key: [v.key for v in idx.vote(flip_bits(items[key], 0.05), top=1)]
             for key in range(30, 60)}
    assert found == {key: [key] for key in range(30, 60)}

def test_positions_follow_their_items_through_replacement_and_compaction(monkeypatch) -> None:
    monkeypatch.setattr(local, "MERGE_AT", 500)
    idx = Index()
    items = {k: (descriptors(int(RNG.integers(8, 300))), None) for k in range(2000)}
    items = {k: (d, points(len(d))) for k, (d, _) in items.items()}
    for k, (d, p) in items.items():
        idx.add(k, d, p)
    for k in range(0, 1800):  # most go: the slots are compacted at the next merge
        idx.remove(k)
        del items[k]
    for k in (1900, 1950):  # replaced: new descriptors and positions
        items[k] = (descriptors(), points(200))
        idx.add(k, *items[k])
    for k in range(2000, 2700):  # past MERGE_AT entries: merged, then compacted
        items[k] = (descriptors(20), points(20))
        idx.add(k, *items[k])
    idx.prepare()
    assert idx._used == len(idx) == len(items)
    step = EXTENT / local.POSITION_STEPS
    for k in (1800, 1900, 1950, 1999, 2000, 2699):
        d, p = items[k]
        vote = idx.vote(d)[0]
        assert vote.key == k
        assert np.abs(vote.points - p[local.spread(len(d))[vote.pairs[:, 1]]]).max() \
            <= step / 2 + 1e-3


def test_the_state_as_flat_arrays_gives_back_the_same_index(monkeypatch) -> None:
    """What a snapshot writes and maps: votes from the arrays equal the original's, and the
    restored index takes adds and removals (into copies of what it was given)."""
    monkeypatch.setattr(local, "MERGE_AT", 300)
    items = {k: descriptors(60) for k in range(100)}
    idx = Index()
    for k, d in items.items():
        idx.add(k, d)
    idx.prepare()  # some in main, the latest in the delta: arrays() folds them
    idx.remove(4)
    arrays = idx.arrays()
    assert idx._delta.size == 0 and set(arrays) == {"entries", "starts", "key_of", "points",
                                                    "slot_of"}
    frozen = {name: a.copy() for name, a in arrays.items()}
    for a in frozen.values():
        a.flags.writeable = False  # as if mapped read-only: nothing may write into them
    for name in ("key_of", "slot_of"):  # the two that changes write to: copy-on-write
        frozen[name] = frozen[name].copy()
    back = local.LocalFeatureIndex.from_arrays(frozen, extent=EXTENT)
    assert len(back) == 99 and 4 not in back and 5 in back
    for k in (0, 4, 50, 99):
        query = flip_bits(items[k], 0.05)
        assert plain(back.vote(query, top=10, min_votes=1)) == \
            plain(idx.vote(query, top=10, min_votes=1))
    back.remove(50)
    back.add(500, items[50], points(60))
    back.add(7, descriptors(60), points(60))
    assert back.vote(items[50])[0].key == 500
    assert back.vote(items[7]) == []


def test_a_small_main_level_keeps_its_keys_and_votes_as_with_starts(monkeypatch) -> None:
    """Below STARTS_FROM entries the main level keeps its keys: the start tables would cost
    more than the keys, a fixed size whatever the catalog's."""
    monkeypatch.setattr(local, "MERGE_AT", 500)
    items = {k: descriptors(50) for k in range(60)}
    indexes = []
    for starts_from in (local.STARTS_FROM, 0):
        monkeypatch.setattr(local, "STARTS_FROM", starts_from)
        idx = Index()
        for k, d in items.items():
            idx.add(k, d)
        idx.prepare()
        assert idx._main.size == len(items) * 50
        indexes.append(idx)
    small, with_starts = indexes
    assert small._main.starts is None and with_starts._main.starts is not None
    assert small.nbytes() < with_starts.nbytes() / 10
    for k in (0, 31, 59):
        query = flip_bits(items[k], 0.05)
        assert plain(small.vote(query, top=10, min_votes=1)) == \
            plain(with_starts.vote(query, top=10, min_votes=1))
    arrays = small.arrays()  # a snapshot's layout has the starts whatever the size
    assert plain(LocalFeatureIndex.from_arrays(arrays, EXTENT).vote(query)) == \
        plain(with_starts.vote(query))


def test_an_item_costs_its_entries_positions_and_slot(monkeypatch) -> None:
    """Per item: a 4-byte entry per indexed descriptor and table, two position bytes per
    indexed descriptor, its key and its slot; the rest is fixed per index."""
    monkeypatch.setattr(local, "STARTS_FROM", 0)
    sizes = []
    for items in (2000, 4000):
        idx = Index()
        for k in range(items):
            idx.add(k, descriptors(256))
        idx.prepare()
        sizes.append(idx.nbytes())
    per_item = (sizes[1] - sizes[0]) / 2000
    assert per_item <= local.INDEXED * (4 * local.TABLES + 2) + 8 + 4 + 16


def test_each_probe_is_credited_to_its_first_descriptor_as_np_unique_would() -> None:
    values = RNG.integers(0, 1 << 23, 5000)
    values[3000:4000] = values[:1000]  # repeats, the first ones earlier
    got, want = local.first_of_each(values), np.unique(values, return_index=True)
    assert all(np.array_equal(g, w) for g, w in zip(got, want, strict=True))


def test_key_starts_hold_a_full_index() -> None:
    """The start tables' integers count every entry of a table of MAX_SLOTS items."""
    assert local.MAX_SLOTS * local.INDEXED <= np.iinfo(local.STARTS).max


def test_keys_are_non_negative() -> None:
    with pytest.raises(ValueError):
        Index().add(-1, descriptors(10))


def brute_force_votes(items: dict[int, np.ndarray], query: np.ndarray
                      ) -> dict[int, tuple[int, list[list[int]]]]:
    """Each item's votes and (query, stored) pairs by the rules, item by item: a (table, key)
    probed is credited to the first query descriptor whose own key it is, else to the first
    it is one bit from (in the order the bits are flipped); an item's stored descriptor votes
    with the credited descriptor of each of its keys; one pair per query descriptor, with its
    lowest stored descriptor."""
    own = local.table_keys(query)
    credit: dict[tuple[int, int], int] = {}
    for t in range(local.TABLES):
        for d in range(len(query)):
            credit.setdefault((t, int(own[t, d])), d)
    for t in range(local.TABLES):
        for bit in range(local.KEY_BITS):
            for d in range(len(query)):
                credit.setdefault((t, int(own[t, d]) ^ (1 << bit)), d)
    found = {}
    for key, d in items.items():
        stored = local.table_keys(d[local.spread(len(d))])
        lowest: dict[int, int] = {}
        for t in range(local.TABLES):
            for j, k in enumerate(stored[t].tolist()):
                if (t, k) in credit:
                    q = credit[t, k]
                    lowest[q] = min(lowest.get(q, j), j)
        if lowest:
            found[key] = (len(lowest), sorted([q, j] for q, j in lowest.items()))
    return found


def test_votes_across_every_level_are_the_brute_force_ones(monkeypatch) -> None:
    """Main kept as key starts, a delta frozen by a running merge and a new delta vote
    together, with removed, excluded and filtered-out items skipped: the same votes and
    pairs as counting each item's collisions by itself."""
    monkeypatch.setattr(local, "MERGE_AT", 500)
    monkeypatch.setattr(local, "STARTS_FROM", 0)
    items = {key: descriptors(80) for key in range(40)}
    idx = prepared(items, range(20))
    for key in range(20, 30):
        idx.add(key, items[key])
    merge = idx.begin_merge()
    for key in range(30, 40):
        idx.add(key, items[key])
    idx.prepare()
    assert merge is not None and idx._main.starts is not None
    assert idx._frozen.size and idx._delta.size
    for key in (5, 25):
        idx.remove(key)
    query = np.concatenate([flip_bits(items[k][:30], 0.06) for k in (3, 5, 7, 24, 25, 33)]
                           + [items[36][:10], descriptors(60)])
    votes = idx.vote(query, top=100, min_votes=1, chance=1e9, exclude=3,
                     allowed=lambda keys: keys != 7)
    live = {k: d for k, d in items.items() if k not in (3, 5, 7, 25)}
    want = brute_force_votes(live, query)
    assert {v.key: (v.votes, sorted(v.pairs.tolist())) for v in votes} == want
    assert {24, 33, 36} <= set(want) and len(want) < 30
    assert [v.votes for v in votes] == sorted((v.votes for v in votes), reverse=True)
