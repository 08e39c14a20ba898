"""The image kind: candidates from both tiers' indexes, then verification and one score."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from medialayer.calibration import IMAGE_CODE_MIN_INFORMATION, confidence, image_score
from medialayer.index.hamming import HammingIndex
from medialayer.index.local import MAX_DESCRIPTORS, LocalFeatureIndex, Vote, grown
from medialayer.kinds import image
from medialayer.kinds.base import FingerprintLoader, Match
from medialayer.kinds.image import Evidence, ImageFingerprint, NormBox

CODE_RADIUS = 8
"""Global-code candidates are taken up to this distance; beyond it the tier scores 0."""
VOTED_CANDIDATES = 5
"""Most items per query view that descriptor voting proposes for verification."""
AGREEING_VOTES = 6
"""Voted items whose own correspondences agree on fewer points are not verified. On dev
(`bench/accuracy.py`), 6 skips 93 % of the verifications of unrelated items and loses one
query of 1,908 at T (a 0.64 score); of candidates verifying at medium or better, 1 in 3,186."""


class _Positions:
    """Each item's keypoint positions (float16, as stored) in one growing array: one object per
    item cost about 1.1 KB each and pinned the heap between the fingerprints decoded at start-up
    (300 MB of RSS at 100k items that trimming could not return)."""

    def __init__(self) -> None:
        self._rows = np.zeros((0, MAX_DESCRIPTORS, 2), np.float16)
        self._row_of: dict[int, int] = {}
        self._free: list[int] = []

    def put(self, key: int, points: np.ndarray) -> None:
        row = self._row_of.get(key)
        if row is None:
            row = self._free.pop() if self._free else self._grow()
            self._row_of[key] = row
        kept = points[:MAX_DESCRIPTORS]  # the descriptor index votes carry is below this
        self._rows[row, : len(kept)] = kept
        self._rows[row, len(kept):] = 0

    def get(self, key: int) -> np.ndarray:
        return self._rows[self._row_of[key]]

    def drop(self, key: int) -> None:
        row = self._row_of.pop(key, None)
        if row is not None:
            self._free.append(row)

    def nbytes(self) -> int:
        return self._rows.nbytes

    def _grow(self) -> int:
        """A new row at the end, growing the array by half when full."""
        used = len(self._row_of) + len(self._free)
        if used == len(self._rows):
            self._rows = grown(self._rows, used, max(1024, used + used // 2))
        return used


class ImageIndex:
    """Hamming index of global codes plus descriptor voting; verification ranks the union.

    Besides the indexes, memory holds each item's keypoint positions as float16 (1 KB per
    item): the agreement check runs on every voted item, so it must not wait for the catalog.
    The descriptors that verification needs (8 KB per item) are read back from the catalog for
    the few candidates that pass it.
    """

    def __init__(self, load: FingerprintLoader) -> None:
        self.codes = HammingIndex(bits=64, bands=4)
        self.local = LocalFeatureIndex()
        self._load = load
        self._positions = _Positions()

    def __len__(self) -> int:
        return len(self.codes)

    def nbytes(self) -> int:
        return self.codes.nbytes() + self.local.nbytes() + self._positions.nbytes()

    def prepare(self) -> None:
        """Finish pending index work now (at start-up, or before shared-lock searches)."""
        self.local.prepare()

    def ready(self) -> bool:
        """Whether a search would change nothing, so concurrent searches are safe."""
        return self.local.ready()

    def add(self, key: int, fingerprint: ImageFingerprint) -> None:
        self.codes.add(key, fingerprint.code)
        self.local.add(key, fingerprint.features.descriptors)
        self._positions.put(key, fingerprint.features.points)

    def remove(self, key: int) -> bool:
        self.local.remove(key)
        self._positions.drop(key)
        return self.codes.remove(key)

    def search(self, query: ImageFingerprint, top_k: int, min_score: float = 0.0,
               exclude: int | None = None) -> list[Match]:
        """Rank by the main view first; the query's other views only if it settles nothing.

        A copy that the main view verifies with high confidence is the common case and costs
        one keypoint set; only then are the mirror and photo-region views skipped, so a
        cropped mirror copy beside a high-confidence match can go unreported.
        """
        best: dict[int, Match] = {}
        references: dict[int, ImageFingerprint] = {}
        self._score_views(query, query.codes, range(len(query.views)), top_k, exclude, best,
                          references)
        top = max((m.score for m in best.values()), default=0.0)
        if query.more is not None and confidence("image", top) != "high":
            full = query.expanded()
            self._score_views(full, full.codes[len(query.codes):],
                              range(len(query.views), len(full.views)), top_k, exclude, best,
                              references)
        matches = [m for m in best.values() if m.score > 0 and m.score >= min_score]
        matches.sort(key=lambda m: (-m.score, m.key))
        return matches[:top_k]

    def _score_views(self, query: ImageFingerprint, codes: list[int], views: range, top_k: int,
                     exclude: int | None, best: dict[int, Match],
                     references: dict[int, ImageFingerprint]) -> None:
        """Score the candidates that `codes` and `views` of the query find, keeping each best."""
        distances = dict(self.codes.radius_many(codes, CODE_RADIUS)) if codes else {}
        distances.pop(exclude, None)
        candidates = self._candidates(query, distances, views, top_k, exclude)
        self._read_references(list(candidates), references)
        for key, voted_by in candidates.items():
            reference = references.get(key)
            if reference is None:  # deleted from the catalog since it was indexed
                continue
            match = self._score(key, query, distances.get(key), reference, voted_by)
            if key not in best or match.score > best[key].score:
                best[key] = match

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

    def _read_references(self, keys: list[int], references: dict[int, ImageFingerprint]
                         ) -> None:
        """Read the fingerprints of `keys` not read yet from the catalog, in one call; keys
        gone from it stay absent. Exact global matches are read too: their explanation needs
        the reference's content box."""
        missing = [key for key in keys if key not in references]
        if missing:
            references.update(self._load(missing))

    def _agrees(self, view: image.Features, vote: Vote) -> bool:
        """Whether the correspondences behind the votes agree on one transform, before any
        matching: unrelated photos of similar things share descriptors but not geometry."""
        stored = self._positions.get(vote.key)[vote.pairs[:, 1]].astype(np.float32)
        return image.consistent(view.points[vote.pairs[:, 0]], stored) >= AGREEING_VOTES

    @staticmethod
    def _score(key: int, query: ImageFingerprint, distance: int | None,
               reference: ImageFingerprint, views: set[int]) -> Match:
        """Exact global matches need no keypoint check; anything weaker is verified."""
        evidence = Evidence() if distance == 0 and not _featureless(query, reference) else max(
            (image.verify(query.views[i], reference.features) for i in views),
            key=lambda e: e.inliers)
        return verdict(key, query, reference, distance, evidence)


