"""The audio kind's score scale and its confidence thresholds.

Two things make a match: how many landmark hashes the query shares with an item at one
consistent time offset (strength), and how much of the shorter of the two recordings those
aligned hashes span (share). Unrelated audio can share a whole spoken phrase, with many aligned
hashes over a second or two of a long clip: strong but narrow. A copy, even under noise or music,
has aligned hashes across most of its length. The score is strength x share, each mapped onto
[0, 1]; the thresholds are set from `bench/audio_accuracy.py` on the dev corpus
(docs/benchmarks-audio.md), with room below the weakest copy and far above every negative.
"""

from __future__ import annotations

import math

MIN_VOTES = 4
"""Aligned hashes below which an item is not a candidate at all."""
VOTES_SCALE = 12.0
"""Aligned hashes above MIN_VOTES at which strength reaches 1 - 1/e."""
FULL_SHARE = 0.5
"""Share of the shorter recording spanned by aligned hashes at which share counts in full: a
copy mixed under loud music or noise keeps aligned hashes over about half its length or more."""

HIGH = 0.8
MEDIUM = 0.4


def score(votes: int, share: float) -> float:
    """Monotone in both the aligned votes and the spanned share; 0 at MIN_VOTES or below."""
    strength = 1.0 - math.exp(-max(0, votes - MIN_VOTES) / VOTES_SCALE)
    return round(strength * min(1.0, max(0.0, share) / FULL_SHARE), 4)


def confidence(value: float) -> str:
    if value >= HIGH:
        return "high"
    if value >= MEDIUM:
        return "medium"
    return "low"
