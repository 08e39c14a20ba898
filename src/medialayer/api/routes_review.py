"""Review routes: kept duplicate clusters, the queue of open pairs, decisions that take effect."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from fastapi.concurrency import run_in_threadpool

from medialayer.api.auth import ReviewKey, ReviewReadKey
from medialayer.api.deps import ML
from medialayer.api.schemas import Confidence, MediaId, Storable, errors
from medialayer.api.schemas_review import (
    ID_MAX,
    ClusterOut,
    ClustersOut,
    DecisionList,
    DecisionOut,
    DecisionRequest,
    QueueOut,
)
from medialayer.catalog.decisions import NO_MARK, Actor
from medialayer.errors import InvalidInput
from medialayer.kinds import get_kind
from medialayer.review import Pair, QueueFilter

router = APIRouter(prefix="/v1", tags=["review"])
Limit = Annotated[int, Query(ge=1, le=500)]
KindFilter = Annotated[str | None, Query(max_length=16, description="One media type's "
                                         "items only; every type's if absent."), Storable]


@router.get("/duplicates/clusters", response_model=ClustersOut, responses=errors(400, 403))
async def clusters(key: ReviewReadKey, ml: ML, media_type: KindFilter = None,
                   min_confidence: Confidence = "medium",
                   cursor: Annotated[str | None, Query(max_length=32)] = None,
                   limit: Limit = 50) -> dict[str, Any]:
    """Kept clusters of the tenant's near-duplicates, newest first, a page at a time.

    Read from the match edges kept as items were added, minus pairs dismissed as "not a
    duplicate"; `low` reads as `medium` (low matches are not kept). Every media type's clusters
    unless `media_type` narrows them (a cluster never mixes types: matches are within a kind).
    """
    if media_type:
        get_kind(media_type)
    page = await run_in_threadpool(ml.review.clusters, key.tenant, media_type or None,
                                   min_confidence, _before(cursor), limit + 1)
    shown = page[:limit]
    return {"clusters": [c.as_dict() for c in shown],
            "next_cursor": str(shown[-1].id) if len(page) > limit else None}


@router.get("/duplicates/clusters/{cluster_id}", response_model=ClusterOut,
            responses=errors(403, 404))
async def cluster(cluster_id: Annotated[int, Path(ge=1, le=ID_MAX)], key: ReviewReadKey,
                  ml: ML) -> dict[str, Any]:
    """One cluster; an id whose cluster merged into another answers with that one."""
    return (await run_in_threadpool(ml.review.cluster, key.tenant, cluster_id)).as_dict()


@router.get("/duplicates/pairs", response_model=QueueOut, responses=errors(400, 403))
async def queue(key: ReviewReadKey, ml: ML, media_type: KindFilter = None,
                min_confidence: Confidence = "medium",
                seller: Annotated[str | None, Query(max_length=200), Storable] = None,
                category: Annotated[str | None, Query(max_length=200), Storable] = None,
                cross_seller: bool = False, sort: str = "newest",
                offset: Annotated[int, Query(ge=0, le=ID_MAX)] = 0,
                limit: Limit = 50) -> dict[str, Any]:
    """Open pairs (matched, not dismissed, not consolidated together, neither rejected),
    newest or highest-scoring first; filter by metadata `seller` / `category`."""
    filters = queue_filter(media_type, min_confidence, seller, category, cross_seller, sort)
    pairs = await run_in_threadpool(ml.review.queue, key.tenant, filters, offset, limit + 1)
    return {"items": [pair_dict(p) for p in pairs[:limit]],
            "next_offset": offset + limit if len(pairs) > limit else None}


@router.post("/decisions", status_code=201, response_model=DecisionOut,
             responses={**errors(400, 403, 404), 200: {"model": DecisionOut, "description":
                        "The same decision was made before; nothing changed."}})
async def record_decision(body: DecisionRequest, key: ReviewKey, ml: ML,
                          response: Response) -> dict[str, Any]:
    """Apply a decision to an item, a pair or a cluster; it takes effect at once (see the
    review guide) and is audited with the key's id and name and the state before and after."""
    made = await run_in_threadpool(ml.decide, body.media_id, body.action,
                                   other_media_id=body.other_media_id,
                                   cluster_id=body.cluster_id, note=body.note,
                                   tenant=key.tenant, actor=Actor(key.id, key.name))
    if not made["created"]:
        response.status_code = 200
    return made


@router.get("/decisions", response_model=DecisionList, responses=errors(400, 403))
async def list_decisions(key: ReviewReadKey, ml: ML, media_id: MediaId | None = None,
                         cursor: Annotated[str | None, Query(max_length=200)] = None,
                         limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
    """The tenant's decisions (the audit trail), newest first, a page at a time."""
    items, next_cursor = await run_in_threadpool(ml.review.decisions, key.tenant, media_id,
                                                 cursor, limit)
    return {"items": items, "next_cursor": next_cursor}


def queue_filter(media_type: str | None, min_confidence: str, seller: str | None,
                 category: str | None, cross_seller: bool, sort: str) -> QueueFilter:
    if media_type:
        get_kind(media_type)
    if sort not in ("newest", "score"):
        raise InvalidInput("sort must be newest or score")
    return QueueFilter(media_type or None, min_confidence, seller or None, category or None,
                       cross_seller, sort)


def pair_dict(pair: Pair) -> dict[str, Any]:
    return {**pair.as_dict(),
            "a_media": {**pair.a.as_dict(), **pair.marks.get(pair.a.id, NO_MARK).as_dict()},
            "b_media": {**pair.b.as_dict(), **pair.marks.get(pair.b.id, NO_MARK).as_dict()}}


def _before(cursor: str | None) -> int | None:
    if not cursor:
        return None
    if not cursor.isdigit() or int(cursor) > ID_MAX:
        raise InvalidInput("invalid cursor; pass next_cursor from the previous page")
    return int(cursor)
