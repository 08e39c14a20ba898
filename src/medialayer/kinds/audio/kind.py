"""The audio kind on the kind protocol: a thin adapter over the package.

Kinds are loaded in every process, bulk workers included, while PyAV and SciPy's signal module
take seconds to import on a busy machine; so the package behind this adapter is imported on first
use, not with the kind.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from medialayer.errors import UnsupportedMedia
from medialayer.kinds.audio import calibration as scale
from medialayer.kinds.base import (
    NO_KEY,
    Calibration,
    Candidate,
    Encoded,
    Limits,
    Loader,
    Match,
    MediaInput,
    Track,
)
from medialayer.sniff import AUDIO_FORMATS, sniff

if TYPE_CHECKING:
    from medialayer.kinds.audio.fingerprint import AudioFingerprint
    from medialayer.kinds.audio.index import AudioIndex
    from medialayer.kinds.audio.match import AudioMatch

MAX_BYTES = 200 * 1024 * 1024
MAX_SECONDS = 30 * 60.0
MAX_DECODE_SECONDS = 60.0


def _match(found: AudioMatch, key: int) -> Match:
    return Match(key, found.score, tuple(found.segments), {
        "tier": "landmarks", "aligned_hashes": found.votes, "speed": round(found.speed, 4),
        "offset": round(found.offset, 3), "query_covered": round(found.covered, 4)}).with_spans()


class AudioCandidates:
    """The catalog's landmark postings over every tenant; a search aligns the query with each
    candidate, so the postings are all that verification needs (`load` is not used)."""

    def __init__(self) -> None:
        from medialayer.kinds.audio.index import AudioIndex

        self._index: AudioIndex = AudioIndex()
        self._tenants: dict[str, int] = {}

    def _tenant(self, tenant: str) -> int:
        return self._tenants.setdefault(tenant, len(self._tenants))

    def upsert(self, key: int, tenant: str, stored: AudioFingerprint) -> None:
        self.upsert_many([(key, tenant, stored)])

    def upsert_many(self, items: Sequence[tuple[int, str, AudioFingerprint]]) -> None:
        self._index.add_many([(key, self._tenant(tenant), fp) for key, tenant, fp in items])

    def delete(self, key: int) -> bool:
        return self._index.remove(key)

    def candidates(self, query: AudioFingerprint, tenant: str, exclude: int | None = None
                   ) -> Iterable[Candidate]:
        return [Candidate(m.key, m.offset, m.votes)
                for m in self._search(query, tenant, 100, 0.0, exclude)]

    def search(self, query: AudioFingerprint, tenant: str, top_k: int, min_score: float = 0.0,
               exclude: int | None = None) -> list[Match]:
        return [_match(m, m.key) for m in self._search(query, tenant, top_k, min_score, exclude)]

    def _search(self, query: AudioFingerprint, tenant: str, top_k: int, min_score: float,
                exclude: int | None) -> list[AudioMatch]:
        if tenant not in self._tenants:
            return []
        return self._index.search(query, top_k, min_score, exclude, self._tenants[tenant])

    def prepare(self) -> None:
        self._index.prepare()

    def ready(self) -> bool:
        return self._index.ready()

    def __contains__(self, key: int) -> bool:
        return key in self._index.postings

    def __len__(self) -> int:
        return len(self._index)

    def nbytes(self) -> int:
        return self._index.nbytes()


def _fingerprint(source: MediaInput, limits: Limits) -> AudioFingerprint:
    from medialayer.kinds.audio.decode import Limits as DecodeLimits
    from medialayer.kinds.audio.fingerprint import fingerprint_path, fingerprint_stream

    caps = DecodeLimits(limits.max_bytes, limits.max_duration or MAX_SECONDS,
                        limits.max_decode_seconds or MAX_DECODE_SECONDS)
    if isinstance(source, Path):
        return fingerprint_path(source, caps)
    return fingerprint_stream(source, caps)


class AudioKind:
    """Voice-overs, jingles, music, and the soundtracks of videos: the kind `audio`."""

    name = "audio"
    version = 1
    suffixes = frozenset({".wav", ".mp3", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".aac"})
    limits = Limits(max_bytes=MAX_BYTES, max_duration=MAX_SECONDS,
                    max_decode_seconds=MAX_DECODE_SECONDS)

    calibration = Calibration(high=scale.HIGH, medium=scale.MEDIUM)

    def sniff(self, head: bytes) -> bool:
        return sniff(head) in AUDIO_FORMATS

    def query(self, source: MediaInput) -> AudioFingerprint:
        """A silent query is no error: it finds nothing."""
        return _fingerprint(source, self.limits)

    def track(self, source: MediaInput, limits: Limits) -> Track | None:
        """The soundtrack of a video (or of any file FFmpeg reads), under the video's limits;
        none if the file has no sound, or only silence."""
        from medialayer.kinds.audio.fingerprint import encode

        found = _fingerprint(source, limits)
        if found.silent:
            return None
        return Track(self.name, self.version, encode(found), found.seconds)

    def stored(self, source: MediaInput) -> AudioFingerprint:
        return self.stored_of(self.query(source))

    def stored_of(self, query: AudioFingerprint) -> AudioFingerprint:
        """A silent file cannot be indexed: it would never match anything."""
        if query.silent:
            raise UnsupportedMedia("the audio is silent: there is nothing to fingerprint")
        return query

    def query_of(self, stored: AudioFingerprint) -> AudioFingerprint:
        return stored

    def encode(self, stored: AudioFingerprint) -> Encoded:
        from medialayer.kinds.audio.fingerprint import encode

        return Encoded(encode(stored), duration=stored.seconds)

    def decode(self, encoded: Encoded) -> AudioFingerprint:
        from medialayer.kinds.audio.fingerprint import decode

        return decode(encoded.blob)

    def verify(self, query: AudioFingerprint, stored: AudioFingerprint) -> Match:
        from medialayer.kinds.audio.match import compare

        found = compare(query.peaks, stored.peaks)
        return _match(found, NO_KEY) if found else Match(NO_KEY, 0.0)

    def new_index(self, load: Loader[AudioFingerprint], bands: int | None = None
                  ) -> AudioCandidates:
        del load, bands  # the postings hold all that alignment needs; no code bands
        return AudioCandidates()

    def thumbnail(self, path: Path, side: int) -> bytes | None:
        return None
