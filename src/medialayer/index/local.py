"""Candidate search over local binary descriptors (ORB), for the crop/screenshot tier.

Each catalog item contributes a few hundred 256-bit descriptors. A query's descriptors vote for
the items holding similar descriptors; the best-voted items go on to geometric verification.

Similar descriptors are found with bit-sampling LSH: each of `TABLES` tables keys a descriptor by
`KEY_BITS` fixed bit positions. Two descriptors of the same scene point differ in about 10-15 % of
their bits, so they share a key in at least one table with good odds, while unrelated ones share
one with odds 2^-20 per table.

Each table is a sorted key array probed with `searchsorted`, kept in three levels so that neither
bulk loading nor search-after-every-insert costs a full sort: new items wait unsorted; the first
vote after them sorts just them and merges them into a small sorted delta; the delta is merged
into the main arrays (a linear merge, not a sort) once it outgrows an eighth of them.
"""

from __future__ import annotations

import numpy as np

TABLES = 6
KEY_BITS = 20
DESCRIPTOR_BITS = 256
MERGE_AT = 65_536
"""The delta is merged into the main tables past this many entries (or an eighth of main)."""

_POSITIONS = np.random.default_rng(20261125).permutation(DESCRIPTOR_BITS)[
    : TABLES * KEY_BITS].reshape(TABLES, KEY_BITS)
_WEIGHTS = (1 << np.arange(KEY_BITS, dtype=np.uint32)).astype(np.uint32)


def table_keys(descriptors: np.ndarray) -> np.ndarray:
    """(TABLES, n) uint32 keys: each table's sampled bits of each descriptor."""
    bits = np.unpackbits(descriptors, axis=1)
    return np.stack([bits[:, pos].astype(np.uint32) @ _WEIGHTS
                     for pos in _POSITIONS])


