"""Candidate search over local binary descriptors (ORB), for the crop/screenshot tier.

Each catalog item contributes up to `INDEXED` of its 256-bit descriptors, spread through its
keypoints (`spread`); a query probes with all of its own. A query's descriptors vote for the
items holding similar descriptors; the best-voted items go on to the agreement check (their
stored positions, kept here) and then to verification, which reads the items' whole
fingerprints from the catalog. So this tier only has to propose candidates, and it is sized
for that: a 4-byte entry per indexed descriptor and table, and one byte per coordinate of its
position.

Similar descriptors are found with bit-sampling LSH: each of `TABLES` tables keys a descriptor by
`KEY_BITS` fixed bit positions. Two descriptors of the same scene point differ in about 10-15 % of
their bits, so a whole key of theirs often differs in a bit or two; unrelated ones share a key
with odds 2^-KEY_BITS. So a query probes, in each table, its own key and every key `FLIPS` bits
from it (multi-probe LSH): a query-side cost that finds several times the correspondences of the
own key alone, where another table would store an entry per indexed descriptor more. Long keys
keep the extra probes' chance collisions few; the chance floor counts every probe.

Each table is a sorted key array kept in three levels so that neither bulk loading nor
search-after-every-insert costs a full sort: new items wait unsorted; the first vote after them
sorts just them and merges them into a small sorted delta; the delta is merged into the main
arrays (a linear merge, not a sort) once it outgrows a sixty-fourth of them. The main arrays
keep where each of the 2^KEY_BITS keys starts instead of the keys, so a probe there is two array
reads rather than two binary searches over tens of millions of entries; the small delta is
probed with `searchsorted`.

Merging the delta into the main arrays rewrites them all (seconds at catalog scale), so it can
run off the caller's exclusive lock: `begin_merge` freezes the delta as a third level that votes
like the others, the merge reads only immutable levels, and `end_merge` swaps the result in.

Everything an index holds once folded is a few flat arrays (see `LocalFeatureIndex.arrays`), so
it can be written out and mapped back as they are.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np

from medialayer.index.snapshot import IndexState

TABLES = 2
KEY_BITS = 22
DESCRIPTOR_BITS = 256
INDEXED = 192
"""Descriptors of an item that go into the tables; the rest are only verified (from the
catalog). Votes and chance collisions both scale with indexed descriptors × tables, so memory
buys recall in either. Under a heavy watermark few of a copy's keypoints stay clear of the
letters: with half of them indexed and single probes, those few often fell below the chance
floor; the probes of neighbouring keys win back what three quarters and two tables lose
(measured in docs/benchmarks.md, "Keypoint tier: multi-probe keys")."""
FLIPS = 1
"""A query probes each table with its own key and the keys up to this many bits from it: KEY_BITS
more probes per table at 1, where 2 would add KEY_BITS^2 / 2 more, mostly chance collisions."""
MERGE_AT = 65_536
"""The delta is merged into the main tables past this many entries (or a sixty-fourth of main)."""

DESCRIPTOR_INDEX_BITS = 8
"""An entry is its item's slot shifted left by this, or'ed with the descriptor's index among
the item's indexed ones (below INDEXED)."""
_INDEX_MASK = (1 << DESCRIPTOR_INDEX_BITS) - 1
MAX_SLOTS = 1 << (32 - DESCRIPTOR_INDEX_BITS)
STARTS = np.uint32
"""Where each key's entries begin in a table: 32 bits hold them while MAX_SLOTS items' INDEXED
descriptors are fewer than 2^32, and halve the start tables of 64 bits."""
STARTS_FROM = 1 << KEY_BITS
"""The main level keeps each key's start instead of the keys from this many entries per table:
below it its keys (4 bytes per entry) cost less than the starts (4 bytes per key, whatever the
catalog's size), and a small catalog does not carry them."""
COMPACT_MIN_DEAD = 64
"""Dead slots are dropped once there are this many and they are a quarter of all slots: the
quarter rule spreads a compaction's cost over the deletes behind it, and the floor keeps a small
catalog with steady deletes from holding dead entries several times its own size."""
POSITION_STEPS = 255
"""Stored positions are kept as steps of extent / POSITION_STEPS in each coordinate, one byte
each: the agreement check tolerates pixels, not fractions of one."""
CHANCE = 0.01
"""Expected number of catalog items that reach a returned vote count by chance alone."""
STATE_FORMAT = 2
"""The layout of `LocalFeatureIndex.arrays` in a snapshot."""

