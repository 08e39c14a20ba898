"""Matching routes: search the tenant's catalog, compare two items."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request

from medialayer.api.auth import SearchKey, require_scope_for
from medialayer.api.deps import ML, AppSettings, MediaType, cpu_bound, read_upload
from medialayer.api.schemas import (
    CompareOut,
    CompareRequest,
    FormExternalId,
    FormFile,
    FormMetadata,
    FormMinScore,
    FormName,
    FormTopK,
    Operand,
    SearchOut,
    SearchUrl,
    errors,
)
from medialayer.config import Settings
from medialayer.fetch import fetch
from medialayer.kinds import get_kind
from medialayer.results import MediaRef, Source

router = APIRouter(prefix="/v1", tags=["search"])


@router.post("/search/{media_type}/url", response_model=SearchOut,
             responses=errors(400, 403, 409, 413, 415, 502))
async def search_url(request: Request, body: SearchUrl, media_type: MediaType, key: SearchKey,
                     ml: ML, settings: AppSettings) -> dict[str, Any]:
    """Rank the catalog against the media at a URL; with index=true, add it afterwards."""
    if body.index:
        require_scope_for(key, "index", "index=true")
    data = await fetch(str(body.url), settings)
    result = await cpu_bound(
        request, ml.search, data, media_type, top_k=body.top_k, min_score=body.min_score,
        index=body.index, name=body.name, external_id=body.external_id, metadata=body.metadata,
        tenant=key.tenant, source_label=str(body.url))
    return result.as_dict()


@router.post("/search/{media_type}/upload", response_model=SearchOut,
             responses=errors(400, 403, 409, 413, 415))
async def search_upload(request: Request, media_type: MediaType, key: SearchKey, ml: ML,
                        settings: AppSettings, file: FormFile, top_k: FormTopK = 5,
                        min_score: FormMinScore = 0.0,
                        index: Annotated[bool, Form()] = False, name: FormName = None,
                        external_id: FormExternalId = None,
                        metadata: FormMetadata = None) -> dict[str, Any]:
    """Rank the catalog against an uploaded file; with index=true, add it afterwards."""
    if index:
        require_scope_for(key, "index", "index=true")
    data = await read_upload(file, settings)
    result = await cpu_bound(
        request, ml.search, data, media_type, top_k=top_k, min_score=min_score, index=index,
        name=name or file.filename, external_id=external_id, metadata=metadata,
        tenant=key.tenant)
    return result.as_dict()


@router.post("/compare", response_model=CompareOut,
             responses=errors(400, 403, 404, 413, 415, 502))
async def compare(request: Request, body: CompareRequest, key: SearchKey, ml: ML,
                  settings: AppSettings) -> dict[str, Any]:
    """Score two media against each other; each is a URL or a media_id of this tenant."""
    if body.media_type is not None:
        get_kind(body.media_type)
    a = await _source(body.a, settings)
    b = await _source(body.b, settings)
    result = await cpu_bound(request, ml.compare, a, b, body.media_type, tenant=key.tenant)
    return result.as_dict()


@router.post("/compare/upload", response_model=CompareOut,
             responses=errors(400, 403, 413, 415))
async def compare_upload(request: Request, key: SearchKey, ml: ML, settings: AppSettings,
                         a: FormFile, b: FormFile,
                         media_type: Annotated[str | None, Form()] = None) -> dict[str, Any]:
    """Score two uploaded files against each other (their kind sniffed if not given)."""
    if media_type is not None:
        get_kind(media_type)
    data_a = await read_upload(a, settings)
    data_b = await read_upload(b, settings)
    result = await cpu_bound(request, ml.compare, data_a, data_b, media_type,
                             tenant=key.tenant)
    return result.as_dict()


async def _source(operand: Operand, settings: Settings) -> Source:
    if operand.media_id is not None:
        return MediaRef(operand.media_id)
    return await fetch(str(operand.url), settings)
