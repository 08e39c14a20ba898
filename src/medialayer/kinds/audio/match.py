"""Offset-histogram voting over the postings, per candidate and per query scale, then the
aligned segments and a calibrated score.

A copy of catalog audio shares many hashes with it at one consistent time offset (after the
query's rescaling, offset = reference time - scale x query time); unrelated audio shares a few
hashes at scattered offsets. So each (scale, item, offset bin) counts its hits and the best bin
is the evidence. Two staggered grids of bins keep a true offset on a bin edge from splitting its
votes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from medialayer.index.postings import Hits, PostingsIndex
from medialayer.kinds.audio import calibration
from medialayer.kinds.audio.landmarks import (
    FRAME_SECONDS,
    HASH_BITS,
    Landmarks,
    Peaks,
    Scale,
    query_landmarks,
    query_scales,
    reference_landmarks,
)
from medialayer.kinds.base import Segment

SPEEDS = (0.97, 0.985, 1.0, 1.015, 1.03)
"""Speeds the query is tried at: each covers about +-0.75 %, so together +-3.75 %."""
SCALES = query_scales(SPEEDS)
OFFSET_BIN = 4
"""Frames per offset bin (80 ms): wide enough for a speed between two tried scales over a few
seconds, narrow enough that chance hits rarely pile up in one."""
CANDIDATES = 20
"""Items per query whose alignment is worked out (the best by raw votes)."""
COMMON_HASH = 256
"""Postings above which a hash is ignored: it sits in so many places that its hits only add
noise and time (a large catalog's most common hashes, from steady tones and silence edges)."""
SEGMENT_GAP = 3.0
"""Seconds without an aligned hit that end a segment."""


@dataclass(frozen=True)
class AudioMatch:
    """One catalog item's best alignment with the query."""

    key: int
    score: float
    votes: int
    speed: float  # query time x speed = reference time
    pitch: float  # query frequency x pitch = reference frequency
    offset: float  # seconds: reference time at query time 0
    covered: float  # share of the query's duration spanned by segments
    segments: list[Segment] = field(default_factory=list)


@dataclass(frozen=True)
class _Votes:
    """The query's hits in the index, each with its scale and its time offset."""

    hits: Hits
    scales: np.ndarray  # scale index per hit
    query_times: np.ndarray  # frames, rescaled
    offsets: np.ndarray  # frames

    def of(self, mask: np.ndarray) -> _Votes:
        return _Votes(self.hits.where(mask), self.scales[mask], self.query_times[mask],
                      self.offsets[mask])


def search(index: PostingsIndex, query: Peaks, lengths: Mapping[int, float], top_k: int,
           tenant: int | None = None, exclude: int | None = None) -> list[AudioMatch]:
    """The `top_k` best-aligned catalog items for the query's peaks, best first; `lengths`
    gives each item's duration in seconds.

    In a large catalog the query's rarest hashes are tried first, at every scale: its common
    hashes bring a great many postings, nearly all of them chance hits, while a copy shares
    rare and common hashes alike, so its hits still pile up in one offset bin among the few
    chance hits of the rare ones. The candidates found are aligned and scored on all their hits
    at the scales they were found at, as if every hash had been looked up. A `high` match ends
    the search there; otherwise (no copy, a weak one, or one whose landmarks all sit among
    common hashes) every hash is looked up, as a small catalog's always are.
    """
    landmarks = query_landmarks(query, SCALES)
    counts = index.counts(landmarks.hashes)
    usable = np.flatnonzero(counts <= COMMON_HASH)
    rarest = _rarest(usable, counts[usable])
    if len(rarest) < len(usable):
        found = _search(index, landmarks, query.seconds, lengths, top_k, tenant, exclude,
                        rarest, usable)
        if found and calibration.confidence(found[0].score) == "high":
            return found
    return _search(index, landmarks, query.seconds, lengths, top_k, tenant, exclude, usable)


def _search(index: PostingsIndex, landmarks: Landmarks, query_seconds: float,
            lengths: Mapping[int, float], top_k: int, tenant: int | None,
            exclude: int | None, chosen: np.ndarray, usable: np.ndarray | None = None
            ) -> list[AudioMatch]:
    """The search by the query's hashes at positions `chosen`; when they are a sample of the
    `usable` ones, an item is a candidate at SAMPLED_VOTES, and the candidates are aligned on
    their hits of every usable hash at their scales."""
    hits = index.lookup(landmarks.hashes[chosen], tenant, COMMON_HASH).placed(chosen)
    votes = _votes(landmarks, hits)
    least = calibration.MIN_VOTES if usable is None else SAMPLED_VOTES
    best = _best_bins(votes, exclude, least)[: max(CANDIDATES, top_k)]
    if not best:
        return []
    keys = np.array(sorted({key for key, _, _, _ in best}), np.int32)
    if usable is not None:
        scales = np.isin(landmarks.scales[usable], [scale for _, scale, _, _ in best])
        wanted = usable[scales]
        hits = index.lookup(landmarks.hashes[wanted], tenant, COMMON_HASH, keys).placed(wanted)
        votes = _votes(landmarks, hits)
        best = _best_bins(votes, exclude)
    mine = votes.of(np.isin(votes.hits.keys, keys))
    matches = [_align(key, scale, bin_, grid, mine, query_seconds, lengths.get(key, 0.0))
               for key, scale, bin_, grid in best]
    found = [m for m in matches if m.score > 0]
    found.sort(key=lambda m: (-m.score, m.key))
    return found[:top_k]


def _rarest(hashes: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The hashes (positions in the query) with the fewest postings, as many as
    SELECTED_HITS postings allow, in query order; all of them if they fit."""
    if int(counts.sum()) <= SELECTED_HITS:
        return hashes
    order = np.argsort(counts, kind="stable")
    taken = int(np.searchsorted(np.cumsum(counts[order]), SELECTED_HITS, side="right"))
    return np.sort(hashes[order[:taken]])


SELECTED_HITS = 1 << 16
"""Postings of the rarest query hashes that candidates are chosen by: as many as one exact
count of offset bins takes (SORTED_VOTES)."""
SAMPLED_VOTES = 2
"""Hits in one offset bin that make an item a candidate when only the rarest hashes were looked
up: a weak copy may show few of its hits among them, while so few chance hits over so many
bins seldom put two in one."""


def _votes(landmarks: Landmarks, hits: Hits) -> _Votes:
    query_times = landmarks.times[hits.query]
    return _Votes(hits, landmarks.scales[hits.query], query_times, hits.times - query_times)


def compare(query: Peaks, reference: Peaks) -> AudioMatch | None:
    """The best alignment of two fingerprints, or None if they share no aligned evidence."""
    index = PostingsIndex(HASH_BITS)
    landmarks = reference_landmarks(reference)
    index.add(0, landmarks.hashes, np.rint(landmarks.times))
    found = search(index, query, {0: reference.seconds}, top_k=1)
    return found[0] if found else None


def _best_bins(votes: _Votes, exclude: int | None, least: int = calibration.MIN_VOTES
               ) -> list[tuple[int, int, int, int]]:
    """(key, scale, offset bin, grid) of each item's fullest bin holding `least` hits or more,
    fullest first.

    Offsets are cut into half-bins, so that a bin of either grid is two neighbouring half-bins:
    grid 0 bins are floor(offset / OFFSET_BIN), grid 1 bins floor(offset / OFFSET_BIN + 1/2).
    """
    if len(votes.hits) == 0:
        return []
    half = np.floor(votes.offsets * np.float32(2 / OFFSET_BIN)).astype(np.int64)
    half += 1 << _BIN_BITS  # from 0: offsets may be negative
    item = votes.hits.keys.astype(np.int64) << _SCALE_BITS | votes.scales
    if len(half) > SORTED_VOTES:
        keep = _in_full_bins(item, half, least)
        item, half = item[keep], half[keep]
    item <<= 1 + _BIN_BITS
    codes = np.concatenate([item | (half >> 1), item | (1 << _BIN_BITS) | ((half + 1) >> 1)])
    unique, counts = np.unique(codes, return_counts=True)
    full = counts >= least  # most bins hold one chance hit
    unique, counts = unique[full], counts[full]
    keys, scales, bins, grid = _decode(unique)
    order = np.lexsort((-counts, keys))  # per key, the fullest bin first
    first = np.ones(len(order), bool)
    first[1:] = keys[order][1:] != keys[order][:-1]
    best = order[first]
    best = best[np.argsort(-counts[best], kind="stable")]
    return [(int(keys[i]), int(scales[i]), int(bins[i]), int(grid[i])) for i in best
            if int(keys[i]) != exclude]


def _in_full_bins(item: np.ndarray, half: np.ndarray, least: int) -> np.ndarray:
    """Which hits lie in the fullest bins of either grid (or in a few others), found without
    sorting them all.

    A large catalog gives a query up to millions of hits. They are counted in a hashed
    histogram whose cell is a hash of the (item, scale) plus the half-bin, so that the two
    half-bins of any bin are neighbouring cells; only the hits of the fullest pairs of cells
    are then counted exactly. A collision can only add hits to a cell, so no full bin is lost.
    """
    cells = item.view(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    cells >>= np.uint64(64 - CELL_BITS)
    cells += half.view(np.uint64)
    cells &= np.uint64((1 << CELL_BITS) - 1)
    counts = np.bincount(cells.view(np.int64), minlength=1 << CELL_BITS)
    pairs = counts + np.roll(counts, -1)  # cells c and c + 1
    full = np.flatnonzero(pairs >= least)
    if len(full) > FULL_PAIRS:  # partition only these: most cells hold 0 or 1 hits
        full = full[np.argpartition(pairs[full], -FULL_PAIRS)[-FULL_PAIRS:]]
    keep = np.zeros(1 << CELL_BITS, bool)
    keep[full] = True
    keep[(full + 1) & ((1 << CELL_BITS) - 1)] = True
    kept: np.ndarray = keep[cells.view(np.int64)]
    return kept


SORTED_VOTES = 1 << 16
"""Hits up to which all bins are counted exactly (one sort)."""
CELL_BITS = 20
FULL_PAIRS = 512
"""Pairs of cells of the hashed histogram whose hits are counted exactly: many more than
CANDIDATES, as one item fills neighbouring bins and the same bin at neighbouring scales."""

_BIN_BITS = 24
_SCALE_BITS = 5


def _decode(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    bins = (codes & ((1 << _BIN_BITS) - 1)) - (1 << (_BIN_BITS - 1))  # as biased above
    rest = codes >> _BIN_BITS
    grid = rest & 1
    rest >>= 1
    return rest >> _SCALE_BITS, rest & ((1 << _SCALE_BITS) - 1), bins, grid


def _align(key: int, scale: int, bin_: int, grid: int, votes: _Votes, query_seconds: float,
           reference_seconds: float) -> AudioMatch:
    """The item's hits in its best bin become segments; their count and span, the score."""
    centre = (bin_ - 0.5 * grid + 0.5) * OFFSET_BIN
    mine = ((votes.hits.keys == key) & (votes.scales == scale)
            & (np.abs(votes.offsets - centre) <= OFFSET_BIN / 2 + 0.5))
    factor = SCALES[scale]
    offsets = votes.offsets[mine]
    times = np.sort(votes.query_times[mine] / factor.time) * FRAME_SECONDS
    offset = float(np.median(offsets)) * FRAME_SECONDS
    shorter = max(min(query_seconds, reference_seconds or query_seconds), 1e-9)
    segments = _segments(times, factor, offset, shorter)
    spanned = sum(s.query_end - s.query_start for s in segments)
    return AudioMatch(key, calibration.score(len(times), spanned / shorter), len(times),
                      factor.time, factor.freq, offset,
                      min(1.0, spanned / max(query_seconds, 1e-9)), segments)


def _segments(times: np.ndarray, scale: Scale, offset: float,
              shorter: float) -> list[Segment]:
    """Runs of aligned hits (query seconds) with no gap over SEGMENT_GAP, mapped onto the
    reference along the fitted line; each scored on its own."""
    if len(times) == 0:
        return []
    breaks = np.nonzero(np.diff(times) > SEGMENT_GAP)[0] + 1
    segments = []
    for run in np.split(times, breaks):
        start, end = float(run[0]), float(run[-1])
        segments.append(Segment(
            round(start, 3), round(end, 3), round(offset + scale.time * start, 3),
            round(offset + scale.time * end, 3),
            calibration.score(len(run), (end - start) / shorter)))
    return segments
