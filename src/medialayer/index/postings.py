"""An inverted index from landmark hash to (item key, time) in flat numpy arrays.

The main segment is three parallel arrays sorted by hash (12 bytes a posting), searched with
`searchsorted`; it is never modified in place. New items go to an append buffer that lookups scan
as it is; `merged()` builds the next main segment from a snapshot without touching the live one,
so the sort can run outside any lock and `install()` swaps it in. Deleted keys are filtered out of
lookups at once and dropped from the arrays at the next merge. A tenant is a filter on lookups:
each key carries a small tenant code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_PENDING = 1 << 18
"""Postings the append buffer may hold before lookups want a merge: scanning it costs a pass
over every buffered posting per query."""


DIRECTORY_MIN = 1 << 20
"""Postings from which a segment keeps a directory: the start of every hash value's range, so a
lookup is two array reads instead of a binary search through a large array (at 100M postings
the binary searches alone cost more than the whole rest of a search)."""


@dataclass(frozen=True)
class Segment:
    """Postings sorted by hash, with a directory of hash ranges when large."""

    hashes: np.ndarray  # uint32
    keys: np.ndarray  # int32
    times: np.ndarray  # int32, frames
    directory: np.ndarray | None = None  # int64 start of each hash value, then the end
    key_bound: int = 0
    """One more than the largest key."""

    @classmethod
    def empty(cls) -> Segment:
        return cls(np.zeros(0, np.uint32), np.zeros(0, np.int32), np.zeros(0, np.int32))

    @classmethod
    def build(cls, hashes: np.ndarray, keys: np.ndarray, times: np.ndarray,
              hash_bits: int = 32) -> Segment:
        order = np.argsort(hashes, kind="stable")
        return cls.of_sorted(hashes[order].astype(np.uint32), keys[order].astype(np.int32),
                             times[order].astype(np.int32), hash_bits)

    @classmethod
    def of_sorted(cls, hashes: np.ndarray, keys: np.ndarray, times: np.ndarray,
                  hash_bits: int) -> Segment:
        """A segment of arrays already sorted by hash; hashes below 2**hash_bits."""
        directory = None
        if len(hashes) >= DIRECTORY_MIN and hash_bits <= 24:
            counts = np.bincount(hashes, minlength=1 << hash_bits)
            directory = np.concatenate([[0], np.cumsum(counts)])
        return cls(hashes, keys, times, directory, int(keys.max()) + 1 if len(keys) else 0)

    def __len__(self) -> int:
        return len(self.hashes)

    def nbytes(self) -> int:
        directory = 0 if self.directory is None else self.directory.nbytes
        return self.hashes.nbytes + self.keys.nbytes + self.times.nbytes + directory

    def ranges(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[lo, hi) of each hash's postings."""
        if self.directory is not None:
            wide = hashes.astype(np.int64)
            return self.directory[wide], self.directory[wide + 1]
        distinct, inverse = np.unique(hashes, return_inverse=True)
        lo = np.searchsorted(self.hashes, distinct, side="left")[inverse]
        hi = np.searchsorted(self.hashes, distinct, side="right")[inverse]
        return lo, hi


@dataclass(frozen=True)
class Hits:
    """Postings that share a hash with the query: `query` indexes the query's hashes."""

    query: np.ndarray  # int64
    keys: np.ndarray  # int32
    times: np.ndarray  # int32

    def __len__(self) -> int:
        return len(self.keys)

    def where(self, mask: np.ndarray) -> Hits:
        return Hits(self.query[mask], self.keys[mask], self.times[mask])

    def placed(self, positions: np.ndarray) -> Hits:
        """These hits of a lookup of some of a query's hashes, the query's `positions`, as
        hits of the whole query."""
        return Hits(positions[self.query], self.keys, self.times)

    @classmethod
    def join(cls, parts: list[Hits]) -> Hits:
        if len(parts) == 1:
            return parts[0]
        return cls(np.concatenate([p.query for p in parts]),
                   np.concatenate([p.keys for p in parts]),
                   np.concatenate([p.times for p in parts]))


@dataclass(frozen=True)
class MergePlan:
    """A merged main segment and how much of the buffer it took in."""

    segment: Segment
    taken: int
    dropped: frozenset[int]


