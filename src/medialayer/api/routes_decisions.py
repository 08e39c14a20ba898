"""Review decisions: what a reviewer did about a match or cluster, stored and listed per tenant.

The rows live in the catalog's `decisions` table. The SQL sits here because no service method
covers decisions yet; it belongs in the service layer once one does.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select

from medialayer.api.auth import ReviewKey
from medialayer.api.deps import ML
from medialayer.api.schemas import DecisionList, DecisionOut, DecisionRequest, MediaId, errors
from medialayer.catalog.models import Decision
from medialayer.service import MediaLayer

router = APIRouter(prefix="/v1", tags=["decisions"])


@router.post("/decisions", status_code=201, response_model=DecisionOut,
             responses=errors(403, 404))
async def record_decision(body: DecisionRequest, key: ReviewKey, ml: ML) -> dict[str, Any]:
    """Store a decision on one item or a pair; both must exist in the caller's tenant."""
    return await run_in_threadpool(_save, ml, key.tenant, body)


@router.get("/decisions", response_model=DecisionList, responses=errors(403))
async def list_decisions(key: ReviewKey, ml: ML, media_id: MediaId | None = None,
                         limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
    """The tenant's decisions, newest first, optionally those involving one item."""
    return {"items": await run_in_threadpool(_list, ml, key.tenant, media_id, limit)}


def _save(ml: MediaLayer, tenant: str, body: DecisionRequest) -> dict[str, Any]:
    for media_id in (body.media_id, body.other_media_id):
        if media_id is not None:
            ml.get(media_id, tenant=tenant)  # NotFound (404) for unknown or other tenants' ids
    row = Decision(id=str(uuid.uuid4()), tenant=tenant, media_id=body.media_id,
                   other_media_id=body.other_media_id, action=body.action, note=body.note)
    with ml.store.session.begin() as s:
        s.add(row)
    return _as_dict(row)


def _list(ml: MediaLayer, tenant: str, media_id: str | None, limit: int) -> list[dict[str, Any]]:
    q = select(Decision).where(Decision.tenant == tenant)
    if media_id is not None:
        q = q.where((Decision.media_id == media_id) | (Decision.other_media_id == media_id))
    with ml.store.session() as s:
        rows = s.scalars(q.order_by(Decision.created_at.desc(), Decision.id).limit(limit))
        return [_as_dict(r) for r in rows]


def _as_dict(row: Decision) -> dict[str, Any]:
    return {"id": row.id, "media_id": row.media_id, "other_media_id": row.other_media_id,
            "action": row.action, "note": row.note, "created_at": row.created_at}
