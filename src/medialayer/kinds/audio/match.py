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


def search(index: PostingsIndex, query: Peaks, lengths: Mapping[int, float], top_k: int,
           tenant: int | None = None, exclude: int | None = None) -> list[AudioMatch]:
    """The `top_k` best-aligned catalog items for the query's peaks, best first; `lengths`
    gives each item's duration in seconds."""
    landmarks = query_landmarks(query, SCALES)
    hits = index.lookup(landmarks.hashes, tenant, COMMON_HASH)
    query_times = landmarks.times[hits.query]
    votes = _Votes(hits, landmarks.scales[hits.query], query_times, hits.times - query_times)
    best = _best_bins(votes, exclude)
    matches = [_align(key, scale, bin_, grid, votes, query.seconds, lengths.get(key, 0.0))
               for key, scale, bin_, grid in best[: max(CANDIDATES, top_k)]]
    found = [m for m in matches if m.score > 0]
    found.sort(key=lambda m: (-m.score, m.key))
    return found[:top_k]


def compare(query: Peaks, reference: Peaks) -> AudioMatch | None:
    """The best alignment of two fingerprints, or None if they share no aligned evidence."""
    index = PostingsIndex(HASH_BITS)
    landmarks = reference_landmarks(reference)
    index.add(0, landmarks.hashes, np.rint(landmarks.times))
    found = search(index, query, {0: reference.seconds}, top_k=1)
    return found[0] if found else None


def _best_bins(votes: _Votes, exclude: int | None) -> list[tuple[int, int, int, int]]:
    """(key, scale, offset bin, grid) of each item's fullest bin, fullest first."""
    if len(votes.hits) == 0:
        return []
    keys = votes.hits.keys.astype(np.int64)
    scales = votes.scales.astype(np.int64)
    codes = np.concatenate([_code(keys, scales, np.floor(votes.offsets / OFFSET_BIN + 0.5 * grid)
                                  .astype(np.int64), grid) for grid in (0, 1)])
    unique, counts = np.unique(_fullest(codes), return_counts=True)
    keys, scales, bins, grids = _decode(unique)
    order = np.lexsort((-counts, keys))  # per key, the fullest bin first
    first = np.ones(len(order), bool)
    first[1:] = keys[order][1:] != keys[order][:-1]
    best = order[first]
    best = best[np.argsort(-counts[best], kind="stable")]
    return [(int(keys[i]), int(scales[i]), int(bins[i]), int(grids[i])) for i in best
            if int(keys[i]) != exclude and counts[i] >= calibration.MIN_VOTES]


def _fullest(codes: np.ndarray) -> np.ndarray:
    """The codes of the fullest bins (and of few others), found without sorting them all.

    A large catalog gives a query up to millions of hits; counting them in a hashed histogram
    is linear, and only the hits of its fullest cells are then counted exactly. A collision can
    only add hits to a cell, so no full bin is lost.
    """
    if len(codes) <= SORTED_VOTES:
        return codes
    cells = ((codes.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15))
             >> np.uint64(64 - CELL_BITS)).astype(np.int64)
    counts = np.bincount(cells, minlength=1 << CELL_BITS)
    full = np.flatnonzero(counts >= calibration.MIN_VOTES)
    if len(full) > FULL_CELLS:  # partition only these: most cells hold 0 or 1 hits
        full = full[np.argpartition(counts[full], -FULL_CELLS)[-FULL_CELLS:]]
    keep = np.zeros(1 << CELL_BITS, bool)
    keep[full] = True
    return codes[keep[cells]]


SORTED_VOTES = 1 << 17
"""Hits up to which all bins are counted exactly (one sort)."""
CELL_BITS = 20
FULL_CELLS = 512
"""Cells of the hashed histogram whose hits are counted exactly: many more than CANDIDATES,
as one item fills a cell in each grid and at neighbouring scales."""

_BIN_BITS = 24
_SCALE_BITS = 5


def _code(keys: np.ndarray, scales: np.ndarray, bins: np.ndarray, grid: int) -> np.ndarray:
    """(key, scale, grid, bin) packed into one int64 so one sort counts them all."""
    shifted = (bins + (1 << (_BIN_BITS - 1))) & ((1 << _BIN_BITS) - 1)
    packed: np.ndarray = (((keys << _SCALE_BITS | scales) << 1 | grid) << _BIN_BITS) | shifted
    return packed


def _decode(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    bins = (codes & ((1 << _BIN_BITS) - 1)) - (1 << (_BIN_BITS - 1))
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