_POSITIONS = np.random.default_rng(20261125).permutation(DESCRIPTOR_BITS)[
    : TABLES * KEY_BITS].reshape(TABLES, KEY_BITS)
_WEIGHTS = (1 << np.arange(KEY_BITS, dtype=np.uint32)).astype(np.uint32)
_NEAR = np.array([sum(1 << b for b in bits) for r in range(1, FLIPS + 1)
                  for bits in itertools.combinations(range(KEY_BITS), r)], np.int64)
"""The masks that take a key to each of its neighbours FLIPS bits or fewer away."""


def table_keys(descriptors: np.ndarray) -> np.ndarray:
    """(TABLES, n) uint32 keys: each table's sampled bits of each descriptor."""
    bits = np.unpackbits(descriptors, axis=1)
    return np.stack([bits[:, pos].astype(np.uint32) @ _WEIGHTS
                     for pos in _POSITIONS])


def probe_keys(descriptors: np.ndarray) -> np.ndarray:
    """(probes, n) int64 (table << KEY_BITS | key) each descriptor probes: first its own key in
    every table, then those FLIPS bits or fewer from it."""
    own = (np.arange(TABLES, dtype=np.int64)[:, None] << KEY_BITS) + table_keys(descriptors)
    near = own[:, None, :] ^ _NEAR[None, :, None]
    return np.concatenate([own, near.reshape(-1, own.shape[1])])


