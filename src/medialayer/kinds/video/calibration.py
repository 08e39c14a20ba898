"""The video kind's score and confidence labels.

The score grows with the evidence along the aligned timeline: how many reference frames the
query shows and how closely, discounted when frames the line maps inside the query disagree.
The labels cut it where the dev corpus (`bench/video_accuracy.py`) measured no negative
(high) and at most 1 % of negatives (medium); docs/benchmarks-video.md has the run.
"""

from __future__ import annotations

import numpy as np

from medialayer.kinds.video.match import AGREE, Alignment

HIGH = 0.8
MEDIUM = 0.6
FRAMES_AT_HALF = 1.0
"""Agreeing-frame evidence (each frame 0-1 above AGREE) at which the score reaches 0.5."""


def score(alignment: Alignment | None) -> float:
    """Similarity in [0, 1]: 0 without an agreeing frame."""
    if alignment is None or alignment.agreeing == 0:
        return 0.0
    values = alignment.agreement[~np.isnan(alignment.agreement)]
    evidence = float(np.clip((values - AGREE) / (1 - AGREE), 0, 1).sum())
    consistency = alignment.agreeing / max(1, alignment.compared)
    return round(consistency * evidence / (evidence + FRAMES_AT_HALF), 4)


def confidence(value: float) -> str:
    if value >= HIGH:
        return "high"
    if value >= MEDIUM:
        return "medium"
    return "low"
