"""The audio kind on the service's kind protocol: a thin adapter over the package."""

from __future__ import annotations

import io

from medialayer.errors import UnsupportedMedia
from medialayer.kinds.audio import fingerprint as fp
from medialayer.kinds.audio import match
from medialayer.kinds.audio.index import AudioIndex
from medialayer.kinds.audio.match import AudioMatch
from medialayer.kinds.base import FingerprintLoader, Match, Segment


def _match(found: AudioMatch) -> Match:
    return Match(found.key, found.score, [
        Segment(s.query_start, s.query_end, s.reference_start, s.reference_end)
        for s in found.segments])


class _Index:
    """One tenant's AudioIndex, answering in the protocol's Match."""

    def __init__(self) -> None:
        self._index = AudioIndex()

    def __len__(self) -> int:
        return len(self._index)

    def nbytes(self) -> int:
        return self._index.nbytes()

    def add(self, key: int, fingerprint: fp.AudioFingerprint) -> None:
        self._index.add(key, fingerprint)

    def remove(self, key: int) -> bool:
        return self._index.remove(key)

    def prepare(self) -> None:
        self._index.prepare()

    def ready(self) -> bool:
        return self._index.ready()

    def search(self, query: fp.AudioFingerprint, top_k: int, min_score: float = 0.0,
               exclude: int | None = None) -> list[Match]:
        return [_match(m) for m in self._index.search(query, top_k, min_score, exclude)]


class AudioKind:
    """Voice-overs, jingles, music, and the soundtracks of videos: the MediaKind `audio`."""

    name = "audio"

    def fingerprint(self, data: bytes, query: bool = False) -> fp.AudioFingerprint:
        """A silent file cannot be indexed (it would never match); as a query it finds nothing."""
        found = fp.fingerprint_stream(io.BytesIO(data))
        if found.silent and not query:
            raise UnsupportedMedia("the audio is silent: there is nothing to fingerprint")
        return found

    def encode(self, fingerprint: fp.AudioFingerprint) -> bytes:
        return fp.encode(fingerprint)

    def decode(self, blob: bytes) -> fp.AudioFingerprint:
        return fp.decode(blob)

    def compare(self, query: fp.AudioFingerprint, reference: fp.AudioFingerprint) -> Match:
        found = match.compare(query.peaks, reference.peaks)
        return _match(found) if found else Match(-1, 0.0)

    def new_index(self, load: FingerprintLoader) -> _Index:
        del load  # the postings hold all that alignment needs
        return _Index()
