"""The image kind: candidates from both tiers' indexes, then verification and one score."""

from __future__ import annotations

import io
from collections.abc import Collection, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from medialayer.calibration import IMAGE, IMAGE_CODE_MIN_INFORMATION, image_score
from medialayer.index.hamming import HammingIndex
from medialayer.index.local import LocalFeatureIndex, Merge, Vote
from medialayer.index.snapshot import IndexState
from medialayer.index.tenants import TenantMap
from medialayer.kinds import image
from medialayer.kinds.base import (
    NO_KEY,
    Candidate,
    Encoded,
    Limits,
    Loader,
    Match,
    MediaInput,
    read_all,
)
from medialayer.kinds.image import Evidence, ImageFingerprint, NormBox
from medialayer.sniff import IMAGE_FORMATS, sniff

DEFAULT_BANDS = 4
"""Bands of the global-code Hamming index: about 64 / log2(items), see docs/benchmarks-index.md."""
CODE_RADIUS = 8
"""Global-code candidates are taken up to this distance; beyond it the tier scores 0."""
VOTED_CANDIDATES = 5
"""Most items per query view that descriptor voting proposes for verification."""
AGREEING_VOTES = 6
"""Voted items whose own correspondences agree on fewer points are not verified: unrelated
items share descriptors by chance but rarely their geometry, so most of their verifications are
skipped at the cost of almost no copies (the trade-off is measured in docs/matching.md)."""
VOTE_POOL = 30
"""Most voted items of a dense query view whose agreement is checked, to keep the few that
agree best."""
POOL_TRIES = 100
"""RANSAC iterations of the pool's agreement checks: where a fifth or more of an item's
correspondences agree, 100 draws of two find them 98 % of the time; strangers' do not agree,
and cost every draw."""


