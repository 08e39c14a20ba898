"""In-memory Hamming index over binary perceptual hashes, using multi-index hashing (MIH).

Near-duplicate lookup asks "which catalog images have a hash within r bits of this one?" at
r ~ 8-10 of 64 bits. A linear scan reads every code for every query. MIH splits each code
into bands and uses the pigeonhole principle so that only a few buckets per band can hold a
match: a typical query then reads a few thousand codes instead of millions, and is still
exact (recall 1.0).

Layout: flat numpy arrays only, no per-item Python objects, so memory stays near 34 bytes
per item. A "slot" is a position in key order, a "row" one in storage order.

* ``_keys`` (sorted) and ``_dead`` are per slot: a key lookup is a binary search, so we need
  no key -> position dict (a dict costs ~100 bytes per item).
* ``_codes`` is stored in band-0 order and ``_rowslot`` maps each row back to its slot. The
  band probed widest (band 0) then needs no permutation at all, and its candidates are read
  from memory sequentially; at 10M items the random reads are most of a query's cost.
* ``_perm`` holds, for each other band, the rows ordered by that band's value (uint32).
* ``_offs`` is, for narrow bands, ``searchsorted`` precomputed for every band value: probing
  a bucket is one gather and the sorted band values need not be kept. Wide bands whose table
  would outweigh the values (e.g. ``bands=2``) keep sorted values in ``_vals`` instead.
* ``_dkeys``/``_dcodes`` is a small unsorted delta of items added since the last build. It is
  scanned on every query and folded in when it outgrows a threshold, so single adds are
  cheap without rewriting multi-megabyte tables each time.

Snapshots (``state``/``load_state``, see ``medialayer.index.snapshot``): an index loaded from
a snapshot searches the mapped tables as they are and never rewrites them, so every process
that maps them shares one copy. Its tombstones are a private mask, and items added since go
to a private index on top (``_over``), which rebuilds itself as it grows; only ``compact``
(a snapshot writer's) folds everything into new tables of its own.

Not thread-safe: concurrent readers are fine, but serialise them with writers.
"""

from __future__ import annotations

import math
import operator
import sys
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from medialayer.index.snapshot import IndexState

__all__ = ["HammingIndex"]

STATE_FORMAT = 1
"""The arrays and metadata of `HammingIndex.state`."""

_MAX_PROBES = 1 << 18  # beyond this many bucket probes a linear scan is always cheaper
_SCAN_CHUNK = 1 << 18  # keeps scan temporaries in cache instead of allocating n-sized arrays
_PLAN_CACHE_MAX = 16

Result = list[tuple[int, int]]
_I64 = npt.NDArray[np.int64]
_U64 = npt.NDArray[np.uint64]
_U8 = npt.NDArray[np.uint8]
# Probe plan for one radius: band and XOR mask of each probe, table base of its band, and
# (band, start, stop) slices of the probes of each band, band 0 first.
_Plan = tuple[npt.NDArray[np.intp], _U64, _U64, list[tuple[int, int, int]]]


def _masks(width: int, t: int) -> _U64:
    """All ``width``-bit masks with at most ``t`` bits set: the XORs that reach every band
    value within ``t`` bits of the query's band value."""
    levels = [np.zeros(1, dtype=np.uint64)]
    tops = [np.full(1, -1, dtype=np.int64)]  # highest set bit, so each combination appears once
    for _ in range(min(t, width)):
        new_m, new_t = [], []
        for j in range(width):
            src = tops[-1] < j
            new_m.append(levels[-1][src] | np.uint64(1 << j))
            new_t.append(np.full(int(src.sum()), j, dtype=np.int64))
        levels.append(np.concatenate(new_m))
        tops.append(np.concatenate(new_t))
    return np.concatenate(levels)


def _probe_count(width: int, t: int) -> int:
    return sum(math.comb(width, i) for i in range(min(t, width) + 1)) if t >= 0 else 0


