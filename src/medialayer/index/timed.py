"""Candidate search over timed binary codes: frames of videos, each at a time in its media.

Every indexed code is a row of a Hamming index; the row says which media holds it and at what
time. A query's frames look up their codes, and each hit votes for (media, time offset): a copy
puts many of its frames' votes on one offset (a few neighbouring ones when it plays a little
faster or slower), whereas look-alike frames scattered over other videos do not line up.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from medialayer.index.hamming import HammingIndex
from medialayer.index.local import grown

OFFSET_BIN = 1.0
"""Seconds per offset bin; votes in neighbouring bins add up (speed changes spread them)."""


class Candidate(NamedTuple):
    key: int
    votes: int  # distinct query frames agreeing on the best offset (and its neighbours)
    offset: float  # reference time minus query time, seconds


class TimedCodeIndex:
    """64-bit codes at times in media, searched by radius and voted on by time offset.

    A media's rows stay in one array of row ids; row ids are never reused, so the per-row
    owner, tenant and time arrays only grow (16 bytes per row) while the Hamming index drops
    deleted rows itself. A media's tenant (an integer code) filters the votes: one index serves
    every tenant.
    """

    def __init__(self, bands: int = 4) -> None:
        self._codes = HammingIndex(bits=64, bands=bands)
        self._owner = np.zeros(0, np.int64)
        self._time = np.zeros(0, np.float32)
        self._tenant = np.zeros(0, np.int32)
        self._rows: dict[int, np.ndarray] = {}
        self._used = 0

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, key: object) -> bool:
        return key in self._rows

    def rows(self) -> int:
        return len(self._codes)

    def nbytes(self) -> int:
        rows = sum(r.nbytes + 100 for r in self._rows.values())  # + a dict entry and array
        arrays = self._owner.nbytes + self._time.nbytes + self._tenant.nbytes
        return self._codes.nbytes() + arrays + rows

    def add(self, key: int, times: np.ndarray, codes: np.ndarray, tenant: int = 0) -> None:
        """Index `codes` (n, k): every one of the k codes of frame i stands at times[i]."""
        self.add_many([key], [times], [codes], [tenant])

    def add_many(self, keys: Sequence[int], times: Sequence[np.ndarray],
                 codes: Sequence[np.ndarray], tenants: Sequence[int] | None = None) -> None:
        """Bulk `add` (a start-up load): one insert into the Hamming index for all of them."""
        if not keys:
            return
        for key in keys:
            self.remove(key)
        sizes = [c.size for c in codes]
        total = sum(sizes)
        start = self._used
        if start + total > self._owner.size:
            capacity = max(1024, 2 * (start + total))
            self._owner = grown(self._owner, start, capacity)
            self._time = grown(self._time, start, capacity)
            self._tenant = grown(self._tenant, start, capacity)
        ids = np.arange(start, start + total, dtype=np.int64)
        self._owner[ids] = np.repeat(np.asarray(keys, np.int64), sizes)
        self._tenant[ids] = np.repeat(np.asarray(tenants or [0] * len(keys), np.int32), sizes)
        self._time[ids] = np.concatenate([np.repeat(np.asarray(t, np.float32), c.shape[1])
                                          for t, c in zip(times, codes, strict=True)])
        for key, first, size in zip(keys, np.cumsum([0, *sizes[:-1]]), sizes, strict=True):
            self._rows[key] = ids[first : first + size]
        self._used += total
        self._codes.add_many(ids, np.concatenate([c.reshape(-1) for c in codes]))

    def remove(self, key: int) -> bool:
        ids = self._rows.pop(key, None)
        if ids is None:
            return False
        for row in ids.tolist():
            self._codes.remove(row)
        return True

    def vote(self, times: Sequence[float], codes: Sequence[Sequence[int]], radius: int,
             top: int, exclude: int | None = None, tenant: int | None = None
             ) -> list[Candidate]:
        """The `top` media (of `tenant`, or of all) with the most query frames agreeing on one
        time offset.

        `codes[i]` are query frame i's codes (e.g. the frame and its mirror image): a frame
        votes once per reference row that any of them reaches within `radius` bits.
        """
        owners: list[np.ndarray] = []
        frames: list[np.ndarray] = []
        offsets: list[np.ndarray] = []
        for i, (t, frame_codes) in enumerate(zip(times, codes, strict=True)):
            hits = self._codes.radius_many(list(frame_codes), radius)
            if not hits:
                continue
            rows = np.fromiter((row for row, _ in hits), np.int64, len(hits))
            if tenant is not None:
                rows = rows[self._tenant[rows] == tenant]
                if not rows.size:
                    continue
            owners.append(self._owner[rows])
            frames.append(np.full(len(rows), i, np.int64))
            offsets.append(self._time[rows] - np.float32(t))
        if not owners:
            return []
        return _tally(np.concatenate(owners), np.concatenate(frames), np.concatenate(offsets),
                      top, exclude)


def _tally(owners: np.ndarray, frames: np.ndarray, offsets: np.ndarray, top: int,
           exclude: int | None) -> list[Candidate]:
    """Distinct voting frames per (media, offset bin), each bin counted with its neighbours."""
    keep = owners != exclude if exclude is not None else np.ones(len(owners), bool)
    bins = np.floor(offsets[keep] / OFFSET_BIN).astype(np.int64)
    triples = np.unique(np.stack([owners[keep], bins, frames[keep]], axis=1), axis=0)
    pairs, counts = np.unique(triples[:, :2], axis=0, return_counts=True)
    per_bin = {(int(o), int(b)): int(c) for (o, b), c in zip(pairs, counts, strict=True)}
    best: dict[int, tuple[int, int]] = {}
    for (owner, b), count in per_bin.items():
        votes = count + per_bin.get((owner, b - 1), 0) + per_bin.get((owner, b + 1), 0)
        if owner not in best or votes > best[owner][0]:
            best[owner] = (votes, b)
    ranked = sorted(best.items(), key=lambda kv: (-kv[1][0], kv[0]))[:top]
    return [Candidate(owner, votes, (b + 0.5) * OFFSET_BIN) for owner, (votes, b) in ranked]