class ImageIndex:
    """Hamming index of global codes plus descriptor voting over every tenant's images;
    verification ranks the union of what either proposes within the query's tenant.

    The keypoint index keeps the positions of the keypoints it indexes: the agreement check
    runs on every voted item, so it must not wait for the catalog. The descriptors and exact
    positions that verification needs are read back from the catalog for the few candidates
    that pass it.
    """

    def __init__(self, load: Loader[ImageFingerprint], bands: int = DEFAULT_BANDS) -> None:
        self.codes = HammingIndex(bits=64, bands=bands)
        self.local = LocalFeatureIndex(extent=image.WORK_SIDE)
        self.tenants = TenantMap()
        self._load = load
        self._loaded: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.uint64]]] = []
        """Codes from `add_codes` not in the Hamming index yet: it takes them in one call, as
        each call rebuilds its tables."""

    def __len__(self) -> int:
        return len(self.tenants)

    def __contains__(self, key: int) -> bool:
        return key in self.tenants

    def nbytes(self) -> int:
        return self.codes.nbytes() + self.local.nbytes() + self.tenants.nbytes()

    def prepare(self) -> None:
        """Finish pending index work now (at start-up, or before shared-lock searches)."""
        self._add_loaded()
        self.local.prepare()

    def ready(self) -> bool:
        """Whether a search would change nothing, so concurrent searches are safe."""
        return not self._loaded and self.local.ready()

    def begin_merge(self) -> Merge | None:
        """Pending work now, and the keypoint tables' merge if one is due, to run off the
        lock (see `LocalFeatureIndex.begin_merge`)."""
        self._add_loaded()
        return self.local.begin_merge()

    def end_merge(self, merge: Merge) -> None:
        self.local.end_merge(merge)

    def upsert(self, key: int, tenant: str, stored: ImageFingerprint) -> None:
        self.upsert_many([(key, tenant, stored)])

    def upsert_many(self, items: Sequence[tuple[int, str, ImageFingerprint]]) -> None:
        """Add or replace items; the codes go into the Hamming index in one vectorised call."""
        self._add_loaded()
        for key, _, _ in items:
            if key in self.tenants:
                self.delete(key)
        keys = np.fromiter((key for key, _, _ in items), np.int64, len(items))
        self.codes.add_many(keys, np.fromiter((fp.code for _, _, fp in items), np.uint64,
                                              len(items)))
        by_tenant: dict[str, list[int]] = {}
        for key, tenant, fp in items:
            if len(fp.features):  # a global-only item has no keypoints to vote or agree with
                self.local.add(key, fp.features.descriptors, fp.features.points)
            by_tenant.setdefault(tenant, []).append(key)
        for tenant, added in by_tenant.items():
            self.tenants.set_many(np.array(added, np.int64), tenant)

    def add_codes(self, keys: npt.NDArray[np.int64], tenants: Collection[str],
                  codes: npt.NDArray[np.uint64]) -> None:
        """The global tier of new keys (absent from the index) straight from the catalog's code
        column: no stored fingerprint is decoded, so a start-up answers on codes sooner."""
        self._loaded.append((keys, codes))
        self.tenants.set_named(keys, tenants)

    def _add_loaded(self) -> None:
        if self._loaded:
            keys = np.concatenate([k for k, _ in self._loaded])
            codes = np.concatenate([c for _, c in self._loaded])
            self._loaded = []
            self.codes.add_many(keys, codes)

    def state(self) -> IndexState:
        """Both tiers for a snapshot (codes, tenants and keypoints), so an index built over
        one needs nothing from the catalog but the rows since."""
        self._add_loaded()
        return IndexState.of_parts({"codes": self.codes.state(), "tenants": self.tenants.state(),
                                    "local": self.local.state()}, complete=True)

    def load_state(self, state: IndexState) -> None:
        """A state without the keypoint tier (`complete` false: written before it was in
        snapshots) maps the global tier only; the registry loads the keypoints after."""
        if len(self) or self._loaded:
            raise ValueError("only an empty index can take a state")
        if state.complete:
            self.local.load_state(state.part("local"))
        self.codes.load_state(state.part("codes"))
        self.tenants.load_state(state.part("tenants"))

    def add_details(self, items: Sequence[tuple[int, str, ImageFingerprint]]) -> None:
        """The keypoint tier of keys that `add_codes` brought; keys deleted since, or already
        complete (upserted whole meanwhile), are left alone."""
        for key, _, fp in items:
            if key in self.tenants and key not in self.local and len(fp.features):
                self.local.add(key, fp.features.descriptors, fp.features.points)

    def delete(self, key: int) -> bool:
        self._add_loaded()
        self.local.remove(key)
        self.codes.remove(key)
        return self.tenants.drop(key)

    def candidates(self, query: ImageFingerprint, tenant: str, exclude: int | None = None
                   ) -> Iterator[Candidate]:
        """Keys whose global code is near (votes: bits to spare within the radius) or whose
        keypoints agree with the main view's (votes: descriptor votes)."""
        distances = self._distances(query.codes, tenant, exclude)
        for key, distance in distances.items():
            yield Candidate(key, 0.0, CODE_RADIUS + 1 - distance)
        view = query.views[0]
        for vote in self._votes(view, tenant, VOTED_CANDIDATES, exclude):
            if vote.key not in distances and self._agrees(view, vote):
                yield Candidate(vote.key, 0.0, vote.votes)

    def search(self, query: ImageFingerprint, tenant: str, top_k: int, min_score: float = 0.0,
               exclude: int | None = None) -> list[Match]:
        """Rank by the main view first; the query's other views only if it settles nothing.

        A copy that the main view verifies with high confidence is the common case and costs
        one keypoint set; only then are the mirror and photo-region views skipped, so a
        cropped mirror copy beside a high-confidence match can go unreported.
        """
        best: dict[int, Match] = {}
        references: dict[int, ImageFingerprint] = {}
        self._score_views(query, tenant, query.codes, range(len(query.views)), top_k, exclude,
                          best, references)
        top = max((m.score for m in best.values()), default=0.0)
        if query.more is not None and IMAGE.label(top) != "high":
            full = query.expanded()
            self._score_views(full, tenant, full.codes[len(query.codes):],
                              range(len(query.views), len(full.views)), top_k, exclude, best,
                              references)
        matches = [m for m in best.values() if m.score > 0 and m.score >= min_score]
        matches.sort(key=lambda m: (-m.score, m.key))
        return matches[:top_k]

    def _score_views(self, query: ImageFingerprint, tenant: str, codes: list[int],
                     views: range, top_k: int, exclude: int | None, best: dict[int, Match],
                     references: dict[int, ImageFingerprint]) -> None:
        """Score the candidates that `codes` and `views` of the query find, keeping each best."""
        distances = self._distances(codes, tenant, exclude)
        candidates = self._candidates(query, tenant, distances, views, top_k, exclude)
        self._read_references(list(candidates), references)
        for key, voted_by in candidates.items():
            reference = references.get(key)
            if reference is None:  # deleted from the catalog since it was indexed
                continue
            match = self._score(key, query, distances.get(key), reference, voted_by)
            if key not in best or match.score > best[key].score:
                best[key] = match

    def _distances(self, codes: list[int], tenant: str, exclude: int | None
                   ) -> dict[int, int]:
        """The tenant's keys whose global code is within CODE_RADIUS of one of `codes`."""
        found = self.codes.radius_many(codes, CODE_RADIUS) if codes else []
        keys = np.fromiter((key for key, _ in found), np.int64, len(found))
        mine = self.tenants.mask(keys, tenant)
        distances = {key: d for (key, d), ok in zip(found, mine, strict=True) if ok}
        distances.pop(exclude, None)  # type: ignore[arg-type]
        return distances

    def _votes(self, view: image.Features, tenant: str, top: int, exclude: int | None
               ) -> list[Vote]:
        return self.local.vote(view.descriptors, top=top, exclude=exclude,
                               allowed=lambda keys: self.tenants.mask(keys, tenant),
                               population=self.tenants.count(tenant))

    def _candidates(self, query: ImageFingerprint, tenant: str, distances: dict[int, int],
                    views: range, top_k: int, exclude: int | None) -> dict[int, set[int]]:
        """Candidate keys, each with the query views worth verifying it with.

        A key voted for by a view is checked with that view; a key found by its global code
        alone is checked with the main view (the code already scores a flipped copy).
        """
        candidates: dict[int, set[int]] = {key: {0} for key in distances}
        top = max(top_k, VOTED_CANDIDATES)
        for i in views:
            view = query.views[i]
            if len(view) > image.ORB_FEATURES:
                kept = self._most_agreeing(view, tenant, top, exclude)
            else:
                kept = [v.key for v in self._votes(view, tenant, top, exclude)
                        if self._agrees(view, v)]
            for key in kept:
                candidates.setdefault(key, set()).add(i)
        return candidates

    def _most_agreeing(self, view: image.Features, tenant: str, top: int,
                       exclude: int | None) -> list[int]:
        """The `top` items whose votes agree on one transform at the most points, of the
        VOTE_POOL most voted.

        A dense view is taken when letters cover the query: their corners collide with many
        catalog items' descriptors, so strangers outvote the copy, whose degraded descriptors
        collide less often; but the letters' collisions do not line up, the copy's do.
        """
        agreeing = []
        for vote in self._votes(view, tenant, VOTE_POOL, exclude):
            if len(vote.pairs) < AGREEING_VOTES:  # too few to agree, whatever their geometry
                continue
            points = self._agreement(view, vote, POOL_TRIES)
            if points >= AGREEING_VOTES:
                agreeing.append((points, vote.key))
        agreeing.sort(key=lambda pk: (-pk[0], pk[1]))
        return [key for _, key in agreeing[:top]]

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
        return self._agreement(view, vote) >= AGREEING_VOTES

    @staticmethod
    def _agreement(view: image.Features, vote: Vote, tries: int = 500) -> int:
        """How many of the correspondences behind the votes one transform maps."""
        return image.consistent(view.points[vote.pairs[:, 0]], vote.points, tries)

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


