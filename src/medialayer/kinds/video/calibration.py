"""The video kind's score and confidence labels.

The score grows with the evidence along the aligned timeline: how many reference frames the
query shows and how closely. The labels are counts of frames of evidence (one for medium, two
for high); the dev corpus run (`bench/video_accuracy.py`, docs/benchmarks-video.md) checks
them against its negatives and against the look-alikes every positive query is also aligned
with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from medialayer.kinds.base import Calibration

if TYPE_CHECKING:
    from medialayer.kinds.video.match import Alignment

FLOOR, FULL = 0.6, 0.95
"""A reference frame's detail correlation counts from FLOOR (nothing) to FULL (one frame)."""
FRAMES_AT_HALF = 1.0
"""Frames of evidence at which the score reaches 0.5."""
HIGH_FRAMES, MEDIUM_FRAMES = 2.0, 1.0
"""Frames of evidence for each label. A look-alike (another part of the same wallpaper) can
show one reference frame closely by chance, never two on one timeline under one view; and a
short excerpt holds only two or three of a catalog item's keyframes, so high cannot ask for
more than two."""


def _at(frames: float) -> float:
    return round(frames / (frames + FRAMES_AT_HALF), 4)


LABELS = Calibration(high=_at(HIGH_FRAMES), medium=_at(MEDIUM_FRAMES))


def score(alignment: Alignment | None) -> float:
    """Similarity in [0, 1]: the aligned frames' evidence E, as E / (E + FRAMES_AT_HALF).

    Each reference frame on the line adds how closely the query shows it; frames that
    disagree add nothing rather than count against, since a watermark or caption can hide a
    frame's detail. A look-alike rarely lines up one frame, never several.
    """
    if alignment is None:
        return 0.0
    values = alignment.agreement[~np.isnan(alignment.agreement)]
    evidence = float(np.clip((values - FLOOR) / (FULL - FLOOR), 0, 1).sum())
    return _at(evidence)
