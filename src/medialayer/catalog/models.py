"""Catalog tables. The database is the source of truth; every in-memory index is rebuilt from it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL wants a BIGINT identity.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


class Media(Base):
    """One catalog item. `seq` is the compact integer key the in-memory indexes use."""

    __tablename__ = "media"

    seq: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), unique=True, nullable=False)
    tenant: Mapped[str] = mapped_column(String(128), nullable=False)
    media_type: Mapped[str] = mapped_column(String(16), nullable=False)
    name: Mapped[str | None] = mapped_column(Text)
    external_id: Mapped[str | None] = mapped_column(String(512))
    source: Mapped[str | None] = mapped_column(Text)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, nullable=False,
                                                      default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    fingerprint: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    """What the kind keeps whole (may be empty when all of it is in chunks)."""
    fingerprint_version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    """The kind's stored-format version when the row was written; other versions are refused."""
    duration: Mapped[float | None] = mapped_column(Float)
    """Seconds of media for time-based kinds; null for still media."""

    __table_args__ = (
        Index("ix_media_tenant_type_seq", "tenant", "media_type", "seq"),
        # covering: the start-up code load reads a row's tenant and version from here, never
        # from the row, whose fingerprint blob comes first (migration 0007)
        Index("ix_media_type_seq_tenant_version", "media_type", "seq", "tenant",
              "fingerprint_version"),
        Index("ux_media_tenant_external_id", "tenant", "external_id", unique=True),
        {"sqlite_autoincrement": True},  # a deleted item's seq is never handed out again
    )


class MediaCode(Base):
    """A searchable integer code of an item (an image's dHash and its mirror's), in a column of
    its own so the database itself could serve a first tier (an index on code)."""

    __tablename__ = "media_codes"

    media_seq: Mapped[int] = mapped_column(
        BigIntPK, ForeignKey("media.seq", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[int] = mapped_column(BigInteger, nullable=False)

    __table_args__ = (Index("ix_media_codes_code", "code"),)


class FingerprintChunk(Base):
    """A time slice of a time-based item's fingerprint: verification reads the chunks near a
    voted offset, not the whole fingerprint."""

    __tablename__ = "fingerprint_chunks"

    media_seq: Mapped[int] = mapped_column(
        BigIntPK, ForeignKey("media.seq", ondelete="CASCADE"), primary_key=True)
    chunk: Mapped[int] = mapped_column(Integer, primary_key=True)
    t_start: Mapped[float] = mapped_column(Float, nullable=False)
    t_end: Mapped[float] = mapped_column(Float, nullable=False)
    blob: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)


class Deletion(Base):
    """A log of deleted media, so other processes can drop them from their indexes too."""

    __tablename__ = "deletions"

    seq: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    media_seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    media_type: Mapped[str] = mapped_column(String(16), nullable=False)
    tenant: Mapped[str] = mapped_column(String(128), nullable=False)
    deleted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (
        Index("ix_deletions_type_seq", "media_type", "seq"),
        {"sqlite_autoincrement": True},  # processes follow the log by seq, even once pruned
    )


class ApiKey(Base):
    """An API key, stored only as a SHA-256 digest; the key itself is shown once at creation."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128), nullable=False)
    name: Mapped[str | None] = mapped_column(Text)
    prefix: Mapped[str] = mapped_column(String(16), nullable=False)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    scopes: Mapped[str] = mapped_column(String(128), nullable=False)
    rate_limit: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Decision(Base):
    """A reviewer's decision on a match or a cluster (consolidate, flag, reject, dismiss).

    Each row is also the audit entry: who (key id and name), when, what, and the state the
    subject was in before (`from_state`) and after (`to_state`).
    """

    __tablename__ = "decisions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128), nullable=False)
    media_id: Mapped[str] = mapped_column(String(36), nullable=False)
    other_media_id: Mapped[str | None] = mapped_column(String(36))
    action: Mapped[str] = mapped_column(String(16), nullable=False)
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    cluster_id: Mapped[int | None] = mapped_column(BigInteger)
    member_ids: Mapped[list[str] | None] = mapped_column(JSON)
    actor_key_id: Mapped[str | None] = mapped_column(String(36))
    actor_name: Mapped[str | None] = mapped_column(Text)
    from_state: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    to_state: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    __table_args__ = (Index("ix_decisions_tenant_created", "tenant", "created_at", "id"),)


class Job(Base):
    """A bulk ingestion job; its rows are claimed by workers straight from the database."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128), nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="queued")
    total: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    allow_paths: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    """Local CLI jobs may name files; jobs submitted over HTTP may only name URLs."""


class JobRow(Base):
    """One CSV row of a job: pending -> done | failed, exactly once."""

    __tablename__ = "job_rows"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False)
    row_number: Mapped[int] = mapped_column(Integer, nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="pending")
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    media_id: Mapped[str | None] = mapped_column(String(36))
    error: Mapped[str | None] = mapped_column(Text)
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    claim_token: Mapped[str | None] = mapped_column(String(36))
    """Who holds the row: a worker may only complete rows still carrying its own token."""
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_job_rows_job_state", "job_id", "state"),
                      Index("ix_job_rows_state_id", "state", "id"))
