"""The video kind's score and confidence labels.

The score grows with the evidence along the aligned timeline: how many reference frames the
query shows and how closely.
The labels cut it where the dev corpus (`bench/video_accuracy.py`) measured no negative
(high) and at most 1 % of negatives (medium); docs/benchmarks-video.md has the run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from medialayer.kinds.base import Calibration

if TYPE_CHECKING:
    from medialayer.kinds.video.match import Alignment

LABELS = Calibration(high=0.75, medium=0.5)
FLOOR, FULL = 0.6, 0.95
"""A reference frame's detail correlation counts from FLOOR (nothing) to FULL (one frame)."""
FRAMES_AT_HALF = 1.0
"""Frames of evidence at which the score reaches 0.5."""


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
    return round(evidence / (evidence + FRAMES_AT_HALF), 4)
