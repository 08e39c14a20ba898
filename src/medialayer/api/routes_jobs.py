"""Bulk ingestion over HTTP: a CSV of URLs becomes a persisted job; progress and errors per row."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.concurrency import iterate_in_threadpool, run_in_threadpool
from fastapi.responses import StreamingResponse

from medialayer.api.auth import IndexKey, ReadKey
from medialayer.api.deps import ML, AppSettings, invalid_field, read_upload
from medialayer.api.schemas import (
    MAX_SQL_INT,
    FormCsv,
    JobAccepted,
    JobErrors,
    JobOut,
    JobPage,
    PathId,
    errors,
    links,
)
from medialayer.csvfile import csv_lines
from medialayer.jobs import submit_csv

router = APIRouter(prefix="/v1", tags=["jobs"])


@router.post("/media/bulk", status_code=202, response_model=JobAccepted,
             responses={**errors(400, 403, 413), 202: links(
                 "job_id", GetJob=("GET", "/v1/jobs/{job_id}", "path.job_id"),
                 JobErrors=("GET", "/v1/jobs/{job_id}/errors", "path.job_id"),
                 JobErrorsCsv=("GET", "/v1/jobs/{job_id}/errors.csv", "path.job_id"))})
async def bulk(key: IndexKey, ml: ML, settings: AppSettings, file: FormCsv) -> dict[str, Any]:
    """Queue a CSV (columns url, media_type, name, external_id; others become metadata).

    Malformed lines fail alone and show in the job's errors; rows whose external_id is already
    in the catalog are done without a second copy.
    """
    text = await read_upload(file, settings)
    if b"\x00" in text:  # no row of it could be stored on PostgreSQL: refused whole, as there
        raise invalid_field(("body", "file"), "the CSV contains a NUL byte (\\x00)")
    job_id = await run_in_threadpool(submit_csv, ml, text, key.tenant, settings)
    return {"job_id": job_id}


@router.get("/jobs/{job_id}", response_model=JobOut, responses=errors(403, 404))
async def job(job_id: PathId, key: ReadKey, ml: ML) -> dict[str, Any]:
    """Progress: total, done, failed, pending, state, rate and ETA."""
    return (await run_in_threadpool(ml.job_progress, job_id, key.tenant)).as_dict()


@router.get("/jobs/{job_id}/errors", response_model=JobErrors, responses=errors(403, 404))
async def job_errors(job_id: PathId, key: ReadKey, ml: ML,
                     after: Annotated[int, Query(ge=0, le=MAX_SQL_INT,
                                                 description="Row number cursor")] = 0,
                     limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
    """Failed rows (row number, url, reason), in row order, a page at a time."""
    rows = await run_in_threadpool(ml.job_errors, job_id, after, limit + 1, key.tenant)
    page = rows[:limit]
    return {"errors": page, "next_after": page[-1]["row"] if len(rows) > limit else None}


@router.get("/jobs", response_model=JobPage, responses=errors(403, 404))
async def jobs(key: ReadKey, ml: ML, cursor: Annotated[str | None, Query(max_length=64)] = None,
               limit: Annotated[int, Query(ge=1, le=200)] = 50) -> dict[str, Any]:
    """The tenant's jobs with their progress, newest first, a page at a time."""
    found = await run_in_threadpool(ml.jobs, cursor, limit + 1, key.tenant)
    page = found[:limit]
    return {"items": [j.as_dict() for j in page],
            "next_cursor": page[-1].id if len(found) > limit else None}


@router.get("/jobs/{job_id}/errors.csv", response_class=StreamingResponse,
            responses={**errors(403, 404), 200: {"content": {"text/csv": {}},
                                                 "description": "row,url,external_id,error"}})
async def job_errors_csv(job_id: PathId, key: ReadKey, ml: ML) -> StreamingResponse:
    """Every failed row as a CSV download, to fix and submit again; cells a spreadsheet would
    run as formulas are quoted."""
    await run_in_threadpool(ml.job_progress, job_id, key.tenant)  # 404 first
    rows = ([r["row"], r["url"], r["external_id"], r["error"]]
            for r in ml.job_failed_rows(job_id, key.tenant))
    lines = csv_lines(["row", "url", "external_id", "error"], rows)
    return StreamingResponse(iterate_in_threadpool(lines), media_type="text/csv",
                             headers={"Content-Disposition":
                                      f'attachment; filename="job-{job_id}-errors.csv"'})