def _argsort_keys(keys: _I64) -> npt.NDArray[np.intp] | None:
    """Stable argsort of int64 keys, or None if they are already sorted.

    numpy's stable argsort of int64 is a timsort: fine for already-sorted ids (the usual
    start-up load) but ~1.5 s for 10M shuffled ids. When the id span leaves room, packing
    (id, position) into one uint64 lets the vectorised np.sort do it in about 2/3 of that.
    """
    n = keys.size
    if n < 2 or bool(np.all(keys[1:] >= keys[:-1])):
        return None
    lo = int(keys.min())
    span = int(keys.max()) - lo
    pos_bits = (n - 1).bit_length()
    if span >> (64 - pos_bits):
        return np.argsort(keys, kind="stable")
    packed = (keys - lo).view(np.uint64)  # in place from here: big temporaries are slow
    packed <<= np.uint64(pos_bits)
    packed |= np.arange(n, dtype=np.uint64)
    packed.sort()
    packed &= np.uint64((1 << pos_bits) - 1)
    return packed.view(np.int64)


def _argsort_band(v: np.ndarray, width: int) -> npt.NDArray[np.intp]:
    """Stable argsort of band values; numpy only radix-sorts <= 16-bit ints, so wider bands
    are sorted as two 16-bit digits (LSD radix) instead of by a timsort."""
    if width <= 16 or width > 32:
        return np.argsort(v, kind="stable")
    order = np.argsort((v & 0xFFFF).astype(np.uint16), kind="stable")
    high = (v[order] >> 16).astype(np.uint16)
    return order[np.argsort(high, kind="stable")]


def _popcount_min(codes: _U64, queries: _U64) -> _U8:
    """Distance to the nearest of several queries (an image and its mirror count as one)."""
    d: _U8 = np.bitwise_count(codes ^ queries[0])
    for q in queries[1:]:
        np.minimum(d, np.bitwise_count(codes ^ q), out=d)
    return d


