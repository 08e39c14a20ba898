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

    __table_args__ = (Index("ix_clusters_page", "tenant", "media_type", "level", "id"),
                      Index("ix_clusters_tenant_level", "tenant", "level", "id"))


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


class PolicyRule(Base):
    """One rule of a tenant's policy: matches in a score band, of a media type, across sellers
    or not, with given metadata, lead to an action. Rules are tried in `position` order."""

    __tablename__ = "policy_rules"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(128), nullable=False)
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    action: Mapped[str] = mapped_column(String(16), nullable=False)
    media_type: Mapped[str | None] = mapped_column(String(16))
    min_score: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    max_score: Mapped[float] = mapped_column(Float, nullable=False, default=1.0)
    cross_seller: Mapped[bool | None] = mapped_column(Boolean)
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)

    __table_args__ = (Index("ix_policy_rules_tenant", "tenant", "position"),)


class Webhook(Base):
    """A receiver of a tenant's events, with the secret its deliveries are signed with."""

    __tablename__ = "webhooks"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128), nullable=False)
    url: Mapped[str] = mapped_column(String(2000), nullable=False)
    secret: Mapped[str] = mapped_column(String(128), nullable=False)
    events: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WebhookDelivery(Base):
    """One event for one webhook: the delivery log, and the queue the dispatcher works from.

    pending -> sending (leased until `lease_until`) -> delivered | pending again (retry, with
    `next_attempt_at` backing off) | failed (out of attempts). `dedupe` makes an event that
    must be sent once (a job's completion) enqueue once.
    """

    __tablename__ = "webhook_deliveries"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    webhook_id: Mapped[str] = mapped_column(String(36), nullable=False)
    tenant: Mapped[str] = mapped_column(String(128), nullable=False)
    event: Mapped[str] = mapped_column(String(32), nullable=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    dedupe: Mapped[str | None] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="pending")
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),
                      Index("ix_webhook_deliveries_hook", "webhook_id", "created_at"),
                      Index("ux_webhook_deliveries_dedupe", "webhook_id", "dedupe",
                            unique=True))
