"""Review decisions and media marks: what reviewers did, and the state it left items in.

A decision row is the audit entry too: who (API key id and name), when, what (action, items,
cluster, note), and the state of its subject before and after. Marks are the current state:
an item's status (flagged, rejected) and the canonical item it was consolidated into.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from medialayer.catalog.models import Decision, utcnow
from medialayer.catalog.review_models import MediaMark
from medialayer.catalog.store import as_utc
from medialayer.errors import InvalidInput

ACTIONS = ("consolidate", "flag", "reject", "dismiss")
STATUS_OF = {"flag": "flagged", "reject": "rejected"}


@dataclass(frozen=True)
class Actor:
    """Who made a decision: the API key's id and name (never the key)."""

    key_id: str | None
    name: str | None


@dataclass(frozen=True)
class Mark:
    status: str | None
    canonical_id: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "canonical_id": self.canonical_id}


NO_MARK = Mark(None, None)


def marks(session: Session, tenant: str, media_ids: list[str]) -> dict[str, Mark]:
    """Current marks of the tenant's items; items never decided on are absent."""
    if not media_ids:
        return {}
    rows = session.scalars(select(MediaMark).where(MediaMark.tenant == tenant,
                                                   MediaMark.media_id.in_(media_ids)))
    return {r.media_id: Mark(r.status, r.canonical_id) for r in rows}


def set_marks(session: Session, tenant: str, changes: dict[str, Mark]) -> None:
    for media_id, mark in changes.items():
        row = session.get(MediaMark, media_id)
        if row is None:
            session.add(MediaMark(media_id=media_id, tenant=tenant, status=mark.status,
                                  canonical_id=mark.canonical_id))
        else:
            row.status, row.canonical_id, row.updated_at = mark.status, mark.canonical_id, \
                utcnow()


def record(session: Session, tenant: str, actor: Actor, action: str, media_id: str, *,
           other_media_id: str | None = None, cluster_id: int | None = None,
           member_ids: list[str] | None = None, note: str | None = None,
           from_state: dict[str, Any], to_state: dict[str, Any]) -> dict[str, Any]:
    row = Decision(id=str(uuid.uuid4()), tenant=tenant, media_id=media_id,
                   other_media_id=other_media_id, action=action, note=note,
                   cluster_id=cluster_id, member_ids=member_ids, actor_key_id=actor.key_id,
                   actor_name=actor.name, from_state=from_state, to_state=to_state,
                   created_at=utcnow())
    session.add(row)
    session.flush()
    return as_dict(row)


def latest(session: Session, tenant: str, action: str, media_id: str,
           other_media_id: str | None) -> dict[str, Any] | None:
    """The newest decision with this action on exactly this subject: what a repeated request
    returns instead of recording the same decision twice."""
    q = select(Decision).where(Decision.tenant == tenant, Decision.action == action,
                               Decision.media_id == media_id)
    q = q.where(Decision.other_media_id.is_(None) if other_media_id is None
                else Decision.other_media_id == other_media_id)
    row = session.scalar(q.order_by(Decision.created_at.desc(), Decision.id.desc()).limit(1))
    return as_dict(row) if row else None


def listing(session: Session, tenant: str, media_id: str | None, cursor: str | None,
            limit: int) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first, a page at a time; with `media_id`, the decisions that involve that item."""
    q = select(Decision).where(Decision.tenant == tenant)
    if media_id is not None:
        q = q.where((Decision.media_id == media_id) | (Decision.other_media_id == media_id))
    if cursor:
        at, last_id = _decode(cursor)
        q = q.where(or_(Decision.created_at < at,
                        and_(Decision.created_at == at, Decision.id < last_id)))
    rows = list(session.scalars(q.order_by(Decision.created_at.desc(), Decision.id.desc())
                                .limit(limit + 1)))
    page = rows[:limit]
    more = len(rows) > limit
    return [as_dict(r) for r in page], (_encode(page[-1]) if more else None)


def as_dict(row: Decision) -> dict[str, Any]:
    return {"id": row.id, "media_id": row.media_id, "other_media_id": row.other_media_id,
            "action": row.action, "note": row.note, "cluster_id": row.cluster_id,
            "member_ids": row.member_ids, "created_at": as_utc(row.created_at),
            "actor": {"key_id": row.actor_key_id, "name": row.actor_name},
            "from_state": row.from_state, "to_state": row.to_state}


def _encode(row: Decision) -> str:
    moment = as_utc(row.created_at)
    assert moment is not None  # every decision is stamped when recorded
    raw = f"{moment.isoformat()}|{row.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment, last_id = raw.split("|", 1)
        return datetime.fromisoformat(moment), last_id
    except ValueError:
        raise InvalidInput("invalid cursor; pass next_cursor from the previous page") from None
