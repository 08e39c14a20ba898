"""A video's fingerprint together with the tracks its file carries, until it is encoded."""

from __future__ import annotations

from dataclasses import dataclass, fields

from medialayer.kinds.base import Track
from medialayer.kinds.video.frames import VideoFingerprint


@dataclass(frozen=True)
class TrackedVideo(VideoFingerprint):
    """The frames of a video and the tracks of its file (its soundtrack, as audio).

    The tracks go into the video's catalog row with it, and from there into their own kinds'
    indexes; the video's own matching never looks at them, so a video read back from the
    catalog comes without.
    """

    tracks: tuple[Track, ...] = ()


def tracked(video: VideoFingerprint, tracks: tuple[Track, ...]) -> TrackedVideo:
    return TrackedVideo(**{f.name: getattr(video, f.name) for f in fields(VideoFingerprint)},
                        tracks=tracks)
