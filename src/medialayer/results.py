"""What the use cases return: search hits, comparisons, clusters; each knows its JSON form."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medialayer.kinds.base import Segment

if TYPE_CHECKING:
    from medialayer.catalog.store import MediaRecord


@dataclass(frozen=True)
class SearchHit:
    media: MediaRecord
    similarity_score: float
    confidence: str
    segments: list[Segment] = field(default_factory=list)
    explanation: Mapping[str, object] | None = None
    canonical_id: str | None = None
    """The item a reviewer consolidated this one into (itself if it is the canonical)."""
    action: str = "allow"
    """What the tenant's policy says this match means (`medialayer.policies`)."""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"media_id": self.media.id, "media_type": self.media.media_type,
                               "name": self.media.name,
                               "external_id": self.media.external_id,
                               "similarity_score": self.similarity_score,
                               "confidence": self.confidence,
                               "canonical_id": self.canonical_id, "action": self.action}
        if self.segments:
            out["segments"] = [s.__dict__ for s in self.segments]
        if self.explanation is not None:
            out["explanation"] = dict(self.explanation)
        return out


@dataclass(frozen=True)
class SearchResult:
    results: list[SearchHit]
    query_media: MediaRecord | None = None
    action: str = "allow"
    """The most severe of the hits' policy actions."""
    missing_shards: list[int] = field(default_factory=list)
    """Index nodes (shard numbers) that did not answer: their part of the catalog was not
    searched, so a match may be missing from `results`."""

    @property
    def partial(self) -> bool:
        return bool(self.missing_shards)

    def as_dict(self) -> dict[str, Any]:
        return {"query_media_id": self.query_media.id if self.query_media else None,
                "action": self.action, "results": [h.as_dict() for h in self.results],
                "partial": self.partial, "missing_shards": self.missing_shards}


@dataclass(frozen=True)
class Comparison:
    similarity_score: float
    confidence: str
    segments: list[Segment] = field(default_factory=list)
    explanation: Mapping[str, object] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"similarity_score": self.similarity_score, "confidence": self.confidence,
                "segments": [s.__dict__ for s in self.segments],
                "explanation": None if self.explanation is None else dict(self.explanation)}


@dataclass(frozen=True)
class ClusterPair:
    """Two members of a cluster, their pair score and why they match."""

    a: str
    b: str
    similarity_score: float
    explanation: Mapping[str, object] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "similarity_score": self.similarity_score,
                "explanation": None if self.explanation is None else dict(self.explanation)}


@dataclass(frozen=True)
class Cluster:
    """Near-duplicates: the members and the scored pairs that joined them."""

    members: list[MediaRecord]
    pairs: list[ClusterPair]

    def as_dict(self) -> dict[str, Any]:
        return {"members": [m.as_dict() for m in self.members],
                "pairs": [p.as_dict() for p in self.pairs]}


@dataclass(frozen=True)
class MediaRef:
    """An item already in the catalog, used as a compare operand."""

    media_id: str


Source = bytes | str | Path | MediaRef
