"""The video kind behind the media-kind protocol: a thin adapter over this package's API."""

from __future__ import annotations

from medialayer.kinds.base import FingerprintLoader, Match, Segment
from medialayer.kinds.video import compare, fingerprint, frames
from medialayer.kinds.video.frames import VideoFingerprint
from medialayer.kinds.video.search import VideoIndex, VideoMatch


def _match(found: VideoMatch) -> Match:
    return Match(found.key, found.score, [
        Segment(s.query_start, s.query_end, s.reference_start, s.reference_end)
        for s in found.spans])


class VideoKindIndex:
    """The protocol's index: `VideoIndex` with its matches as protocol matches."""

    def __init__(self, load: FingerprintLoader) -> None:
        self.videos = VideoIndex(load)

    def __len__(self) -> int:
        return len(self.videos)

    def nbytes(self) -> int:
        return self.videos.nbytes()

    def prepare(self) -> None:
        self.videos.prepare()

    def ready(self) -> bool:
        return self.videos.ready()

    def add(self, key: int, fingerprint: VideoFingerprint) -> None:
        self.videos.add(key, fingerprint)

    def remove(self, key: int) -> bool:
        return self.videos.remove(key)

    def search(self, query: VideoFingerprint, top_k: int, min_score: float = 0.0,
               exclude: int | None = None) -> list[Match]:
        return [_match(m) for m in self.videos.search(query, top_k, min_score, exclude)]


class VideoKind:
    """Videos: the MediaKind for `video`."""

    name = "video"

    def fingerprint(self, data: bytes, query: bool = False) -> VideoFingerprint:
        return fingerprint(data, query=query)

    def encode(self, fingerprint: VideoFingerprint) -> bytes:
        return frames.encode(fingerprint)

    def decode(self, blob: bytes) -> VideoFingerprint:
        return frames.decode(blob)

    def compare(self, query: VideoFingerprint, reference: VideoFingerprint) -> Match:
        return _match(compare(query, reference))

    def new_index(self, load: FingerprintLoader) -> VideoKindIndex:
        return VideoKindIndex(load)
