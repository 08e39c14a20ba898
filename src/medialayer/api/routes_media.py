"""Catalog routes: add media (by URL or upload), read, list and delete it, within the key's tenant.

Fingerprinting and SQL run in the threadpool (`run_in_threadpool`), never on the event loop, so a
slow decode on one request does not stall every other one.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi import Path as FastPath
from fastapi.concurrency import run_in_threadpool

from medialayer.api.auth import IndexKey, ReadKey
from medialayer.api.deps import ML, AppSettings, MediaType, cpu_bound, read_upload
from medialayer.api.schemas import (
    MAX_SQL_INT,
    MEDIA_LINKS,
    FormExternalId,
    FormFile,
    FormMetadata,
    FormName,
    IndexUrl,
    MediaOut,
    MediaPage,
    PathId,
    Storable,
    UpsertUrl,
    errors,
)
from medialayer.errors import InvalidInput
from medialayer.fetch import fetch
from medialayer.kinds import get_kind

router = APIRouter(prefix="/v1", tags=["media"])
CURSOR_PREFIX = "seq:"


@router.post("/media/{media_type}/url", status_code=201, response_model=MediaOut,
             responses={**errors(400, 403, 409, 413, 415, 502), 201: MEDIA_LINKS})
async def index_url(request: Request, body: IndexUrl, media_type: MediaType, key: IndexKey,
                    ml: ML, settings: AppSettings) -> dict[str, Any]:
    """Fetch the URL (SSRF-safe, capped), fingerprint it and add it to the catalog."""
    data = await fetch(str(body.url), settings)
    record = await cpu_bound(
        request, ml.index, data, media_type, name=body.name, external_id=body.external_id,
        metadata=body.metadata, tenant=key.tenant, source_label=str(body.url))
    return record.as_dict()


@router.put("/media/{media_type}/external/{external_id}", response_model=MediaOut,
            responses={**errors(400, 403, 413, 415, 502), 200: MEDIA_LINKS,
                       201: {"model": MediaOut, "description": "Added: the id was new.",
                             **MEDIA_LINKS}})
async def upsert_url(request: Request, body: UpsertUrl, media_type: MediaType,
                     external_id: Annotated[str, FastPath(min_length=1, max_length=512), Storable],
                     key: IndexKey, ml: ML, settings: AppSettings,
                     response: Response) -> dict[str, Any]:
    """Add or update the item with this external id (SKU): 201 when added; 200 when updated,
    with the same media id whether its media changed (re-fingerprinted) or only its fields."""
    data = await fetch(str(body.url), settings)
    record, added = await cpu_bound(
        request, ml.upsert, data, media_type, external_id, name=body.name,
        metadata=body.metadata, tenant=key.tenant, source_label=str(body.url))
    response.status_code = 201 if added else 200
    return record.as_dict()


@router.post("/media/{media_type}/upload", status_code=201, response_model=MediaOut,
             responses={**errors(400, 403, 409, 413, 415), 201: MEDIA_LINKS})
async def index_upload(request: Request, media_type: MediaType, key: IndexKey, ml: ML,
                       settings: AppSettings, file: FormFile, name: FormName = None,
                       external_id: FormExternalId = None,
                       metadata: FormMetadata = None) -> dict[str, Any]:
    """Fingerprint an uploaded file and add it to the catalog."""
    data = await read_upload(file, settings)
    record = await cpu_bound(
        request, ml.index, data, media_type, name=name or file.filename, external_id=external_id,
        metadata=metadata, tenant=key.tenant)
    return record.as_dict()


@router.get("/media/{media_id}", response_model=MediaOut, responses=errors(403, 404))
async def get_media(media_id: PathId, key: ReadKey, ml: ML) -> dict[str, Any]:
    return (await run_in_threadpool(ml.get, media_id, tenant=key.tenant)).as_dict()


@router.get("/media", response_model=MediaPage, responses=errors(400, 403))
async def list_media(key: ReadKey, ml: ML, media_type: str | None = None,
                     cursor: Annotated[str | None, Query(max_length=64)] = None,
                     limit: Annotated[int, Query(ge=1, le=500)] = 50,
                     external_id: Annotated[str | None, Query(
                         min_length=1, max_length=512,
                         description="A SKU: the item with this external id, if any."),
                         Storable] = None) -> dict[str, Any]:
    """The tenant's media in insertion order, a page at a time; or the one with an external id."""
    if media_type is not None:
        get_kind(media_type)
    if external_id is not None:
        found = await run_in_threadpool(ml.get_by_external_id, external_id, key.tenant)
        return {"items": [found.as_dict()] if found else [], "next_cursor": None}
    records = await run_in_threadpool(ml.list, media_type, after=_decode_cursor(cursor),
                                      limit=limit + 1, tenant=key.tenant)
    page = records[:limit]
    more = len(records) > limit
    return {"items": [r.as_dict() for r in page],
            "next_cursor": _encode_cursor(page[-1].seq) if more else None}


@router.delete("/media/{media_id}", status_code=204, response_class=Response,
               responses=errors(403, 404))
async def delete_media(media_id: PathId, key: IndexKey, ml: ML) -> Response:
    """Remove an item from the catalog and from every process's index."""
    await run_in_threadpool(ml.delete, media_id, tenant=key.tenant)
    return Response(status_code=204)


def _encode_cursor(seq: int) -> str:
    """Opaque on purpose: clients must not build cursors, so the encoding can change."""
    return base64.urlsafe_b64encode(f"{CURSOR_PREFIX}{seq}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> int:
    """The sequence number in a cursor; anything a server could not have made is a 400 (a
    number past what the database holds would overflow the query)."""
    if not cursor:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        digits = text.removeprefix(CURSOR_PREFIX)
        if text.startswith(CURSOR_PREFIX) and digits.isdigit() and int(digits) <= MAX_SQL_INT:
            return int(digits)
    except ValueError:
        pass
    raise InvalidInput("invalid cursor; pass next_cursor from the previous page")