class HammingIndex:
    """Exact radius and k-nearest-neighbour search over ``bits``-bit codes keyed by int64 ids.

    ``bands`` trades probes against bucket size; the best value is about ``bits / log2(n)``:
    4 for 64-bit codes up to a few million items, 3 from ~5M (see docs/benchmarks-index.md).
    """

    def __init__(self, bits: int = 64, bands: int = 4) -> None:
        if not 1 <= bits <= 64:
            raise ValueError("bits must be in 1..64: codes are stored as uint64")
        if not 1 <= bands <= bits:
            raise ValueError("bands must be in 1..bits")
        self.bits = bits
        self.bands = bands
        self._widths = [bits // bands + (b < bits % bands) for b in range(bands)]
        self._shifts = [sum(self._widths[:b]) for b in range(bands)]
        self._fields = [(s, (1 << w) - 1) for w, s in zip(self._widths, self._shifts, strict=True)]
        tsizes = [(1 << w) + 1 for w in self._widths]
        self._tbase = [sum(tsizes[:b]) for b in range(bands)]
        self._tsize = sum(tsizes)
        # Tuning knobs, instance attributes so that tests can force each code path.
        self._table_max_bits = 16  # offset tables for bands this narrow whatever the size
        self._delta_min = 4096  # smallest delta worth a rebuild
        self._delta_frac = 0.01  # ... or 1 % of the built size, so rebuilds amortise
        self._delta_cap = 32768  # ... but never so big that scanning it dominates a query
        self._dead_frac = 0.25  # tombstones beyond this share of rows waste memory and time
        self._scan_frac = 0.04  # MIH costs ~20x a scan per row touched; see _mih_worthwhile
        # kNN may learn nothing from a radius step (random-looking codes have their 5th
        # neighbour ~18 bits away), so it only takes cheap steps before scanning: this caps
        # the wasted work at about a third of a scan.
        self._knn_frac = 0.01
        self._plans: dict[tuple[bool, int], _Plan] = {}
        self._allocs: dict[int, tuple[list[int], int, float]] = {}
        self._dkeys = np.empty(0, np.int64)
        self._dcodes = np.empty(0, np.uint64)
        self._dn = 0
        self._vals: list[np.ndarray] = []
        self._over: HammingIndex | None = None
        """Items added since a snapshot was loaded; the loaded tables are then never rebuilt."""
        self._build(np.empty(0, np.int64), np.empty(0, np.uint64))

    # ------------------------------------------------------------------ public API

    def add(self, key: int, code: int) -> None:
        """Insert or replace one item; it goes to the delta so the big tables stay untouched."""
        key = self._check_key(key)
        code = self._check_code(code)
        slot = self._live_slot(key)
        if slot >= 0:
            self._dead[slot] = True
            self._ndead += 1
        if self._over is not None:
            self._over.add(key, code)
            return
        j = self._delta_pos(key)
        if j >= 0:
            self._dcodes[j] = code
            return
        if self._dn == self._dkeys.size:
            cap = max(16, 2 * self._dn)
            self._dkeys = np.resize(self._dkeys, cap)
            self._dcodes = np.resize(self._dcodes, cap)
        self._dkeys[self._dn] = key
        self._dcodes[self._dn] = code
        self._dn += 1
        self._maybe_rebuild()

    def add_many(self, keys: npt.ArrayLike, codes: npt.ArrayLike) -> None:
        """Bulk insert/replace; the last occurrence of a repeated key wins, as with ``add``.

        Vectorised end to end so that a start-up load of millions of rows is a few sorts.
        """
        k = np.asarray(keys)
        c = np.asarray(codes)
        if k.ndim != 1 or c.shape != k.shape:
            raise ValueError("keys and codes must be 1-D arrays of equal length")
        if k.size == 0:
            return
        k = self._check_int_array(k, "keys", np.int64, -(1 << 63), (1 << 63) - 1)
        c = self._check_int_array(c, "codes", np.uint64, 0, (1 << self.bits) - 1)
        order = _argsort_keys(k)
        if order is not None:
            k = k[order]
            c = c[order]
        else:  # the index keeps these arrays, so it must not share the caller's memory
            k = k.copy()
            c = c.copy()
        dup = k[1:] == k[:-1]
        if dup.any():  # the sort is stable, so the last of each run was added last
            last = np.append(~dup, True)
            k = k[last]
            c = c[last]
        n = self._keys.size
        if n:
            slots = np.minimum(np.searchsorted(self._keys, k), n - 1)
            slots = slots[(self._keys[slots] == k) & ~self._dead[slots]]
            self._dead[slots] = True
            self._ndead += int(slots.size)
        if self._over is not None:
            self._over.add_many(k, c)
            return
        if self._dn:
            keep = ~np.isin(self._dkeys[: self._dn], k)
            self._dkeys = self._dkeys[: self._dn][keep]
            self._dcodes = self._dcodes[: self._dn][keep]
            self._dn = int(self._dkeys.size)
        if self._dn + k.size > self._delta_limit():
            self._rebuild(k, c)
            return
        self._dkeys = np.concatenate([self._dkeys[: self._dn], k])
        self._dcodes = np.concatenate([self._dcodes[: self._dn], c])
        self._dn = int(self._dkeys.size)
        self._maybe_rebuild()

    def remove(self, key: int) -> bool:
        """Tombstone rather than delete: deleting from the sorted tables is O(n)."""
        try:
            key = self._check_key(key)
        except (TypeError, ValueError):
            return False
        slot = self._live_slot(key)
        if slot >= 0:
            self._dead[slot] = True
            self._ndead += 1
            self._maybe_rebuild()
            return True
        j = self._delta_pos(key)
        if j >= 0:  # the delta is unordered, so fill the hole with its last item
            last = self._dn - 1
            self._dkeys[j] = self._dkeys[last]
            self._dcodes[j] = self._dcodes[last]
            self._dn = last
            return True
        return self._over is not None and self._over.remove(key)

    def radius(self, code: int, r: int) -> Result:
        """All live items within ``r`` bits, nearest first (ties by key, for stable output)."""
        qs = np.array([self._check_code(code)], dtype=np.uint64)
        keys, dist, _ = self._search(qs, self._check_radius(r))
        return self._sorted(keys, dist)

    def radius_many(self, codes: Sequence[int], r: int) -> Result:
        """Like ``radius`` for the union of several query codes (e.g. an image and its
        mirror), keeping each key once at its best distance; one pass shares the work."""
        r = self._check_radius(r)
        if len(codes) == 0:
            return []
        qs = np.array([self._check_code(c) for c in codes], dtype=np.uint64)
        keys, dist, _ = self._search(qs, r)
        return self._sorted(keys, dist)

    def knn(self, code: int, k: int, max_radius: int | None = None) -> Result:
        """The ``k`` nearest live items (ties by key), exact.

        Grows the radius one bit per band at a time, because near-duplicates are usually
        within a few bits and a small radius is far cheaper than a scan; once a step would
        cost a sizeable share of a scan it does one vectorised scan instead.
        """
        q = self._check_code(code)
        if operator.index(k) < 0:
            raise ValueError("k must be >= 0")
        cap = self.bits if max_radius is None else self._check_radius(max_radius)
        if k == 0 or len(self) == 0:
            return []
        qs = np.array([q], dtype=np.uint64)
        r = 0
        while True:
            r = min(r, cap)
            if not self._mih_worthwhile(r, self._knn_frac):
                break
            keys, dist, scanned = self._search(qs, r)
            if keys.size >= k or r == cap:
                return self._sorted(keys, dist)[:k]
            if scanned:  # clustered codes: the next radius would scan as well
                break
            r += self.bands
        return self._knn_scan(q, k, cap)

    def compact(self) -> None:
        """Reclaim tombstoned rows and fold the delta in, e.g. after a bulk delete."""
        self._rebuild(np.empty(0, np.int64), np.empty(0, np.uint64))

    def __len__(self) -> int:
        over = len(self._over) if self._over is not None else 0
        return self._keys.size - self._ndead + self._dn + over

    def __contains__(self, key: object) -> bool:
        try:
            k = self._check_key(key)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return False
        return (self._live_slot(k) >= 0 or self._delta_pos(k) >= 0
                or (self._over is not None and k in self._over))

    def nbytes(self) -> int:
        """Bytes held by the index's arrays, including delta slack and cached probe plans
        (mapped tables of a snapshot included, though processes share them)."""
        arrays = [self._codes, self._keys, self._dead, self._rowslot, self._perm, self._offs]
        arrays += [*self._vals, self._dkeys, self._dcodes]
        for band, mask, base, _ in self._plans.values():
            arrays += [band, mask, base]
        over = self._over.nbytes() if self._over is not None else 0
        return sum(a.nbytes for a in arrays) + over

    # ------------------------------------------------------------------ snapshots

    def state(self) -> IndexState:
        """The tables as flat arrays for a snapshot. Tombstones, the delta and the items on
        top of a loaded snapshot are folded in first (`compact`): a write."""
        if self._ndead or self._dn or self._over is not None:
            self.compact()
        arrays = {"keys": self._keys, "codes": self._codes, "rowslot": self._rowslot,
                  "perm": self._perm}
        if self._table:
            arrays["offs"] = self._offs
        else:
            arrays.update({f"vals{b}": v for b, v in enumerate(self._vals)})
        return IndexState(arrays, {"format": STATE_FORMAT, "bits": self.bits,
                                   "bands": self.bands, "table": self._table,
                                   "items": int(self._keys.size)})

    def load_state(self, state: IndexState) -> None:
        """Take the tables of `state` (from `state`, e.g. mapped read-only from a snapshot)
        as the built items, without copying them: they are only read from now on."""
        meta, arrays = state.meta, state.arrays
        if len(self):
            raise ValueError("only an empty index can take a state")
        found = {k: meta.get(k) for k in ("format", "bits", "bands")}
        wanted = {"format": STATE_FORMAT, "bits": self.bits, "bands": self.bands}
        if found != wanted:
            raise ValueError(f"the state is of an index with {found}, not {wanted}")
        n, table = int(meta["items"]), bool(meta["table"])
        shapes = {"keys": (np.int64, n), "codes": (np.uint64, n), "rowslot": (np.uint32, n),
                  "perm": (np.uint32, (self.bands - 1) * n)}
        if table:
            odtype = np.uint32 if self.bands * n < 1 << 32 else np.int64
            shapes["offs"] = (odtype, self._tsize)
        else:
            shapes.update({f"vals{b}": (np.min_scalar_type((1 << w) - 1).type, n)
                           for b, w in enumerate(self._widths)})
        for name, (dtype, size) in shapes.items():
            a = arrays.get(name)
            if a is None or a.dtype != dtype or a.shape != (size,):
                raise ValueError(f"the state's {name!r} is not {size} x {np.dtype(dtype)}")
        self._table = table
        self._keys, self._codes = arrays["keys"], arrays["codes"]
        self._rowslot, self._perm = arrays["rowslot"], arrays["perm"]
        self._offs = arrays["offs"] if table else np.empty(0, np.uint32)
        self._vals = [] if table else [arrays[f"vals{b}"] for b in range(self.bands)]
        self._dead = np.zeros(n, dtype=bool)
        self._ndead = 0
        self._over = HammingIndex(self.bits, self.bands)

    # ------------------------------------------------------------------ validation

    def _check_code(self, code: int) -> int:
        c = operator.index(code)
        if not 0 <= c < (1 << self.bits):
            raise ValueError(f"code must be an unsigned {self.bits}-bit integer")
        return c

    @staticmethod
    def _check_key(key: int) -> int:
        k = operator.index(key)
        if not -(1 << 63) <= k < (1 << 63):
            raise ValueError("key must fit in int64")
        return k

    def _check_radius(self, r: int) -> int:
        r = operator.index(r)
        if r < 0:
            raise ValueError("radius must be >= 0")
        return min(r, self.bits)

    @staticmethod
    def _check_int_array(a: np.ndarray, name: str, dtype: type, lo: int, hi: int) -> np.ndarray:
        if a.dtype.kind not in "iu":
            if a.dtype.kind != "O":
                raise ValueError(f"{name} must be integers")
            a = np.array([operator.index(x) for x in a], dtype=object)
        if a.size and (a.min() < lo or a.max() > hi):  # before the cast, which would wrap
            raise ValueError(f"{name} out of range [{lo}, {hi}]")
        return a.astype(dtype, copy=False)

    # ------------------------------------------------------------------ storage

    def _band(self, codes: _U64, b: int) -> np.ndarray:
        w, s = self._widths[b], self._shifts[b]
        if w in (8, 16) and s % w == 0 and sys.byteorder == "little":
            # Byte-aligned band: read it through a view instead of shift/mask/cast passes.
            return np.ascontiguousarray(codes.view(f"u{w // 8}")[s // w :: 64 // w])
        v = (codes >> np.uint64(s)) & np.uint64((1 << w) - 1)
        return v.astype(np.min_scalar_type((1 << w) - 1))

    def _build(self, keys: _I64, codes: _U64) -> None:
        """Index ``codes``; ``keys`` must be sorted and unique, and the arrays owned by us."""
        n = keys.size
        if n >= 1 << 32:
            raise ValueError("at most 2**32 - 1 items: rows are stored as uint32")
        # Offset tables beat sorted band values on speed, and on memory once n is large
        # enough: e.g. 3 bands of 21-22 bits at 10M items (16 MiB per band vs 40 MiB).
        val_bytes = n * sum(np.min_scalar_type((1 << w) - 1).itemsize for w in self._widths)
        self._table = max(self._widths) <= self._table_max_bits or 4 * self._tsize <= val_bytes
        odtype = np.uint32 if self.bands * n < 1 << 32 else np.int64
        self._offs = np.empty(self._tsize if self._table else 0, dtype=odtype)
        self._vals = []
        self._keys = keys
        self._dead = np.zeros(n, dtype=bool)
        self._ndead = 0
        self._perm = np.empty((self.bands - 1) * n, dtype=np.uint32)
        v = self._band(codes, 0)
        order = _argsort_band(v, self._widths[0])
        self._rowslot = order.astype(np.uint32)
        self._codes = codes[order]
        for b in range(self.bands):
            if b:
                v = self._band(self._codes, b)
                order = _argsort_band(v, self._widths[b])
                self._perm[(b - 1) * n : b * n] = order
            if self._table:
                # Band b's buckets live at [b*n, (b+1)*n) of one virtual array: rows
                # themselves for band 0, _perm[i - n] for the others.
                w = self._widths[b]
                seg = self._offs[self._tbase[b] : self._tbase[b] + (1 << w) + 1]
                seg[0] = 0
                np.cumsum(np.bincount(v, minlength=1 << w), out=seg[1:], dtype=odtype)
                np.add(seg, b * n, out=seg, casting="unsafe")
            else:
                self._vals.append(v[order])

    def _rebuild(self, extra_keys: _I64, extra_codes: _U64) -> None:
        """Merge live items, the delta and ``extra`` into new tables.

        ``extra`` must be sorted, unique and disjoint from the other two. Merging sorted runs
        instead of re-sorting everything keeps a rebuild of 10M items around a second.
        """
        keys, codes = self._merged(extra_keys, extra_codes)
        self._dkeys = np.empty(0, np.int64)
        self._dcodes = np.empty(0, np.uint64)
        self._dn = 0
        self._over = None
        self._build(keys, codes)

    def _merged(self, extra_keys: _I64, extra_codes: _U64) -> tuple[_I64, _U64]:
        """Live items, the delta, the items on top and ``extra`` in key order."""
        keys = self._keys
        codes = np.empty(self._codes.size, np.uint64)
        codes[self._rowslot] = self._codes  # back to key order
        if self._ndead:
            live = ~self._dead
            keys, codes = keys[live], codes[live]
        new_keys, new_codes = [extra_keys], [extra_codes]
        if self._dn:
            new_keys.append(self._dkeys[: self._dn])
            new_codes.append(self._dcodes[: self._dn])
        if self._over is not None:
            over_keys, over_codes = self._over._merged(extra_keys[:0], extra_codes[:0])
            new_keys.append(over_keys)
            new_codes.append(over_codes)
        added_keys, added_codes = np.concatenate(new_keys), np.concatenate(new_codes)
        if len(new_keys) > 1:
            order = _argsort_keys(added_keys)
            if order is not None:
                added_keys, added_codes = added_keys[order], added_codes[order]
        if not keys.size:
            return added_keys, added_codes
        if added_keys.size:
            at = np.searchsorted(keys, added_keys)
            keys = np.insert(keys, at, added_keys)
            codes = np.insert(codes, at, added_codes)
        return keys, codes

    def _delta_limit(self) -> int:
        return max(self._delta_min, min(self._delta_cap, int(self._keys.size * self._delta_frac)))

    def _maybe_rebuild(self) -> None:
        if self._over is not None:  # loaded tables stay as they are (shared)
            return
        too_dead = self._ndead > self._dead_frac * self._keys.size
        if self._dn > self._delta_limit() or too_dead:
            self._rebuild(np.empty(0, np.int64), np.empty(0, np.uint64))

    def _live_slot(self, key: int) -> int:
        i = int(np.searchsorted(self._keys, key))
        if i < self._keys.size and self._keys[i] == key and not self._dead[i]:
            return i
        return -1

    def _delta_pos(self, key: int) -> int:
        if not self._dn:
            return -1
        hits = np.flatnonzero(self._dkeys[: self._dn] == key)
        return int(hits[0]) if hits.size else -1

    # ------------------------------------------------------------------ search

    def _alloc(self, r: int) -> tuple[list[int], int, float]:
        """Per-band probe radius t_b (-1: band not probed) with sum(t_b + 1) = r + 1; also
        the probe count and the expected share of items those probes reach.

        Generalised pigeonhole: an item that differs in more than t_b bits in every band
        differs in at least sum(t_b + 1) > r bits overall, so probing each band within t_b
        bits is exact. floor(r / bands) in every band satisfies this too, but spreading
        exactly r + 1 units (e.g. 2,1,1,1 for r=8) probes ~3x fewer buckets. Greedy on the
        expected candidates each extra unit adds is optimal because that cost is convex;
        ties go to band 0, whose candidates are the cheapest to read.
        """
        if r in self._allocs:
            return self._allocs[r]
        units = [0] * self.bands
        for _ in range(r + 1):
            cost = [
                math.comb(w, u) / (1 << w) if u <= w else math.inf
                for w, u in zip(self._widths, units, strict=True)
            ]
            units[cost.index(min(cost))] += 1
        alloc = [u - 1 for u in units]
        widths = self._widths
        probes = sum(_probe_count(w, t) for w, t in zip(widths, alloc, strict=True))
        frac = sum(_probe_count(w, t) / (1 << w) for w, t in zip(widths, alloc, strict=True))
        self._allocs[r] = (alloc, probes, frac)
        return self._allocs[r]

    def _mih_worthwhile(self, r: int, scan_frac: float | None = None) -> bool:
        """Expected MIH work (probes plus candidates, for uniform codes) vs. a full scan.

        A probe or candidate costs ~20x a scanned row (random reads vs. streaming
        popcounts), hence the ``_scan_frac`` threshold.
        """
        n = self._keys.size
        _, probes, frac = self._alloc(r)
        limit = (self._scan_frac if scan_frac is None else scan_frac) * n
        return probes <= _MAX_PROBES and probes + frac * n <= limit

    def _plan(self, r: int) -> _Plan:
        """Probe masks for radius ``r``, computed once: per query it is then one XOR."""
        plan = self._plans.get((self._table, r))
        if plan is not None:
            return plan
        if len(self._plans) >= _PLAN_CACHE_MAX:
            self._plans.clear()
        parts = [(b, _masks(self._widths[b], t)) for b, t in enumerate(self._alloc(r)[0]) if t >= 0]
        band = np.concatenate([np.full(m.size, b, dtype=np.intp) for b, m in parts])
        mask = np.concatenate([m for _, m in parts])
        base = np.asarray(self._tbase, dtype=np.uint64)[band]
        sizes = np.cumsum([0] + [m.size for _, m in parts]).tolist()
        splits = [(b, sizes[i], sizes[i + 1]) for i, (b, _) in enumerate(parts)]
        plan = (band, mask, base, splits)
        self._plans[(self._table, r)] = plan
        return plan

    def _ranges(self, qs: _U64, r: int) -> tuple[_I64, _I64, int]:
        """[start, end) in the virtual band array of every bucket in the probe set, and how
        many leading ranges are band 0's (their positions are rows)."""
        band, mask, base, splits = self._plan(r)
        qv = np.array([[(int(q) >> s) & m for s, m in self._fields] for q in qs], np.uint64)
        n0 = (splits[0][2] if splits[0][0] == 0 else 0) * qs.size
        if self._table:
            ids = (qv[:, band] ^ mask) + base
            ids = ids.T.ravel()  # probe-major, so band 0's ranges come first for every query
            return self._offs[ids].astype(np.int64), self._offs[ids + 1].astype(np.int64), n0
        n = self._keys.size
        starts, ends = [], []
        for b, lo, hi in splits:
            vals = self._vals[b]
            probes = (mask[lo:hi, None] ^ qv[:, b]).ravel().astype(vals.dtype)
            starts.append(np.searchsorted(vals, probes, "left") + b * n)
            ends.append(np.searchsorted(vals, probes, "right") + b * n)
        return np.concatenate(starts), np.concatenate(ends), n0

    def _search(self, qs: _U64, r: int) -> tuple[_I64, _U8, bool]:
        """Live keys within ``r`` of any query, with their best distance (unordered), and
        whether the built items were scanned rather than probed."""
        keys, dist, scanned = self._search_main(qs, r)
        if self._dn:
            dd = _popcount_min(self._dcodes[: self._dn], qs)
            hit = np.flatnonzero(dd <= r)
            keys = np.concatenate([keys, self._dkeys[hit]])
            dist = np.concatenate([dist, dd[hit]])
        if self._over is not None and len(self._over):
            over_keys, over_dist, _ = self._over._search(qs, r)
            keys = np.concatenate([keys, over_keys])
            dist = np.concatenate([dist, over_dist])
        return keys, dist, scanned

    def _search_main(self, qs: _U64, r: int) -> tuple[_I64, _U8, bool]:
        n = self._keys.size
        if n == 0:
            return np.empty(0, np.int64), np.empty(0, np.uint8), False
        if not self._mih_worthwhile(r):
            return *self._scan(qs, r), True
        starts, ends, n0 = self._ranges(qs, r)
        lengths = ends - starts
        total = int(lengths.sum())
        if total > self._scan_frac * n:  # skewed buckets (clustered codes): scan instead
            return *self._scan(qs, r), True
        # Flatten the [start, end) ranges into one index array without a Python loop.
        shift = np.cumsum(lengths)
        shift -= lengths
        shift -= starts
        rows = np.arange(total, dtype=np.int64)
        rows -= np.repeat(shift, lengths)
        c0 = int(lengths[:n0].sum())
        if c0 < total:  # other bands' positions index _perm (offset by n) rather than rows
            rest = rows[c0:]
            rest -= n
            rows[c0:] = self._perm[rest]
        dist = _popcount_min(self._codes[rows], qs)
        hit = np.flatnonzero(dist <= r)
        slots = self._rowslot[rows[hit]]
        dist = dist[hit]
        if self._ndead:
            live = np.flatnonzero(~self._dead[slots])
            slots = slots[live]
            dist = dist[live]
        if slots.size > 1 and (qs.size > 1 or len(self._plan(r)[3]) > 1):
            slots, first = np.unique(slots, return_index=True)  # found in several bands
            dist = dist[first]
        return self._keys[slots], dist, False

    def _scan(self, qs: _U64, r: int) -> tuple[_I64, _U8]:
        slots_parts, dist_parts = [], []
        for lo in range(0, self._keys.size, _SCAN_CHUNK):
            d = _popcount_min(self._codes[lo : lo + _SCAN_CHUNK], qs)
            hit = np.flatnonzero(d <= r)
            slots = self._rowslot[lo + hit]
            if self._ndead:
                live = np.flatnonzero(~self._dead[slots])
                hit, slots = hit[live], slots[live]
            slots_parts.append(slots)
            dist_parts.append(d[hit])
        return self._keys[np.concatenate(slots_parts)], np.concatenate(dist_parts)

    def _knn_scan(self, q: int, k: int, cap: int) -> Result:
        """Exact kNN in one pass over all items.

        Keeps only items within the best k-th distance seen so far; the first block is small
        so that bound is tight before the big blocks, and there is no n-sized sort.
        """
        qs = np.array([q], dtype=np.uint64)
        n = self._keys.size
        bound = cap
        keys = np.empty(0, np.int64)
        dist = np.empty(0, np.uint8)
        blocks = [(-1, 0), (0, min(n, 4096))]  # the delta, then the built rows
        blocks += [(lo, lo + _SCAN_CHUNK) for lo in range(4096, n, _SCAN_CHUNK)]
        for lo, hi in blocks:
            if lo < 0:
                d = _popcount_min(self._dcodes[: self._dn], qs)
                hit = np.flatnonzero(d <= bound)
                block_keys = self._dkeys[hit]
            else:
                d = _popcount_min(self._codes[lo:hi], qs)
                hit = np.flatnonzero(d <= bound)
                slots = self._rowslot[lo + hit]
                if self._ndead:
                    live = np.flatnonzero(~self._dead[slots])
                    hit, slots = hit[live], slots[live]
                block_keys = self._keys[slots]
            if not hit.size:
                continue
            keys = np.concatenate([keys, block_keys])
            dist = np.concatenate([dist, d[hit]])
            if dist.size >= k:
                bound = min(bound, int(np.partition(dist, k - 1)[k - 1]))
                keep = np.flatnonzero(dist <= bound)
                keys, dist = keys[keep], dist[keep]
        found = self._sorted(keys, dist)[:k]
        if self._over is not None and len(self._over):
            found = sorted(found + self._over.knn(q, k, bound), key=lambda kd: (kd[1], kd[0]))
        return found[:k]

    @staticmethod
    def _sorted(keys: _I64, dist: _U8) -> Result:
        order = np.lexsort((keys, dist))
        return list(zip(keys[order].tolist(), dist[order].tolist(), strict=True))
