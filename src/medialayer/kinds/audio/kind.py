"""The audio kind on the service's kind protocol: a thin adapter over the package.

The registry imports every kind in every process, bulk workers included, while PyAV and SciPy's
signal module take seconds to import on a busy machine; so the package behind this adapter is
imported on first use, not with the registry.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from medialayer.errors import UnsupportedMedia
from medialayer.kinds.base import FingerprintLoader, Match, Segment

if TYPE_CHECKING:
    from medialayer.kinds.audio.fingerprint import AudioFingerprint
    from medialayer.kinds.audio.index import AudioIndex
    from medialayer.kinds.audio.match import AudioMatch


def _match(found: AudioMatch) -> Match:
    return Match(found.key, found.score, [
        Segment(s.query_start, s.query_end, s.reference_start, s.reference_end)
        for s in found.segments])


class _Index:
    """One tenant's AudioIndex, answering in the protocol's Match."""

    def __init__(self) -> None:
        from medialayer.kinds.audio.index import AudioIndex

        self._index: AudioIndex = AudioIndex()

    def __len__(self) -> int:
        return len(self._index)

    def nbytes(self) -> int:
        return self._index.nbytes()

    def add(self, key: int, fingerprint: AudioFingerprint) -> None:
        self._index.add(key, fingerprint)

    def remove(self, key: int) -> bool:
        return self._index.remove(key)

    def prepare(self) -> None:
        self._index.prepare()

    def ready(self) -> bool:
        return self._index.ready()

    def search(self, query: AudioFingerprint, top_k: int, min_score: float = 0.0,
               exclude: int | None = None) -> list[Match]:
        return [_match(m) for m in self._index.search(query, top_k, min_score, exclude)]


class AudioKind:
    """Voice-overs, jingles, music, and the soundtracks of videos: the MediaKind `audio`."""

    name = "audio"

    def fingerprint(self, data: bytes, query: bool = False) -> AudioFingerprint:
        """A silent file cannot be indexed (it would never match); as a query it finds nothing."""
        from medialayer.kinds.audio.fingerprint import fingerprint_stream

        found = fingerprint_stream(io.BytesIO(data))
        if found.silent and not query:
            raise UnsupportedMedia("the audio is silent: there is nothing to fingerprint")
        return found

    def encode(self, fingerprint: AudioFingerprint) -> bytes:
        from medialayer.kinds.audio.fingerprint import encode

        return encode(fingerprint)

    def decode(self, blob: bytes) -> AudioFingerprint:
        from medialayer.kinds.audio.fingerprint import decode

        return decode(blob)

    def compare(self, query: AudioFingerprint, reference: AudioFingerprint) -> Match:
        from medialayer.kinds.audio.match import compare

        found = compare(query.peaks, reference.peaks)
        return _match(found) if found else Match(-1, 0.0)

    def new_index(self, load: FingerprintLoader) -> _Index:
        del load  # the postings hold all that alignment needs
        return _Index()