def first_of_each(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`np.unique(values, return_index=True)` for non-negative values below 2^31 and fewer than
    2^32 of them: each value packed with its index and sorted as one integer, several times
    faster than the stable argsort `np.unique` does for them."""
    packed = (values << 32) | np.arange(len(values), dtype=np.int64)
    packed.sort()
    keys = packed >> 32
    first = np.ones(len(packed), bool)
    first[1:] = keys[1:] != keys[:-1]
    return keys[first], packed[first] & 0xFFFF_FFFF


def spread(count: int, n: int = INDEXED) -> np.ndarray:
    """Which `n` of an item's `count` keypoints to index: evenly through their order.

    ORB lists keypoints pyramid level by level, so an even stride keeps every scale: a crop
    finds its stored points one level finer than its own, a downscaled copy one coarser.
    """
    if count <= n:
        return np.arange(count)
    return (np.arange(n) * count) // n


def _key_counts(keys: np.ndarray) -> np.ndarray:
    """How many of `keys` (one table's) hold each of the 2^KEY_BITS keys."""
    return np.bincount(keys, minlength=1 << KEY_BITS)


def chance_votes(rate: float, items: int, chance: float = CHANCE) -> int:
    """The fewest votes that fewer than `chance` of `items` unrelated items would reach.

    Unrelated items collide with a query independently and rarely, so each one's votes are
    close to Poisson with mean `rate` (collisions per item in this vote).
    """
    term = math.exp(-rate)  # P(X = 0)
    tail = 1.0  # P(X >= 0)
    votes = 0
    while tail * items >= chance and votes < 1000:
        tail -= term
        votes += 1
        term *= rate / votes
    return votes


class Vote(NamedTuple):
    """An item's votes, with the correspondences behind them: (query, stored) descriptor
    indexes, one row per vote (stored: among the item's indexed descriptors), and the stored
    descriptors' positions. They let the caller check geometry before any matching."""

    key: int
    votes: int
    pairs: np.ndarray  # (votes, 2) int64
    points: np.ndarray  # (votes, 2) float32, in the coordinates the item was added with


class _Pending:
    """Entries added since the last fold, unsorted, in growing arrays: one per table, so that a
    fold can hand each table's memory back before it sorts the next (at start-up they are a
    third of the peak), and no concatenation of many small arrays is needed."""

    def __init__(self, capacity: int = INDEXED) -> None:
        self.keys = [np.empty(capacity, np.uint32) for _ in range(TABLES)]
        self.slots = np.empty(capacity, np.uint32)
        self.size = 0

    def __bool__(self) -> bool:
        return self.size > 0

    def add(self, keys: np.ndarray, slots: np.ndarray) -> None:
        """`keys` (TABLES, n) of the descriptors that are `slots` (n,) entries."""
        end = self.size + len(slots)
        if end > len(self.slots):
            capacity = max(end, 2 * len(self.slots))
            self.keys = [grown(k, self.size, capacity) for k in self.keys]
            self.slots = grown(self.slots, self.size, capacity)
        for table, row in zip(self.keys, keys, strict=True):
            table[self.size:end] = row
        self.slots[self.size:end] = slots
        self.size = end

    def take_keys(self, t: int) -> np.ndarray:
        """Table `t`'s keys, which this stops holding."""
        keys, self.keys[t] = self.keys[t], np.empty(0, np.uint32)
        return keys[: self.size]

    def nbytes(self) -> int:
        return self.slots.nbytes + sum(k.nbytes for k in self.keys)


def grown(rows: np.ndarray, used: int, capacity: int) -> np.ndarray:
    """A copy of `rows`' first `used` rows with room for `capacity` (the rest unwritten, so
    its pages cost nothing until filled)."""
    out = np.zeros((capacity, *rows.shape[1:]), rows.dtype)
    out[:used] = rows[:used]
    return out
class _Tables:
    """Per table: the entries (item slot and descriptor) sorted by their descriptor's key.

    Where each key's entries are is kept in one of two forms: the sorted keys themselves (small
    levels, probed by binary search), or, for a main level of STARTS_FROM entries or more, each
    key's first position (`starts`), where a probe is two array reads. The starts are all a
    level needs to merge or compact, so with them the main level keeps no keys: 4 bytes per
    entry.
    """

    def __init__(self, keys: np.ndarray | None, slots: np.ndarray,
                 starts: np.ndarray | None = None) -> None:
        self.keys = keys  # (TABLES, n) uint32, each row sorted; None once `starts` replace them
        self.slots = slots  # (TABLES, n) uint32 entries (slot << 8 | descriptor), as keys
        self.starts = starts  # (TABLES, 2^KEY_BITS + 1) STARTS: where each key's entries begin

    def with_starts(self, always: bool = False) -> _Tables:
        """Replace the keys by each key's first position per table: probes become O(1)
        lookups. Worth it for the main level only, and only from STARTS_FROM entries (or
        `always`, for a snapshot's fixed layout)."""
        if self.starts is None and self.keys is not None and (always
                                                              or self.size >= STARTS_FROM):
            starts = np.zeros((TABLES, (1 << KEY_BITS) + 1), STARTS)
            for t in range(TABLES):
                starts[t, 1:] = np.cumsum(_key_counts(self.keys[t]))
            self.keys, self.starts = None, starts
        return self

    @classmethod
    def empty(cls) -> _Tables:
        return cls(np.zeros((TABLES, 0), np.uint32), np.zeros((TABLES, 0), np.uint32))

    @classmethod
    def build(cls, pending: _Pending, with_starts: bool = False) -> _Tables:
        """Sort what is pending, taking its keys table by table; `with_starts`, straight into
        the keyless form of `with_starts()`.

        Key and slot are packed into one uint64 and sorted as values (SIMD sort), several times
        faster than an argsort and two gathers at catalog scale. One table at a time, in place:
        all six at once took 4 temporaries of 8 bytes per entry and table, a start-up peak of
        about 5 GB per process at 100k items.
        """
        slots = pending.slots[: pending.size]
        keys = None if with_starts else np.empty((TABLES, len(slots)), np.uint32)
        starts = np.zeros((TABLES, (1 << KEY_BITS) + 1), STARTS) if with_starts else None
        sorted_slots = np.empty((TABLES, len(slots)), np.uint32)
        for t in range(TABLES):
            table = pending.take_keys(t)
            if starts is not None:
                starts[t, 1:] = np.cumsum(_key_counts(table))
            packed = table.astype(np.uint64)
            del table
            packed <<= np.uint64(32)
            packed |= slots
            packed.sort()
            sorted_slots[t] = packed  # the low 32 bits
            if keys is not None:
                packed >>= np.uint64(32)
                keys[t] = packed
        return cls(keys, sorted_slots, starts)

    @property
    def size(self) -> int:
        return int(self.slots.shape[1])

    def sorted_keys(self) -> np.ndarray:
        """The keys of a level that keeps them (all but a main level with `starts`)."""
        if self.keys is None:
            raise ValueError("this level keeps each key's start, not the keys")
        return self.keys

    def merged(self, other: _Tables) -> _Tables:
        """Both sets in one sorted set: a linear merge per table. `other` has its keys."""
        if other.size == 0:
            return self
        if self.size == 0:
            return other
        other_keys = other.sorted_keys()
        if self.starts is None:
            own_keys = self.sorted_keys()
            keys, slots = [], []
            for t in range(TABLES):
                at = np.searchsorted(own_keys[t], other_keys[t], side="right")
                keys.append(np.insert(own_keys[t], at, other_keys[t]))
                slots.append(np.insert(self.slots[t], at, other.slots[t]))
            return _Tables(np.stack(keys), np.stack(slots))
        starts, slots = self.starts.copy(), []
        for t in range(TABLES):
            # after the entries of its key: where a right-sided binary search would put it
            at = self.starts[t][other_keys[t] + 1].astype(np.int64)
            slots.append(np.insert(self.slots[t], at, other.slots[t]))
            starts[t, 1:] += np.cumsum(_key_counts(other_keys[t])).astype(STARTS)
        return _Tables(None, np.stack(slots), starts)

    def alive(self, live: np.ndarray, remap: np.ndarray) -> _Tables:
        """Only live slots' entries, renumbered by `remap` (order is kept, so still sorted)."""
        keys, slots = [], []
        old_starts = self.starts
        starts = None if old_starts is None else np.empty_like(old_starts)
        for t in range(TABLES):
            items = self.slots[t] >> DESCRIPTOR_INDEX_BITS
            keep = live[items]
            if starts is not None and old_starts is not None:  # a key's entries now begin
                kept_before = np.concatenate([[0], np.cumsum(keep, dtype=np.int64)])  # after
                starts[t] = kept_before[old_starts[t]]  # the kept ones before it
            else:
                keys.append(self.sorted_keys()[t][keep])
            slots.append((remap[items[keep]].astype(np.uint32) << DESCRIPTOR_INDEX_BITS)
                         | (self.slots[t][keep] & _INDEX_MASK))
        return _Tables(np.stack(keys) if keys else None, np.stack(slots), starts)

    def probe(self, tables: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ends, entries): every stored descriptor whose key in `tables[i]` is `keys[i]`,
        all tables in one gather, probe by probe, and where each probe's entries end among
        them; probes come sorted by table."""
        if self.size == 0 or len(keys) == 0:
            return np.zeros(len(keys), np.int64), np.zeros(0, np.uint32)
        if self.starts is not None:
            at = tables * ((1 << KEY_BITS) + 1) + keys  # np.take: faster than indexing
            lo = np.take(self.starts.ravel(), at).astype(np.int64)
            hi = np.take(self.starts.ravel(), at + 1).astype(np.int64)
        else:
            lo, hi = np.empty(len(keys), np.int64), np.empty(len(keys), np.int64)
            bounds = np.searchsorted(tables, np.arange(TABLES + 1))
            own_keys = self.sorted_keys()
            for t in range(TABLES):
                mine = slice(int(bounds[t]), int(bounds[t + 1]))
                wanted = keys[mine].astype(np.uint32)  # the keys' own type: they are not copied
                lo[mine] = np.searchsorted(own_keys[t], wanted, side="left")
                hi[mine] = np.searchsorted(own_keys[t], wanted, side="right")
        counts = hi - lo
        ends = np.cumsum(counts)
        total = int(ends[-1])
        if total == 0:
            return ends, np.zeros(0, np.uint32)
        lo += tables * self.size  # positions in the flattened (TABLES, n) entries
        at = np.repeat(lo - ends + counts, counts)
        at += np.arange(total)
        return ends, np.take(self.slots.ravel(), at)

    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.keys, self.slots, self.starts) if a is not None)


class Merge:
    """The delta frozen by `begin_merge`, merged into main by `run` (no lock needed: it reads
    only levels that nothing changes any more)."""

    def __init__(self, main: _Tables, frozen: _Tables) -> None:
        self._main = main
        self._frozen = frozen
        self.merged: _Tables | None = None

    def run(self) -> None:
        merged = self._main.merged(self._frozen)  # may be one of them, which votes meanwhile:
        self.merged = _Tables(merged.keys, merged.slots, merged.starts).with_starts()  # a copy


class LocalFeatureIndex:
    """Descriptors of many items, voted on by a query's descriptors.

    Keys are non-negative integers, dense enough to index an array by (catalog sequence
    numbers). Each item has a slot: its row of positions and the high bits of its entries.
    """

    def __init__(self, extent: float = 1.0) -> None:
        """`extent`: the largest coordinate of the positions added; they are kept to the
        nearest step of extent / POSITION_STEPS."""
        self._extent = extent
        self._step = extent / POSITION_STEPS
        self._slot_of = np.zeros(0, np.int32)
        """By key: its slot, or -1."""
        self._key_of = np.zeros(0, np.int64)
        """By slot: its key, or -1 once removed (the slot stops voting; its entries go at the
        next compaction)."""
        self._points = np.zeros((0, INDEXED, 2), np.uint8)
        """By slot: the positions of its indexed descriptors, in steps. Never written once
        set (it may be mapped read-only from a snapshot): slots past it are in `_added`."""
        self._added = np.zeros((0, INDEXED, 2), np.uint8)
        """The positions of slots `len(_points)` and up, with room to grow."""
        self._used = 0
        """Slots handed out since the last compaction."""
        self._count = 0
        self._main = _Tables.empty()
        self._frozen = _Tables.empty()
        """A delta being merged into main off the lock (see `begin_merge`)."""
        self._merge: Merge | None = None
        self._delta = _Tables.empty()
        self._pending = _Pending()

    def __len__(self) -> int:
        return self._count

    def __contains__(self, key: int) -> bool:
        return 0 <= key < len(self._slot_of) and int(self._slot_of[key]) >= 0

    def add(self, key: int, descriptors: np.ndarray, points: np.ndarray) -> None:
        """Index the item `key` by `descriptors` (n, 32) at `points` (n, 2), replacing what
        it had."""
        if key < 0:
            raise ValueError(f"keys are non-negative, not {key}")
        self.remove(key)
        if len(descriptors) == 0:
            return
        chosen = spread(len(descriptors), INDEXED)
        slot = self._new_slot(key)
        steps = np.rint(points[chosen] / self._step)
        self._added[slot - len(self._points), : len(chosen)] = np.clip(steps, 0,
                                                                       POSITION_STEPS)
        entries = (np.uint32(slot) << DESCRIPTOR_INDEX_BITS) | np.arange(
            len(chosen), dtype=np.uint32)
        self._pending.add(table_keys(descriptors[chosen]), entries)

    def _new_slot(self, key: int) -> int:
        slot = self._used
        if slot >= MAX_SLOTS:
            raise OverflowError(f"a keypoint index holds {MAX_SLOTS:,} items")
        if slot == len(self._key_of):
            self._key_of = grown(self._key_of, slot, max(1024, slot + slot // 2))
        row = slot - len(self._points)
        if row == len(self._added):
            self._added = grown(self._added, row, max(1024, row + row // 2))
        if key >= len(self._slot_of):
            slot_of = np.full(max(1024, key + 1, 2 * len(self._slot_of)), -1, np.int32)
            slot_of[: len(self._slot_of)] = self._slot_of
            self._slot_of = slot_of
        self._key_of[slot] = key
        self._slot_of[key] = slot
        self._used += 1
        self._count += 1
        return slot

    def remove(self, key: int) -> bool:
        """Tombstone: the slot stops voting at once; its entries go at the next compaction."""
        if key not in self:
            return False
        slot = int(self._slot_of[key])
        self._slot_of[key] = -1
        self._key_of[slot] = -1
        self._count -= 1
        return True

    def nbytes(self) -> int:
        """Bytes held, counting the slot arrays' rows in use (the rest of their capacity is
        unwritten, so not resident)."""
        pending = self._pending.nbytes()
        levels = self._main.nbytes() + self._frozen.nbytes() + self._delta.nbytes()
        slots = self._used * (self._key_of.itemsize + self._points.itemsize * INDEXED * 2)
        return levels + pending + slots + self._slot_of.nbytes

    def arrays(self) -> dict[str, np.ndarray]:
        """The whole state as flat arrays, everything folded into the main level first (so
        under the caller's exclusive lock, and not while a merge runs); `from_arrays` takes
        them back, mapped read-only or copy-on-write.

        `entries` (TABLES, n) uint32: slot << DESCRIPTOR_INDEX_BITS | descriptor, each row
        sorted by key; `starts` (TABLES, 2^KEY_BITS + 1) STARTS: where each key's entries
        begin; `key_of` (slots,) int64: each slot's key, -1 if removed; `points` (slots,
        INDEXED, 2) uint8: each slot's descriptor positions in steps; `slot_of` (keys,)
        int32: each key's slot, -1 if none. They hold for this module's TABLES, KEY_BITS,
        INDEXED and the index's extent.
        """
        if self._merge is not None:
            raise ValueError("a merge is running: end it first")
        self._fold(merge=False)
        self._main = self._main.merged(self._delta).with_starts(always=True)
        self._delta = _Tables.empty()
        self._compact()
        starts = self._main.starts
        assert starts is not None  # with_starts() gave it
        return {"entries": self._main.slots, "starts": starts,
                "key_of": self._key_of[: self._used], "points": self._positions_in_use(),
                "slot_of": self._slot_of}

    def state(self) -> IndexState:
        """`arrays()` for a snapshot, with the parameters they hold for: `key_of` and
        `slot_of` are written by removals and adds, so they are mapped copy-on-write."""
        return IndexState(self.arrays(), self._layout(), frozenset({"key_of", "slot_of"}))

    def load_state(self, state: IndexState) -> None:
        """Take `state`'s arrays as this (empty) index's, without copying them; ValueError
        if they were made with other parameters (tables, sampled bits, positions' extent)
        or do not have the shapes these give."""
        if self._used or len(self._slot_of):
            raise ValueError("only an empty index can take a state")
        wanted = self._layout()
        other = [f"{k} {state.meta.get(k)!r}, not {v!r}" for k, v in wanted.items()
                 if state.meta.get(k) != v]
        if other:
            raise ValueError(f"the keypoint state has {'; '.join(other)}")
        arrays = state.arrays
        slots = len(arrays["key_of"])
        shapes = {"entries": (np.uint32, (TABLES, arrays["entries"].shape[-1])),
                  "starts": (STARTS, (TABLES, (1 << KEY_BITS) + 1)),
                  "key_of": (np.int64, (slots,)), "points": (np.uint8, (slots, INDEXED, 2)),
                  "slot_of": (np.int32, (len(arrays["slot_of"]),))}
        for name, (dtype, shape) in shapes.items():
            a = arrays[name]
            if a.dtype != dtype or a.shape != shape:
                raise ValueError(f"the keypoint state's {name!r} is {a.dtype} {a.shape}, "
                                 f"not {np.dtype(dtype)} {shape}")
        if (arrays["starts"][:, -1] != arrays["entries"].shape[1]).any():
            raise ValueError("the keypoint state's starts do not end at its entries")
        self._take(arrays)

    def _layout(self) -> dict[str, Any]:
        """What `arrays()` hold for (JSON values)."""
        return {"format": STATE_FORMAT, "tables": TABLES, "key_bits": KEY_BITS,
                "indexed": INDEXED, "descriptor_index_bits": DESCRIPTOR_INDEX_BITS,
                "sampled_bits": _POSITIONS.tolist(), "position_steps": POSITION_STEPS,
                "extent": self._extent}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], extent: float = 1.0
                    ) -> LocalFeatureIndex:
        """The index whose `arrays()` these are. They are used as given, not copied: what
        changes later (adds, removals) writes into `key_of`/`slot_of`, so map those
        copy-on-write; merges and compactions build new arrays."""
        index = cls(extent)
        index._take(arrays)
        return index

    def _take(self, arrays: Mapping[str, np.ndarray]) -> None:
        self._main = _Tables(None, arrays["entries"], arrays["starts"])
        self._key_of, self._points = arrays["key_of"], arrays["points"]
        self._slot_of = arrays["slot_of"]
        self._used = len(self._key_of)
        self._count = int(np.count_nonzero(self._key_of >= 0))

    def vote(self, descriptors: np.ndarray, top: int = 5, min_votes: int = 3,
             exclude: int | None = None, chance: float = CHANCE,
             allowed: Callable[[np.ndarray], np.ndarray] | None = None,
             population: int | None = None) -> list[Vote]:
        """The items sharing keys with the most query descriptors, best first.

        A query descriptor votes once per item however many of its probes collide, and a key
        probed by several query descriptors is probed once, for one whose own key it is if
        any: repetitive texture collides many times at once and must not outvote real
        correspondences. Only items with more votes than `chance` would give any item of the
        catalog are returned (see `chance_votes`), so verification is spent on candidates and
        not on the luckiest of 100k strangers.
        Collisions are first counted per item, an upper bound on its votes, so only the few
        items that can pass need the exact, de-duplicated count; only they are checked for
        removal, exclusion and `allowed`, and only their collisions' query descriptors are
        looked up, not those of the hundreds of thousands of chance collisions of a catalog.

        `allowed(keys)` filters items (a tenant's), `population` their number: the chance
        floor is that of the allowed items, not of the whole index.
        """
        if not self._count or len(descriptors) == 0:
            return []
        self._fold()
        n = len(descriptors)
        # one probe per distinct (table, key), credited to the first descriptor that has it
        # as its own key, else to the first that has it as a neighbour
        probes, first = first_of_each(probe_keys(descriptors).ravel())
        floor = max(min_votes, chance_votes(self._chance_rate(len(probes)),
                                            population or self._count, chance))
        ends, entries = self._collisions(probes)
        items = entries >> DESCRIPTOR_INDEX_BITS
        hopeful = np.flatnonzero(np.take(np.bincount(items) >= floor, items))
        if len(hopeful) == 0:
            return []
        able, which = np.unique(items[hopeful], return_inverse=True)
        keep = self._key_of[able] >= 0
        if exclude is not None and exclude in self:
            keep &= able != self._slot_of[exclude]
        if allowed is not None:
            keep[keep] = allowed(self._key_of[able[keep]])
        hopeful = hopeful[keep[which]]
        if len(hopeful) == 0:
            return []
        # the query descriptor behind each collision: its probe's (levels are probed in turn)
        qidx = (first % n)[np.searchsorted(ends, hopeful, side="right") % len(probes)]
        # (item, query descriptor) pairs, each with one stored descriptor, sorted by pair
        packed = np.sort(((items[hopeful].astype(np.int64) * n + qidx) << DESCRIPTOR_INDEX_BITS)
                         | (entries[hopeful] & _INDEX_MASK))
        pair = packed >> DESCRIPTOR_INDEX_BITS
        first = np.ones(packed.size, dtype=bool)
        first[1:] = pair[1:] != pair[:-1]  # one vote per (item, query descriptor)
        packed, item_of = packed[first], pair[first] // n
        # sorted by item: each item's votes are a run
        starts = np.flatnonzero(np.concatenate([[True], item_of[1:] != item_of[:-1]]))
        votes = np.diff(starts, append=len(item_of))
        voted = np.flatnonzero(votes >= floor)
        found = []
        for run in voted[np.argsort(-votes[voted], kind="stable")[:top]]:
            mine = packed[starts[run]:starts[run] + votes[run]]
            stored = mine & _INDEX_MASK
            pairs = np.stack([(mine >> DESCRIPTOR_INDEX_BITS) % n, stored], axis=1)
            slot = int(item_of[starts[run]])
            points = self._positions(slot)[stored].astype(np.float32) * np.float32(self._step)
            found.append(Vote(int(self._key_of[slot]), int(votes[run]), pairs, points))
        return found

    def _positions(self, slot: int) -> np.ndarray:
        """The slot's (INDEXED, 2) positions in steps."""
        base = len(self._points)
        rows: np.ndarray = self._points[slot] if slot < base else self._added[slot - base]
        return rows

    def _positions_in_use(self) -> np.ndarray:
        """Every slot's positions in one array (the one there is if nothing was added)."""
        added = self._used - len(self._points)
        return self._points if added == 0 else np.concatenate([self._points,
                                                               self._added[:added]])

    def _chance_rate(self, probes: int) -> float:
        """Collisions per item expected if the query were unrelated to the whole catalog.

        Keys of uniform descriptors spread evenly over the 2^KEY_BITS buckets. Real descriptors
        crowd some buckets, so this can be low, and more chance items get verified: slower,
        never less accurate.
        """
        per_bucket = (self._main.size + self._frozen.size + self._delta.size) / (1 << KEY_BITS)
        return probes * per_bucket / self._count

    def _collisions(self, probes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ends, entries): every stored entry sharing a table key with the query, probe by
        probe in each level that holds any; `ends` (levels × probes) where each probe's
        entries end among them.

        `probes` are sorted (table << KEY_BITS | key) values.
        """
        tables, keys = probes >> KEY_BITS, probes & ((1 << KEY_BITS) - 1)
        ends, entries = [], []
        total = 0
        for level in (self._main, self._frozen, self._delta):
            if level.size:
                e, found = level.probe(tables, keys)
                ends.append(e + total)
                entries.append(found)
                total += len(found)
        if not entries:
            return np.zeros(0, np.int64), np.zeros(0, np.uint32)
        return np.concatenate(ends), np.concatenate(entries)

    def prepare(self) -> None:
        """Sort what is pending now, so the next vote pays nothing for a bulk load."""
        self._fold()

    def ready(self) -> bool:
        """True when a vote would not reorganise anything (safe under a shared lock)."""
        return not self._pending and not self._delta_outgrown()

    def begin_merge(self) -> Merge | None:
        """Sort what is pending and, if the delta has outgrown, freeze it for a merge into
        main: run the merge off the lock, then `end_merge` under it. None if none is due (or
        one is running already)."""
        self._fold(merge=False)
        if self._merge is not None or not self._delta_outgrown():
            return None
        self._frozen, self._delta = self._delta, _Tables.empty()
        self._merge = Merge(self._main, self._frozen)
        return self._merge

    def end_merge(self, merge: Merge) -> None:
        """Swap in what `merge` built (main and the frozen delta, as one main level)."""
        if merge is not self._merge or merge.merged is None:
            raise ValueError("not this index's running merge, or not run")
        self._main, self._frozen, self._merge = merge.merged, _Tables.empty(), None
        self._compact()

    def _delta_outgrown(self) -> bool:
        """While a merge runs, the delta takes what comes and waits for the next."""
        return self._merge is None and self._delta.size > max(MERGE_AT, self._main.size // 64)

    def _fold(self, merge: bool = True) -> None:
        """Sort what waits into the delta, and (if `merge`) the delta into main once it has
        grown."""
        if self._pending:
            pending, self._pending = self._pending, _Pending()
            empty = self._main.size + self._frozen.size + self._delta.size == 0
            if empty and self._merge is None and pending.size > MERGE_AT:
                # a bulk load (start-up): straight into the main level, as the delta would go
                # there at once anyway; keyless if large, 4 bytes per entry lighter on the way
                self._main = _Tables.build(pending, with_starts=pending.size >= STARTS_FROM)
                self._compact()
                return
            self._delta = self._delta.merged(_Tables.build(pending))
        if merge and self._delta_outgrown():
            self._main = self._main.merged(self._delta)
            self._delta = _Tables.empty()
            self._compact()
            self._main.with_starts()

    def _compact(self) -> None:
        """Drop dead slots' entries and renumber slots, once a quarter of them are dead.

        Entries still pending (added while a merge ran) are sorted into the delta first: they
        carry the slot numbers that are about to change.
        """
        used = self._used
        dead = used - self._count
        if dead < COMPACT_MIN_DEAD or dead < used // 4:
            return
        if self._pending:
            pending, self._pending = self._pending, _Pending()
            self._delta = self._delta.merged(_Tables.build(pending))
        live = self._key_of[:used] >= 0
        remap = (np.cumsum(live) - 1).astype(np.int32)
        self._main = self._main.alive(live, remap)
        self._delta = self._delta.alive(live, remap)
        keys = self._key_of[:used][live]
        capacity = max(1024, 2 * len(keys))
        self._key_of = grown(keys, len(keys), capacity)
        self._points = self._positions_in_use()[live]
        self._added = np.zeros((0, INDEXED, 2), np.uint8)
        self._slot_of[keys] = np.arange(len(keys), dtype=np.int32)
        self._used = len(keys)