class PostingsIndex:
    """Landmark postings of many items; keys are catalog integers, tenants small codes."""

    def __init__(self, hash_bits: int = 32) -> None:
        self.hash_bits = hash_bits
        self._main = Segment.empty()
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._pending_count = 0
        self._buffer: Segment | None = None
        self._deleted: set[int] = set()
        self._deleted_array = np.zeros(0, np.int32)
        self._live: dict[int, int] = {}
        self._tenant = np.zeros(0, np.int32)

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, key: int) -> bool:
        return key in self._live

    def postings(self) -> int:
        return len(self._main) + self._pending_count

    def nbytes(self) -> int:
        pending = sum(h.nbytes + k.nbytes + t.nbytes for h, k, t in self._pending)
        return self._main.nbytes() + pending + self._tenant.nbytes

    def add(self, key: int, hashes: np.ndarray, times: np.ndarray, tenant: int = 0) -> None:
        """Buffer an item's postings; re-adding a key replaces its postings."""
        if key in self._live or key in self._deleted:
            self.remove(key)
            self.install(self.merged())  # the old postings must go before the new ones land
        self._pending.append((hashes.astype(np.uint32), np.full(len(hashes), key, np.int32),
                              times.astype(np.int32)))
        self._pending_count += len(hashes)
        self._buffer = None
        self._live[key] = len(hashes)
        self._set_tenant(key, tenant)

    def add_many(self, keys: np.ndarray, hashes: np.ndarray, times: np.ndarray,
                 tenants: np.ndarray | None = None) -> None:
        """Bulk load of keys not in the index yet (start-up): one merge for all of them.
        The arrays are per posting; `tenants` defaults to tenant 0."""
        distinct, counts = np.unique(keys, return_counts=True)
        if self._deleted.intersection(distinct.tolist()):
            self.install(self.merged())  # a deleted key's old postings go before it returns
        for key, count in zip(distinct.tolist(), counts.tolist(), strict=True):
            self._live[key] = count
        self._pending.append((hashes.astype(np.uint32), keys.astype(np.int32),
                              times.astype(np.int32)))
        self._pending_count += len(hashes)
        if len(keys):
            self._grow_tenants(int(keys.max()))
            self._tenant[keys] = 0 if tenants is None else tenants
        self.install(self.merged())

    def remove(self, key: int) -> bool:
        if self._live.pop(key, None) is None:
            return False
        self._deleted.add(key)
        self._deleted_array = np.fromiter(self._deleted, np.int32, len(self._deleted))
        return True

    def ready(self) -> bool:
        """Whether lookups can run as the index stands (the buffer is small enough to scan)."""
        return self._pending_count <= MAX_PENDING and (
            self._buffer is not None or not self._pending)

    def prepare(self) -> None:
        """Merge now if the buffer is large, else sort the buffer for lookups."""
        if self._pending_count > MAX_PENDING:
            self.install(self.merged())
        elif self._buffer is None and self._pending:
            self._buffer = Segment.build(*_concat(self._pending))

    def merged(self) -> MergePlan:
        """The next main segment from a snapshot of the live state; mutates nothing, so it can
        be computed outside the lock that `install` needs."""
        pending = list(self._pending)
        dropped = frozenset(self._deleted)
        if not pending and not dropped:
            return MergePlan(self._main, 0, dropped)
        main = self._main
        hashes, keys, times = _concat([(main.hashes, main.keys, main.times), *pending])
        if dropped:
            keep = ~np.isin(keys, np.fromiter(dropped, np.int32, len(dropped)))
            hashes, keys, times = hashes[keep], keys[keep], times[keep]
        return MergePlan(Segment.build(hashes, keys, times, self.hash_bits), len(pending),
                         dropped)

    def install(self, plan: MergePlan) -> None:
        """Swap in a merged segment; buffered items that arrived after the snapshot stay."""
        self._main = plan.segment
        self._pending = self._pending[plan.taken:]
        self._pending_count = sum(len(h) for h, _, _ in self._pending)
        self._buffer = None
        self._deleted -= plan.dropped
        self._deleted_array = np.fromiter(self._deleted, np.int32, len(self._deleted))

    def counts(self, hashes: np.ndarray) -> np.ndarray:
        """How many postings each of `hashes` has (deleted ones and every tenant's included):
        what a lookup of it would cost."""
        if self._pending and self._buffer is None:
            self.prepare()
        lo, hi = self._main.ranges(hashes)
        counts: np.ndarray = hi - lo
        if self._buffer is not None:
            lo, hi = self._buffer.ranges(hashes)
            counts += hi - lo
        return counts

    def lookup(self, hashes: np.ndarray, tenant: int | None = None,
               max_postings: int = 1 << 62, keys: np.ndarray | None = None) -> Hits:
        """Every live posting whose hash is in `hashes` (optionally of one tenant only, of
        `keys` only); hashes with over `max_postings` postings in a segment are left out."""
        if self._pending and self._buffer is None:
            self.prepare()
        wanted = None
        if keys is not None:  # a mask over every key: one read per posting, whatever `keys`
            buffered = 0 if self._buffer is None else self._buffer.key_bound
            wanted = np.zeros(max(self._main.key_bound, buffered), bool)
            wanted[keys[keys < len(wanted)]] = True
        parts = [_lookup(self._main, hashes, max_postings, wanted)]
        if self._buffer is not None:
            parts.append(_lookup(self._buffer, hashes, max_postings, wanted))
        hits = Hits.join(parts)
        if len(self._deleted_array):
            hits = hits.where(~np.isin(hits.keys, self._deleted_array))
        if tenant is not None:
            hits = hits.where(self._tenant[hits.keys] == tenant)
        return hits

    def _set_tenant(self, key: int, tenant: int) -> None:
        self._grow_tenants(key)
        self._tenant[key] = tenant

    def _grow_tenants(self, key: int) -> None:
        if key >= len(self._tenant):
            grown = np.zeros(max(1024, key + 1, len(self._tenant) * 3 // 2), np.int32)
            grown[: len(self._tenant)] = self._tenant
            self._tenant = grown


def _concat(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]))


def _lookup(segment: Segment, hashes: np.ndarray, max_postings: int,
            wanted: np.ndarray | None) -> Hits:
    """Each hash's range of postings, expanded into flat posting indices; a hash with more
    than `max_postings` postings is skipped (it is in too many items to tell any apart). With
    `wanted` (a mask over keys), only the wanted keys' postings are kept."""
    lo, hi = segment.ranges(hashes)
    counts = hi - lo
    counts[counts > max_postings] = 0
    query = np.repeat(np.arange(len(hashes)), counts)
    starts = np.repeat(lo - np.cumsum(counts) + counts, counts)
    idx = starts + np.arange(int(counts.sum()))
    found = segment.keys[idx]
    if wanted is not None:
        kept = wanted[found]
        query, idx, found = query[kept], idx[kept], found[kept]
    return Hits(query, found, segment.times[idx])