def verdict(key: int, query: ImageFingerprint, reference: ImageFingerprint,
            distance: int | None, evidence: Evidence) -> Match:
    """The score of the stronger tier, and the explanation of what matched.

    The tier is the evidence that gave the score (`global_code` or `keypoints`), or
    `photo_region` when either image is a listing page and only its photo was compared. The
    boxes are the matched region in each image: the inliers' extent for keypoints, the content
    (borders trimmed, or a page's photo) for a global code.
    """
    information = min(image.code_information(query.code), image.code_information(reference.code))
    score = image_score(distance, evidence.inliers, information)
    if score <= 0:
        return Match(key, 0.0)
    by_code = distance is not None and image_score(distance, 0, information) >= score
    boxes = ((query.content(), reference.content()) if by_code
             else (evidence.query_box, evidence.reference_box))
    tier = "photo_region" if query.page or reference.page else (
        "global_code" if by_code else "keypoints")
    return Match(key, score, explanation={
        "tier": tier, "evidence": "global_code" if by_code else "keypoints",
        "code_distance": distance, "inliers": evidence.inliers,
        "query_box": boxes[0], "reference_box": boxes[1],
        "query_coverage": _area(boxes[0]), "reference_coverage": _area(boxes[1])})


def _featureless(query: ImageFingerprint, reference: ImageFingerprint) -> bool:
    """Whether the global code alone cannot settle the pair, even at distance 0."""
    return min(image.code_information(query.code),
               image.code_information(reference.code)) < IMAGE_CODE_MIN_INFORMATION


def _area(box: NormBox | None) -> float:
    return 0.0 if box is None else round((box[2] - box[0]) * (box[3] - box[1]), 4)


def swapped(match: Match) -> Match:
    """The same match seen from the other image: query and reference exchange places."""
    if match.explanation is None:
        return match
    e = dict(match.explanation)
    for a, b in (("query_box", "reference_box"), ("query_coverage", "reference_coverage")):
        e[a], e[b] = e[b], e[a]
    return replace(match, explanation=e)


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
        """Symmetric: each image is tried as the query against the other (with its mirror
        views) and the stronger direction wins, so compare(a, b) and compare(b, a) agree and
        clusters can score a pair once."""
        forward = self._directed(query, reference)
        backward = self._directed(reference, query)
        return swapped(backward) if backward.score > forward.score else forward

    @staticmethod
    def _directed(query: ImageFingerprint, reference: ImageFingerprint) -> Match:
        distance = image.best_distance(query, reference.code)
        evidence = (Evidence() if distance == 0 and not _featureless(query, reference)
                    else image.best_evidence(query, reference))
        return verdict(-1, query, reference, distance if distance <= CODE_RADIUS else None,
                       evidence)

    def new_index(self, load: FingerprintLoader) -> ImageIndex:
        return ImageIndex(load)
