"""The video kind: sampled frames, per-frame codes and thumbnails, time-aligned matches."""

from __future__ import annotations

from medialayer.kinds.video.decode import DEFAULT_LIMITS, Limits, Sampling, Source, sample
from medialayer.kinds.video.frames import VideoFingerprint, fingerprint_frames
from medialayer.kinds.video.search import VideoIndex, VideoMatch, compare

CATALOG = Sampling(fps=2.0, keyframes=True)
"""A catalog item keeps its keyframes (at most two a second)."""
QUERY = Sampling(fps=4.0)
"""A query keeps four frames a second and its keyframes."""


def fingerprint(source: Source, query: bool = False, limits: Limits = DEFAULT_LIMITS
                ) -> VideoFingerprint:
    """A video file (path or bytes) to its fingerprint; see `decode.sample` for the errors."""
    return fingerprint_frames(sample(source, QUERY if query else CATALOG, limits))


__all__ = ["Limits", "VideoFingerprint", "VideoIndex", "VideoMatch", "compare", "fingerprint"]
