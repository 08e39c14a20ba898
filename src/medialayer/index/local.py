"""Candidate search over local binary descriptors (ORB), for the crop/screenshot tier.

Each catalog item contributes a few hundred 256-bit descriptors. A query votes for the items whose
descriptors are nearest to its own; the best-voted items then go to geometric verification.
This is exact nearest-neighbour voting, brute force over one packed matrix: simple and right for
catalogs up to about 10^5 images. An inverted index can replace it behind the same interface.
"""

from __future__ import annotations

import cv2
import numpy as np

MAX_MATCH_DISTANCE = 50
"""A nearest descriptor further than this (of 256 bits) is noise and casts no vote."""


class LocalFeatureIndex:
    """Descriptors of many items, voted on by a query's descriptors."""

    def __init__(self) -> None:
        self._items: dict[int, np.ndarray] = {}
        self._matrix: np.ndarray | None = None
        self._owners: np.ndarray | None = None
        self._matcher = cv2.BFMatcher(cv2.NORM_HAMMING)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: int) -> bool:
        return key in self._items

    def add(self, key: int, descriptors: np.ndarray) -> None:
        if len(descriptors):
            self._items[key] = descriptors
            self._matrix = None

    def remove(self, key: int) -> bool:
        found = self._items.pop(key, None) is not None
        if found:
            self._matrix = None
        return found

    def nbytes(self) -> int:
        return sum(d.nbytes for d in self._items.values())

    def vote(self, descriptors: np.ndarray, top: int = 5, min_votes: int = 3,
             exclude: int | None = None) -> list[tuple[int, int]]:
        """(key, votes) of the items most often nearest to the query's descriptors.

        `exclude` is the query's own key when a catalog item searches for its duplicates: its own
        descriptors would otherwise win every vote, so the nearest other owner votes instead.
        """
        if not self._items or len(descriptors) == 0:
            return []
        matrix, owners = self._packed()
        voters = []
        for pair in self._matcher.knnMatch(descriptors, matrix, k=1 if exclude is None else 2):
            nearest = next((m for m in pair if owners[m.trainIdx] != exclude), None)
            if nearest is not None and nearest.distance <= MAX_MATCH_DISTANCE:
                voters.append(owners[nearest.trainIdx])
        if not voters:
            return []
        keys, votes = np.unique(np.array(voters, dtype=np.int64), return_counts=True)
        order = np.argsort(-votes, kind="stable")[:top]
        return [(int(keys[i]), int(votes[i])) for i in order if votes[i] >= min_votes]

    def _packed(self) -> tuple[np.ndarray, np.ndarray]:
        if self._matrix is None:
            keys = list(self._items)
            self._matrix = np.concatenate([self._items[k] for k in keys])
            self._owners = np.repeat(np.array(keys, dtype=np.int64),
                                     [len(self._items[k]) for k in keys])
        return self._matrix, self._owners
