"""The video kind on the kind protocol: a thin adapter over the package.

Kinds are loaded in every process, bulk workers included, while PyAV and OpenCV take seconds to
import on a busy machine; so the package behind this adapter is imported on first use, not with
the kind.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from medialayer.kinds.base import (
    NO_KEY,
    Candidate,
    Encoded,
    Limits,
    Loader,
    Match,
    MediaInput,
    Segment,
)
from medialayer.kinds.video import calibration as scale
from medialayer.sniff import VIDEO_FORMATS, sniff

if TYPE_CHECKING:
    from medialayer.kinds.video.decode import Limits as DecodeLimits
    from medialayer.kinds.video.frames import VideoFingerprint
    from medialayer.kinds.video.search import VideoIndex, VideoMatch

MAX_BYTES = 1024 * 1024 * 1024
MAX_SECONDS = 3600.0
MAX_PIXELS = 4096 * 2304
MAX_DECODE_SECONDS = 60.0


def _decode_limits() -> DecodeLimits:
    from medialayer.kinds.video.decode import Limits as DecodeLimits

    return DecodeLimits(max_duration=MAX_SECONDS, max_pixels=MAX_PIXELS,
                        max_decode_seconds=MAX_DECODE_SECONDS)


def _match(found: VideoMatch, key: int) -> Match:
    """Plain floats (the package computes in NumPy's), so that matches serialise as JSON."""
    segments = tuple(Segment(float(s.query_start), float(s.query_end), float(s.reference_start),
                             float(s.reference_end), float(s.score)) for s in found.spans)
    return Match(key, float(found.score), segments, {
        "tier": "aligned frames", "query_covered": float(found.query_share),
        "reference_covered": float(found.reference_share), "speed": float(found.speed),
        "offset": float(found.offset), "mirrored": bool(found.mirrored)}).with_spans()


class VideoCandidates:
    """The catalog's frame codes over every tenant (a tenant is an integer code filtering the
    votes); the candidates' whole fingerprints are read back with `load` for alignment."""

    def __init__(self, load: Loader[VideoFingerprint]) -> None:
        from medialayer.kinds.video.search import VideoIndex

        self._index: VideoIndex = VideoIndex(load)
        self._tenants: dict[str, int] = {}

    def _tenant(self, tenant: str) -> int:
        return self._tenants.setdefault(tenant, len(self._tenants))

    def upsert(self, key: int, tenant: str, stored: VideoFingerprint) -> None:
        self.upsert_many([(key, tenant, stored)])

    def upsert_many(self, items: Sequence[tuple[int, str, VideoFingerprint]]) -> None:
        self._index.add_many([(key, self._tenant(tenant), fp) for key, tenant, fp in items])

    def delete(self, key: int) -> bool:
        return self._index.remove(key)

    def candidates(self, query: VideoFingerprint, tenant: str, exclude: int | None = None
                   ) -> Iterable[Candidate]:
        from medialayer.kinds.video.search import CANDIDATES

        if tenant not in self._tenants:
            return []
        return [Candidate(c.key, c.offset, c.votes) for c in self._index.candidates(
            query, CANDIDATES, exclude, self._tenants[tenant])]

    def search(self, query: VideoFingerprint, tenant: str, top_k: int, min_score: float = 0.0,
               exclude: int | None = None) -> list[Match]:
        if tenant not in self._tenants:
            return []
        found = self._index.search(query, top_k, min_score, exclude, self._tenants[tenant])
        return [_match(m, m.key) for m in found]

    def prepare(self) -> None:
        self._index.prepare()

    def ready(self) -> bool:
        return self._index.ready()

    def __contains__(self, key: int) -> bool:
        return key in self._index.codes

    def __len__(self) -> int:
        return len(self._index)

    def nbytes(self) -> int:
        return self._index.nbytes()


class VideoKind:
    """Product demos, unboxings and ads, and their re-uploaded copies: the kind `video`.

    An animated GIF is sniffed as an image (the image kind claims every GIF); with
    media_type=video it is decoded as a video.
    """

    name = "video"
    version = 1
    carries = frozenset({"audio"})
    """The soundtrack is kept with the video and searched as audio (`base.Track`)."""
    suffixes = frozenset({".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi", ".ts"})
    limits = Limits(max_bytes=MAX_BYTES, max_pixels=MAX_PIXELS, max_duration=MAX_SECONDS,
                    max_decode_seconds=MAX_DECODE_SECONDS)
    calibration = scale.LABELS

    def sniff(self, head: bytes) -> bool:
        return sniff(head) in VIDEO_FORMATS

    def query(self, source: MediaInput) -> VideoFingerprint:
        """With the file's soundtrack: a query may be indexed (search with index=true)."""
        from medialayer.kinds.video.frames import fingerprint

        return self._tracked(fingerprint(source, query=True, limits=_decode_limits()), source)

    def stored(self, source: MediaInput) -> VideoFingerprint:
        from medialayer.kinds.video.frames import fingerprint

        return self._tracked(fingerprint(source, limits=_decode_limits()), source)

    def _tracked(self, video: VideoFingerprint, source: MediaInput) -> VideoFingerprint:
        from medialayer.kinds import tracks_in
        from medialayer.kinds.video.tracked import tracked

        return tracked(video, tracks_in(source, self.carries, self.limits))

    def stored_of(self, query: VideoFingerprint) -> VideoFingerprint:
        """A query's denser frames serve as well in the catalog (search with index=true)."""
        return query

    def query_of(self, stored: VideoFingerprint) -> VideoFingerprint:
        return stored

    def encode(self, stored: VideoFingerprint) -> Encoded:
        """The soundtrack in a track chunk beside the frames (`base.Track`)."""
        from medialayer.kinds.video.frames import encode
        from medialayer.kinds.video.tracked import TrackedVideo

        tracks = stored.tracks if isinstance(stored, TrackedVideo) else ()
        return Encoded(encode(stored), chunks=tuple(t.chunk(i) for i, t in enumerate(tracks)),
                       duration=float(stored.duration))

    def decode(self, encoded: Encoded) -> VideoFingerprint:
        from medialayer.kinds.video.frames import decode

        return decode(encoded.blob)

    def verify(self, query: VideoFingerprint, stored: VideoFingerprint) -> Match:
        from medialayer.kinds.video.search import compare

        found = compare(query, stored)
        return _match(found, NO_KEY) if found.score > 0 else Match(NO_KEY, 0.0)

    def new_index(self, load: Loader[VideoFingerprint], bands: int | None = None
                  ) -> VideoCandidates:
        del bands  # the frame-code index keeps its own bands
        return VideoCandidates(load)

    def thumbnail(self, path: Path, side: int) -> bytes | None:
        from PIL import Image

        from medialayer.kinds.video.decode import poster

        im = Image.fromarray(poster(path, _decode_limits()))
        im.thumbnail((side, side), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=80)
        return buf.getvalue()
