"""The audio kind's candidate index: catalog landmarks in postings, searched by alignment."""

from __future__ import annotations

import numpy as np

from medialayer.index.postings import PostingsIndex
from medialayer.kinds.audio import match
from medialayer.kinds.audio.fingerprint import AudioFingerprint
from medialayer.kinds.audio.landmarks import HASH_BITS, reference_landmarks
from medialayer.kinds.audio.match import AudioMatch


class AudioIndex:
    """Landmark postings of a catalog's audio; a search aligns the query with each candidate.

    Items keep only their postings here (12 bytes per landmark) and their duration; nothing
    else of a fingerprint is needed to align and score a match.
    """

    def __init__(self) -> None:
        self.postings = PostingsIndex(HASH_BITS)
        self._seconds: dict[int, float] = {}

    def __len__(self) -> int:
        return len(self.postings)

    def nbytes(self) -> int:
        return self.postings.nbytes()

    def add(self, key: int, fingerprint: AudioFingerprint, tenant: int = 0) -> None:
        landmarks = reference_landmarks(fingerprint.peaks)
        self.postings.add(key, landmarks.hashes, np.rint(landmarks.times), tenant)
        self._seconds[key] = fingerprint.seconds

    def add_many(self, items: list[tuple[int, int, AudioFingerprint]]) -> None:
        """(key, tenant, fingerprint) of many items in one merge (start-up, bulk loads)."""
        for key, _, _ in items:
            if key in self.postings:
                self.remove(key)
        landmarks = [reference_landmarks(f.peaks) for _, _, f in items]
        counts = [len(lm.hashes) for lm in landmarks]
        if not items:
            return
        self.postings.add_many(
            np.repeat([key for key, _, _ in items], counts),
            np.concatenate([lm.hashes for lm in landmarks]),
            np.concatenate([np.rint(lm.times) for lm in landmarks]),
            np.repeat([tenant for _, tenant, _ in items], counts))
        self._seconds.update((key, f.seconds) for key, _, f in items)

    def remove(self, key: int) -> bool:
        self._seconds.pop(key, None)
        return self.postings.remove(key)

    def prepare(self) -> None:
        self.postings.prepare()

    def ready(self) -> bool:
        return self.postings.ready()

    def search(self, query: AudioFingerprint, top_k: int, min_score: float = 0.0,
               exclude: int | None = None, tenant: int | None = None) -> list[AudioMatch]:
        found = match.search(self.postings, query.peaks, self._seconds, top_k, tenant, exclude)
        return [m for m in found if m.score >= min_score]
