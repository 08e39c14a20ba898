"""The image kind: candidates from both tiers' indexes, then verification and one score."""

from __future__ import annotations

from typing import Any

from medialayer.calibration import confidence, image_score
from medialayer.index.hamming import HammingIndex
from medialayer.index.local import LocalFeatureIndex, Vote
from medialayer.kinds import image
from medialayer.kinds.base import Match
from medialayer.kinds.image import ImageFingerprint

CODE_RADIUS = 8
"""Global-code candidates are taken up to this distance; beyond it the tier scores 0."""
VOTED_CANDIDATES = 5
"""Most items per query view that descriptor voting proposes for verification."""
AGREEING_VOTES = 6
"""Voted items whose own correspondences agree on fewer points are not verified. On dev
(`bench/accuracy.py`), 6 skips 93 % of the verifications of unrelated items and loses one
query of 1,908 at T (a 0.64 score); of candidates verifying at medium or better, 1 in 3,186."""


class ImageIndex:
    """Hamming index of global codes plus descriptor voting; verification ranks the union."""

    def __init__(self) -> None:
        self.codes = HammingIndex(bits=64, bands=4)
        self.local = LocalFeatureIndex()
        self._fingerprints: dict[int, ImageFingerprint] = {}

    def __len__(self) -> int:
        return len(self._fingerprints)

    def nbytes(self) -> int:
        return self.codes.nbytes() + self.local.nbytes() + 16 * len(self._fingerprints)

    def prepare(self) -> None:
        """Finish pending index work now (at start-up, or before shared-lock searches)."""
        self.local.prepare()

    def ready(self) -> bool:
        """Whether a search would change nothing, so concurrent searches are safe."""
        return self.local.ready()

    def add(self, key: int, fingerprint: ImageFingerprint) -> None:
        self.codes.add(key, fingerprint.code)
        self.local.add(key, fingerprint.features.descriptors)
        self._fingerprints[key] = fingerprint

    def remove(self, key: int) -> bool:
        self.codes.remove(key)
        self.local.remove(key)
        return self._fingerprints.pop(key, None) is not None

    def search(self, query: ImageFingerprint, top_k: int, min_score: float = 0.0,
               exclude: int | None = None) -> list[Match]:
        """Rank by the main view first; the query's other views only if it settles nothing.

        A copy that the main view verifies with high confidence is the common case and costs
        one keypoint set; only then are the mirror and photo-region views skipped, so a
        cropped mirror copy beside a high-confidence match can go unreported.
        """
        scores: dict[int, float] = {}
        self._score_views(query, query.codes, range(len(query.views)), top_k, exclude, scores)
        settled = confidence("image", max(scores.values(), default=0.0)) == "high"
        if query.more is not None and not settled:
            full = query.expanded()
            self._score_views(full, full.codes[len(query.codes):],
                              range(len(query.views), len(full.views)), top_k, exclude, scores)
        matches = [Match(key, score) for key, score in scores.items()
                   if score > 0 and score >= min_score]
        matches.sort(key=lambda m: (-m.score, m.key))
        return matches[:top_k]

    def _score_views(self, query: ImageFingerprint, codes: list[int], views: range, top_k: int,
                     exclude: int | None, scores: dict[int, float]) -> None:
        """Score the candidates that `codes` and `views` of the query find, keeping each best."""
        distances = dict(self.codes.radius_many(codes, CODE_RADIUS)) if codes else {}
        distances.pop(exclude, None)
        for key, voted_by in self._candidates(query, distances, views, top_k, exclude).items():
            score = self._score(query, key, distances.get(key), voted_by)
            scores[key] = max(score, scores.get(key, 0.0))

    def _candidates(self, query: ImageFingerprint, distances: dict[int, int], views: range,
                    top_k: int, exclude: int | None) -> dict[int, set[int]]:
        """Candidate keys, each with the query views worth verifying it with.

        A key voted for by a view is checked with that view; a key found by its global code
        alone is checked with the main view (the code already scores a flipped copy).
        """
        candidates: dict[int, set[int]] = {key: {0} for key in distances}
        top = max(top_k, VOTED_CANDIDATES)
        for i in views:
            view = query.views[i]
            for vote in self.local.vote(view.descriptors, top=top, exclude=exclude):
                if self._agrees(view, vote):
                    candidates.setdefault(vote.key, set()).add(i)
        return candidates

    def _agrees(self, view: image.Features, vote: Vote) -> bool:
        """Whether the correspondences behind the votes agree on one transform, before any
        matching: unrelated photos of similar things share descriptors but not geometry."""
        reference = self._fingerprints[vote.key].features
        return image.consistent(view.points[vote.pairs[:, 0]],
                                reference.points[vote.pairs[:, 1]]) >= AGREEING_VOTES

    def _score(self, query: ImageFingerprint, key: int, distance: int | None,
               views: set[int]) -> float:
        """Exact global matches need no keypoint check; anything weaker is verified."""
        if distance == 0:
            return image_score(0, 0)
        reference = self._fingerprints[key].features
        found = max(image.inliers(query.views[i], reference) for i in views)
        return image_score(distance, found)


class ImageKind:
    """Photos: the MediaKind for `image`."""

    name = "image"

    def fingerprint(self, data: bytes, query: bool = False) -> ImageFingerprint:
        return image.fingerprint_bytes(data, query=query)

    def encode(self, fingerprint: ImageFingerprint) -> bytes:
        return image.encode(fingerprint)

    def decode(self, blob: bytes) -> ImageFingerprint:
        return image.decode(blob)

    def compare(self, query: Any, reference: Any) -> Match:
        distance = image.best_distance(query, reference.code)
        inliers = 0 if distance == 0 else image.best_inliers(query, reference)
        return Match(-1, image_score(distance if distance <= CODE_RADIUS else None, inliers))

    def new_index(self) -> ImageIndex:
        return ImageIndex()
