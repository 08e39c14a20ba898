"""The media-kind protocol: adding a kind (image, video, audio) is adding one module."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Segment:
    """Aligned time ranges in seconds: where the query and the reference agree."""

    query_start: float
    query_end: float
    reference_start: float
    reference_end: float


@dataclass(frozen=True)
class Match:
    """A scored candidate: `key` is the catalog row's integer key."""

    key: int
    score: float
    segments: list[Segment] = field(default_factory=list)
    explanation: Mapping[str, object] | None = None
    """Why it matched (tier, inliers, matched boxes), when the kind can say; kept on edges."""


FingerprintLoader = Callable[[list[int]], dict[int, Any]]
"""Decoded stored fingerprints by key (keys gone from the catalog are absent): an index reads
its candidates back from the catalog instead of holding every item's whole fingerprint."""


class KindIndex(Protocol):
    """In-memory search structure of one kind for one tenant, rebuilt from the catalog."""

    def add(self, key: int, fingerprint: Any) -> None: ...
    def remove(self, key: int) -> bool: ...
    def search(self, query: Any, top_k: int, min_score: float,
               exclude: int | None = None) -> list[Match]: ...
    def prepare(self) -> None: ...
    def ready(self) -> bool: ...
    def __len__(self) -> int: ...
    def nbytes(self) -> int: ...


class MediaKind(Protocol):
    """Decode, fingerprint and compare one kind of media; the service stays generic."""

    name: str

    def fingerprint(self, data: bytes, query: bool = False) -> Any: ...
    def encode(self, fingerprint: Any) -> bytes: ...
    def decode(self, blob: bytes) -> Any: ...
    def compare(self, query: Any, reference: Any) -> Match: ...
    def new_index(self, load: FingerprintLoader) -> KindIndex: ...
