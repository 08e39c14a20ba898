"""Search a catalog of videos: frame codes propose candidates, alignment decides."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from medialayer.index.timed import Candidate, TimedCodeIndex
from medialayer.kinds.base import Segment
from medialayer.kinds.video import calibration
from medialayer.kinds.video.frames import VideoFingerprint
from medialayer.kinds.video.match import Prepared, align, prepare

CODE_RADIUS = 8
"""Frame codes within this many bits (of 64) vote for their video."""
CANDIDATES = 8
"""Most videos per query that are aligned and verified."""
STORED_CODES = (0, 2)
"""A catalog frame is found by its picture's code and its central window's (cropped copies)."""
QUERY_CODES = (0, 1)
"""A query frame looks up its picture's code and its mirror image's."""

LOOKUP_SPACING = 0.5
"""Seconds between the query frames whose codes are looked up (all frames are verified):
neighbouring frames of a dense query mostly share their codes, and lookups are most of the
cost of a search in a large catalog."""

Loader = Callable[[list[int]], Mapping[int, VideoFingerprint]]


@dataclass(frozen=True)
class VideoMatch:
    """A verified match: score and label, aligned spans, and how much of each video they cover."""

    key: int
    score: float
    confidence: str
    spans: list[Segment]
    query_share: float
    reference_share: float
    speed: float
    offset: float
    mirrored: bool


def compare(query: VideoFingerprint, reference: VideoFingerprint, key: int = -1,
            prepared: Prepared | None = None) -> VideoMatch:
    """Align two videos and score the evidence (no index involved)."""
    alignment = align(query, reference, prepared)
    value = calibration.score(alignment)
    if alignment is None:
        return VideoMatch(key, 0.0, "low", [], 0.0, 0.0, 1.0, 0.0, False)
    return VideoMatch(key, value, calibration.LABELS.label(value), alignment.spans,
                      round(alignment.query_share, 4), round(alignment.reference_share, 4),
                      round(alignment.speed, 4), round(alignment.offset, 3), alignment.mirrored)


class VideoIndex:
    """Every tenant's videos: frame codes in memory (a tenant's integer code filters them),
    whole fingerprints read back on demand."""

    def __init__(self, load: Loader) -> None:
        self.codes = TimedCodeIndex()
        self._load = load

    def __len__(self) -> int:
        return len(self.codes)

    def nbytes(self) -> int:
        return self.codes.nbytes()

    def prepare(self) -> None:
        """Nothing is deferred: adds go straight into the code index."""

    def ready(self) -> bool:
        return True

    def add(self, key: int, fingerprint: VideoFingerprint, tenant: int = 0) -> None:
        self.add_many([(key, tenant, fingerprint)])

    def add_many(self, items: Sequence[tuple[int, int, VideoFingerprint]]) -> None:
        """Bulk `add` of (key, tenant, fingerprint): one insert into the code index."""
        self.codes.add_many([key for key, _, _ in items], [fp.times for _, _, fp in items],
                            [fp.codes[:, STORED_CODES] for _, _, fp in items],
                            [tenant for _, tenant, _ in items])

    def remove(self, key: int) -> bool:
        return self.codes.remove(key)

    def search(self, query: VideoFingerprint, top_k: int, min_score: float = 0.0,
               exclude: int | None = None, tenant: int | None = None) -> list[VideoMatch]:
        candidates = self.candidates(query, max(top_k, CANDIDATES), exclude, tenant)
        references = self._load([c.key for c in candidates])
        prepared = prepare(query)
        matches = [compare(query, references[c.key], c.key, prepared) for c in candidates
                   if c.key in references]
        matches = [m for m in matches if m.score > 0 and m.score >= min_score]
        matches.sort(key=lambda m: (-m.score, m.key))
        return matches[:top_k]


    def candidates(self, query: VideoFingerprint, top: int, exclude: int | None = None,
                   tenant: int | None = None) -> list[Candidate]:
        """The videos whose frame codes line up with the query's, most votes first."""
        rows = _spaced(query.times, LOOKUP_SPACING)
        codes = [[int(c) for c in row] for row in query.codes[rows][:, QUERY_CODES]]
        return self.codes.vote(query.times[rows].tolist(), codes, CODE_RADIUS, top, exclude,
                               tenant)


def _spaced(times: np.ndarray, spacing: float) -> np.ndarray:
    """Indices of frames at least `spacing` seconds after the previous one kept."""
    kept: list[int] = []
    last = -np.inf
    for i, t in enumerate(times.tolist()):
        if t - last >= spacing:
            kept.append(i)
            last = t
    return np.array(kept, np.int64)
