"""Tables of the review workflow: match edges, kept clusters, media marks, UI sessions.

Kept apart from `models` (media, keys, jobs) because they change for another reason: how a
catalog team acts on matches, not how media is stored.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    Index,
    Integer,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column

from medialayer.catalog.models import Base, BigIntPK, utcnow


class MatchEdge(Base):
    """A match found between two catalog items (a_seq < b_seq), kept as found.

    `dismissed` is a reviewer's "not a duplicate": the edge stays (so finding the pair again
    does not bring it back) but no longer joins clusters or shows in the queue.
    """

    __tablename__ = "match_edges"

    a_seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    b_seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128), nullable=False)
    media_type: Mapped[str] = mapped_column(String(16), nullable=False)
    score: Mapped[float] = mapped_column(Float, nullable=False)
    confidence: Mapped[str] = mapped_column(String(8), nullable=False)
    explanation: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    dismissed: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    found_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (Index("ix_match_edges_b", "b_seq"),
                      Index("ix_match_edges_tenant_found", "tenant", "media_type", "found_at"))


class ClusterRow(Base):
    """A kept cluster at one confidence level; `merged_into` points at the cluster that took
    its members, so an id a reviewer holds still leads somewhere."""

    __tablename__ = "clusters"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(128), nullable=False)
    media_type: Mapped[str] = mapped_column(String(16), nullable=False)
    level: Mapped[str] = mapped_column(String(8), nullable=False)
    size: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    top_score: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    merged_into: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (Index("ix_clusters_page", "tenant", "media_type", "level", "id"),)


class ClusterMember(Base):
    """Which cluster an item belongs to, per confidence level (an item is in at most one)."""

    __tablename__ = "cluster_members"

    level: Mapped[str] = mapped_column(String(8), primary_key=True)
    media_seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    cluster_id: Mapped[int] = mapped_column(BigInteger, nullable=False)

    __table_args__ = (Index("ix_cluster_members_cluster", "cluster_id"),)


class MediaMark(Base):
    """What reviewers decided about one item: flagged or rejected, and its canonical item.

    Keyed by media id (not seq) so the mark survives an upsert that re-fingerprints the item.
    """

    __tablename__ = "media_marks"

    media_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128), nullable=False)
    status: Mapped[str | None] = mapped_column(String(16))
    canonical_id: Mapped[str | None] = mapped_column(String(36))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (Index("ix_media_marks_canonical", "canonical_id"),)


class UiSession(Base):
    """A signed-in review UI session: the cookie holds a random token, this row its digest."""

    __tablename__ = "ui_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(36), nullable=False)
    csrf: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