class ImageKind:
    """Photos: the MediaKind for `image` (query and stored fingerprints are one type; a query
    computes its costlier views only when asked, see `ImageFingerprint.expanded`)."""

    name = "image"
    version = 2
    """2: the MLI2 stored form (a listing page's code and keypoints are its photo's, with the
    content box); version-1 rows are refused until indexed again."""
    suffixes = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff",
                          ".heic", ".heif", ".avif"})
    limits = Limits(max_bytes=50 * 1024 * 1024, max_pixels=image.MAX_PIXELS)
    calibration = IMAGE

    def sniff(self, head: bytes) -> bool:
        return sniff(head) in IMAGE_FORMATS

    def query(self, source: MediaInput) -> ImageFingerprint:
        return image.fingerprint_bytes(read_all(source, self.limits.max_bytes), query=True)

    def stored(self, source: MediaInput) -> ImageFingerprint:
        return image.fingerprint_bytes(read_all(source, self.limits.max_bytes))

    def stored_of(self, query: ImageFingerprint) -> ImageFingerprint:
        """The query without its query-only views (its content box and page flag kept)."""
        return replace(query, query_codes=query.query_codes[:1], query_views=(), more=None)

    def query_of(self, stored: ImageFingerprint) -> ImageFingerprint:
        return stored

    def encode(self, stored: ImageFingerprint) -> Encoded:
        blob = image.encode(stored)
        return Encoded(blob, codes=tuple(_signed(c) for c in stored.codes[:2]))

    def decode(self, encoded: Encoded) -> ImageFingerprint:
        return image.decode(encoded.blob)

    def verify(self, query: ImageFingerprint, stored: ImageFingerprint) -> Match:
        """The query against the stored image, its main view first and every view only if
        that is not high, as a search does (so both report the same evidence); the service's
        compare runs it both ways and keeps the stronger, so a comparison does not depend on
        the order."""
        match = self._verify_views(query, stored)
        if query.more is None or IMAGE.label(match.score) == "high":
            return match
        return self._verify_views(query.expanded(), stored)

    @staticmethod
    def _verify_views(query: ImageFingerprint, stored: ImageFingerprint) -> Match:
        distance = image.best_distance(query, stored.code)
        evidence = (Evidence() if distance == 0 and not _featureless(query, stored)
                    else image.best_evidence(query, stored))
        return verdict(NO_KEY, query, stored, distance if distance <= CODE_RADIUS else None,
                       evidence)

    def new_index(self, load: Loader[ImageFingerprint], bands: int | None = None
                  ) -> ImageIndex:
        return ImageIndex(load, bands or DEFAULT_BANDS)

    def thumbnail(self, path: Path, side: int) -> bytes | None:
        im = image.open_image(read_all(path, self.limits.max_bytes), draft_side=side)
        im.thumbnail((side, side), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=80)
        return buf.getvalue()


def _signed(code: int) -> int:
    """A 64-bit code as the signed integer a database column holds."""
    return code - (1 << 64) if code >= 1 << 63 else code