class _Tables:
    """Per table: descriptor keys sorted, with the slot (item) each one belongs to."""

    def __init__(self, keys: np.ndarray, slots: np.ndarray) -> None:
        self.keys = keys  # (TABLES, n) uint32, each row sorted
        self.slots = slots  # (TABLES, n) int32, aligned with keys

    @classmethod
    def empty(cls) -> _Tables:
        return cls(np.zeros((TABLES, 0), np.uint32), np.zeros((TABLES, 0), np.int32))

    @classmethod
    def build(cls, keys: np.ndarray, slots: np.ndarray) -> _Tables:
        """Sort (TABLES, n) keys whose descriptors belong to `slots` (n,).

        Key and slot are packed into one uint64 and sorted as values (SIMD sort), several times
        faster than an argsort and two gathers at catalog scale.
        """
        packed = (keys.astype(np.uint64) << np.uint64(32)) | slots.astype(np.uint64)
        packed.sort(axis=1)
        return cls((packed >> np.uint64(32)).astype(np.uint32),
                   (packed & np.uint64(0xFFFFFFFF)).astype(np.int32))

    @property
    def size(self) -> int:
        return self.keys.shape[1]

    def merged(self, other: _Tables) -> _Tables:
        """Both sets in one sorted set: a linear merge per table."""
        if other.size == 0:
            return self
        if self.size == 0:
            return other
        keys, slots = [], []
        for t in range(TABLES):
            at = np.searchsorted(self.keys[t], other.keys[t], side="right")
            keys.append(np.insert(self.keys[t], at, other.keys[t]))
            slots.append(np.insert(self.slots[t], at, other.slots[t]))
        return _Tables(np.stack(keys), np.stack(slots))

    def alive(self, live: np.ndarray, remap: np.ndarray) -> _Tables:
        """Only live slots' entries, renumbered by `remap` (order is kept, so still sorted)."""
        keys, slots = [], []
        for t in range(TABLES):
            keep = live[self.slots[t]]
            keys.append(self.keys[t][keep])
            slots.append(remap[self.slots[t][keep]])
        return _Tables(np.stack(keys), np.stack(slots).astype(np.int32))

    def probe(self, table: int, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(query index, slot) for every stored descriptor sharing a key in this table."""
        lo = np.searchsorted(self.keys[table], keys, side="left")
        hi = np.searchsorted(self.keys[table], keys, side="right")
        counts = hi - lo
        total = int(counts.sum())
        if total == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int32)
        qidx = np.repeat(np.arange(len(keys)), counts)
        starts = np.repeat(lo - np.cumsum(counts) + counts, counts)
        return qidx, self.slots[table][starts + np.arange(total)]

    def nbytes(self) -> int:
        return self.keys.nbytes + self.slots.nbytes


class LocalFeatureIndex:
    """Descriptors of many items, voted on by a query's descriptors."""

    def __init__(self) -> None:
        self._slot_of: dict[int, int] = {}
        self._key_of_slot: list[int] = []
        self._live = np.zeros(1024, dtype=bool)
        self._main = _Tables.empty()
        self._delta = _Tables.empty()
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []

    def __len__(self) -> int:
        return len(self._slot_of)

    def __contains__(self, key: int) -> bool:
        return key in self._slot_of

    def add(self, key: int, descriptors: np.ndarray) -> None:
        self.remove(key)
        if len(descriptors) == 0:
            return
        slot = len(self._key_of_slot)
        self._key_of_slot.append(key)
        self._slot_of[key] = slot
        if slot >= len(self._live):
            self._live = np.concatenate([self._live, np.zeros(len(self._live), dtype=bool)])
        self._live[slot] = True
        self._pending.append((table_keys(descriptors),
                              np.full(len(descriptors), slot, dtype=np.int32)))

    def remove(self, key: int) -> bool:
        """Tombstone: the slot stops voting at once; its entries go at the next compaction."""
        slot = self._slot_of.pop(key, None)
        if slot is None:
            return False
        self._live[slot] = False
        return True

    def nbytes(self) -> int:
        pending = sum(k.nbytes + s.nbytes for k, s in self._pending)
        return self._main.nbytes() + self._delta.nbytes() + pending + self._live.nbytes

    def vote(self, descriptors: np.ndarray, top: int = 5, min_votes: int = 3,
             exclude: int | None = None) -> list[tuple[int, int]]:
        """(key, votes) of the items sharing keys with the most query descriptors.

        A query descriptor votes once per item however many of its tables collide: repetitive
        texture collides in many tables at once and must not outvote real correspondences.
        Collisions are first counted per item, an upper bound on its votes, so only the few
        items that can reach `min_votes` need the exact, de-duplicated count.
        """
        if not self._slot_of or len(descriptors) == 0:
            return []
        self._fold()
        query = table_keys(descriptors)
        hits = [tables.probe(t, query[t]) for tables in (self._main, self._delta)
                for t in range(TABLES)]
        qidx = np.concatenate([h[0] for h in hits])
        slots = np.concatenate([h[1] for h in hits])
        bound = np.bincount(slots, minlength=len(self._key_of_slot))
        bound[~self._live[: len(bound)]] = 0
        if exclude is not None and exclude in self._slot_of:
            bound[self._slot_of[exclude]] = 0
        hopeful = (bound >= min_votes)[slots]
        if not hopeful.any():
            return []
        n = len(descriptors)
        pairs = np.sort(slots[hopeful].astype(np.int64) * n + qidx[hopeful])
        first = np.ones(pairs.size, dtype=bool)
        first[1:] = pairs[1:] != pairs[:-1]  # one vote per (item, query descriptor)
        votes = np.bincount(pairs[first] // n, minlength=len(bound))
        voted = np.flatnonzero(votes >= min_votes)
        best = voted[np.argsort(-votes[voted], kind="stable")[:top]]
        return [(self._key_of_slot[i], int(votes[i])) for i in best]

    def prepare(self) -> None:
        """Sort what is pending now, so the next vote pays nothing for a bulk load."""
        self._fold()

    def ready(self) -> bool:
        """True when a vote would not reorganise anything (safe under a shared lock)."""
        return not self._pending and not self._delta_outgrown()

    def _delta_outgrown(self) -> bool:
        return self._delta.size > max(MERGE_AT, self._main.size // 8)

    def _fold(self) -> None:
        """Sort what waits into the delta, and the delta into main once it has grown."""
        if self._pending:
            keys = np.concatenate([k for k, _ in self._pending], axis=1)
            slots = np.concatenate([s for _, s in self._pending])
            self._pending = []
            self._delta = self._delta.merged(_Tables.build(keys, slots))
        if self._delta_outgrown():
            self._main = self._main.merged(self._delta)
            self._delta = _Tables.empty()
            self._compact()

    def _compact(self) -> None:
        """Drop dead slots' entries and renumber slots, once a quarter of them are dead."""
        used = len(self._key_of_slot)
        dead = used - len(self._slot_of)
        if dead < 1024 or dead < used // 4:
            return
        live = self._live[:used]
        remap = (np.cumsum(live) - 1).astype(np.int32)
        self._main = self._main.alive(live, remap)
        self._delta = self._delta.alive(live, remap)
        self._key_of_slot = [k for k, alive in zip(self._key_of_slot, live, strict=True) if alive]
        self._slot_of = {k: i for i, k in enumerate(self._key_of_slot)}
        self._live = np.zeros(max(1024, 2 * len(self._key_of_slot)), dtype=bool)
        self._live[: len(self._key_of_slot)] = True
