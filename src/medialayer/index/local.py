"""Candidate search over local binary descriptors (ORB), for the crop/screenshot tier.

Each catalog item contributes a few hundred 256-bit descriptors. A query's descriptors vote for
the items holding similar descriptors; the best-voted items go on to geometric verification.

Similar descriptors are found with bit-sampling LSH: each of `TABLES` tables keys a descriptor by
`KEY_BITS` fixed bit positions. Two descriptors of the same scene point differ in about 10-15 % of
their bits, so they share a key in at least one table with good odds, while unrelated ones share
one with odds 2^-16 per table. Each table is a sorted key array probed with `searchsorted`, plus a
small unsorted delta for recent adds, so adding an item never rebuilds the index.
"""

from __future__ import annotations

import numpy as np

TABLES = 6
KEY_BITS = 16
DESCRIPTOR_BITS = 256
MERGE_AT = 50_000
"""Delta descriptors kept unsorted before they are merged into the sorted tables."""

_POSITIONS = np.random.default_rng(20261125).permutation(DESCRIPTOR_BITS)[
    : TABLES * KEY_BITS].reshape(TABLES, KEY_BITS)
_WEIGHTS = (1 << np.arange(KEY_BITS, dtype=np.uint32)).astype(np.uint32)


def table_keys(descriptors: np.ndarray) -> np.ndarray:
    """(TABLES, n) uint16 keys: each table's sampled bits of each descriptor."""
    bits = np.unpackbits(descriptors, axis=1)
    return np.stack([(bits[:, pos].astype(np.uint32) @ _WEIGHTS).astype(np.uint16)
                     for pos in _POSITIONS])


class _Tables:
    """Per table: descriptor keys sorted, with the slot (item) each one belongs to."""

    def __init__(self, keys: list[np.ndarray], slots: list[np.ndarray]) -> None:
        """Sort each table's (keys, slots) rows by key."""
        order = [np.argsort(k, kind="stable") for k in keys]
        self.keys = np.stack([k[o] for k, o in zip(keys, order, strict=True)])
        self.slots = np.stack([s[o] for s, o in zip(slots, order, strict=True)]).astype(np.int32)

    @classmethod
    def empty(cls) -> _Tables:
        return cls([np.zeros(0, np.uint16)] * TABLES, [np.zeros(0, np.int32)] * TABLES)

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


class LocalFeatureIndex:
    """Descriptors of many items, voted on by a query's descriptors."""

    def __init__(self) -> None:
        self._slot_of: dict[int, int] = {}
        self._key_of_slot: list[int] = []
        self._live = np.zeros(0, dtype=bool)
        self._main = _Tables.empty()
        self._delta_keys: list[np.ndarray] = []
        self._delta_slots: list[np.ndarray] = []
        self._delta: _Tables | None = _Tables.empty()

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
        self._live = np.append(self._live, True)
        self._delta_keys.append(table_keys(descriptors))
        self._delta_slots.append(np.full(len(descriptors), slot, dtype=np.int32))
        self._delta = None
        if sum(len(s) for s in self._delta_slots) >= MERGE_AT:
            self._merge()

    def remove(self, key: int) -> bool:
        """Tombstone: the slot stops voting at once; its entries go at the next merge."""
        slot = self._slot_of.pop(key, None)
        if slot is None:
            return False
        self._live[slot] = False
        return True

    def nbytes(self) -> int:
        delta = sum(k.nbytes + s.nbytes for k, s in zip(self._delta_keys, self._delta_slots,
                                                        strict=True))
        return self._main.keys.nbytes + self._main.slots.nbytes + delta + self._live.nbytes

    def vote(self, descriptors: np.ndarray, top: int = 5, min_votes: int = 3,
             exclude: int | None = None) -> list[tuple[int, int]]:
        """(key, votes) of the items sharing the most query descriptors (one vote per pair)."""
        if not self._slot_of or len(descriptors) == 0:
            return []
        query = table_keys(descriptors)
        found = [tables.probe(t, query[t]) for tables in (self._main, self._delta_tables())
                 for t in range(TABLES)]
        qidx = np.concatenate([f[0] for f in found])
        slots = np.concatenate([f[1] for f in found])
        keep = self._live[slots]
        if exclude is not None and exclude in self._slot_of:
            keep &= slots != self._slot_of[exclude]
        qidx, slots = qidx[keep], slots[keep]
        if slots.size == 0:
            return []
        n = len(descriptors)
        voted, votes = np.unique(np.unique(slots.astype(np.int64) * n + qidx) // n,
                                 return_counts=True)
        order = np.argsort(-votes, kind="stable")[:top]
        return [(self._key_of_slot[voted[i]], int(votes[i])) for i in order
                if votes[i] >= min_votes]

    def _delta_tables(self) -> _Tables:
        if self._delta is None:
            keys = np.concatenate(self._delta_keys, axis=1)
            slots = np.concatenate(self._delta_slots)
            self._delta = _Tables(list(keys), [slots] * TABLES)
        return self._delta

    def _merge(self) -> None:
        """Fold the delta into the sorted tables, dropping tombstoned slots."""
        delta = self._delta_tables()
        keys, slots = [], []
        for t in range(TABLES):
            k = np.concatenate([self._main.keys[t], delta.keys[t]])
            s = np.concatenate([self._main.slots[t], delta.slots[t]])
            alive = self._live[s]
            keys.append(k[alive])
            slots.append(s[alive])
        self._main = _Tables(keys, slots)
        self._delta_keys, self._delta_slots, self._delta = [], [], _Tables.empty()
        self._compact_slots()

    def _compact_slots(self) -> None:
        """Renumber slots when many are dead, so `_live` and the key list stay small."""
        dead = int((~self._live).sum())
        if dead < 1024 or dead < len(self._live) // 4:
            return
        remap = (np.cumsum(self._live) - 1).astype(np.int32)
        self._main.slots = remap[self._main.slots]
        self._key_of_slot = [k for k, alive in zip(self._key_of_slot, self._live, strict=True)
                             if alive]
        self._slot_of = {k: i for i, k in enumerate(self._key_of_slot)}
        self._live = np.ones(len(self._key_of_slot), dtype=bool)
