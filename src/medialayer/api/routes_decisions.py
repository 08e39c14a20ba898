"""Review decisions: what a reviewer did about a match or cluster, stored and listed per tenant."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool

from medialayer.api.auth import ReviewKey
from medialayer.api.deps import ML
from medialayer.api.schemas import DecisionList, DecisionOut, DecisionRequest, MediaId, errors

router = APIRouter(prefix="/v1", tags=["decisions"])


@router.post("/decisions", status_code=201, response_model=DecisionOut,
             responses=errors(403, 404))
async def record_decision(body: DecisionRequest, key: ReviewKey, ml: ML) -> dict[str, Any]:
    """Store a decision on one item or a pair; both must exist in the caller's tenant."""
    return await run_in_threadpool(ml.decide, body.media_id, body.action,
                                   other_media_id=body.other_media_id, note=body.note,
                                   tenant=key.tenant)


@router.get("/decisions", response_model=DecisionList, responses=errors(403))
async def list_decisions(key: ReviewKey, ml: ML, media_id: MediaId | None = None,
                         limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
    """The tenant's decisions, newest first, optionally those involving one item."""
    return {"items": await run_in_threadpool(ml.decisions, media_id, limit, key.tenant)}
