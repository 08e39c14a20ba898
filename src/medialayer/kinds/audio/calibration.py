"""The audio kind's score scale and its confidence thresholds.

The evidence for a match is the number of landmark hashes the query shares with an item at one
consistent time offset. Chance agreement between unrelated audio stays at a handful of hashes;
the score maps the count onto [0, 1] so that equal scores mean equal evidence.
"""

from __future__ import annotations

import math

MIN_VOTES = 4
"""Aligned hashes below which an item is not a candidate at all."""
VOTES_SCALE = 12.0
"""Aligned hashes above MIN_VOTES at which the score reaches 1 - 1/e."""

HIGH = 0.9
MEDIUM = 0.6


def score(votes: int, seconds: float) -> float:
    """Monotone in the aligned votes; 0 at MIN_VOTES or below."""
    del seconds
    return round(1.0 - math.exp(-max(0, votes - MIN_VOTES) / VOTES_SCALE), 4)


def confidence(value: float) -> str:
    if value >= HIGH:
        return "high"
    if value >= MEDIUM:
        return "medium"
    return "low"
