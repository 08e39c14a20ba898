"""Review decisions: what a reviewer did about a match or a cluster, per tenant."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from medialayer.catalog.models import Decision
from medialayer.catalog.store import SqlCatalogStore, as_utc

ACTIONS = ("consolidate", "flag", "reject", "dismiss")


def record(store: SqlCatalogStore, tenant: str, media_id: str, action: str,
           other_media_id: str | None = None, note: str | None = None) -> dict[str, Any]:
    row = Decision(id=str(uuid.uuid4()), tenant=tenant, media_id=media_id,
                   other_media_id=other_media_id, action=action, note=note)
    with store.session.begin() as s:
        s.add(row)
    return _as_dict(row)


def listing(store: SqlCatalogStore, tenant: str, media_id: str | None = None,
            limit: int = 100) -> list[dict[str, Any]]:
    """Newest first; with `media_id`, the decisions that involve that item."""
    q = select(Decision).where(Decision.tenant == tenant)
    if media_id is not None:
        q = q.where((Decision.media_id == media_id) | (Decision.other_media_id == media_id))
    with store.session() as s:
        rows = s.scalars(q.order_by(Decision.created_at.desc(), Decision.id).limit(limit))
        return [_as_dict(r) for r in rows]


def _as_dict(row: Decision) -> dict[str, Any]:
    return {"id": row.id, "media_id": row.media_id, "other_media_id": row.other_media_id,
            "action": row.action, "note": row.note, "created_at": as_utc(row.created_at)}
