"""Bulk jobs in the catalog: rows are claimed from the database, so any number of workers can
come and go (or be killed) without a row being lost or done twice.

A worker claims a batch by stamping its rows with a fresh token (`FOR UPDATE SKIP LOCKED` on
PostgreSQL, so concurrent workers take disjoint rows). It may only finish a row that still carries
its token, in the same transaction that writes the row's media; a row whose worker died is
claimable again once its claim is older than the stale timeout.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, case, func, or_, select, update
from sqlalchemy.orm import Session

from medialayer.catalog.models import Job, JobRow
from medialayer.catalog.store import SqlCatalogStore, as_utc
from medialayer.errors import NotFound


class ClaimLost(Exception):
    """The row was re-claimed by another worker (ours looked dead); our result is dropped."""


@dataclass(frozen=True)
class Claim:
    row_id: int
    token: str
    job_id: str
    tenant: str
    row_number: int
    payload: dict[str, Any]
    allow_paths: bool


@dataclass(frozen=True)
class Progress:
    id: str
    state: str
    total: int
    done: int
    failed: int
    pending: int
    created_at: datetime | None
    finished_at: datetime | None
    rate: float | None
    eta_seconds: float | None

    def as_dict(self) -> dict[str, Any]:
        return {"job_id": self.id, "state": self.state, "total": self.total, "done": self.done,
                "failed": self.failed, "pending": self.pending,
                "created_at": self.created_at.isoformat() if self.created_at else None,
                "finished_at": self.finished_at.isoformat() if self.finished_at else None,
                "rate_per_second": self.rate, "eta_seconds": self.eta_seconds}


def now() -> datetime:
    return datetime.now(UTC)


def create_job(store: SqlCatalogStore, tenant: str, rows: list[dict[str, Any]],
               errors: list[tuple[int, dict[str, Any], str]], allow_paths: bool = False) -> str:
    """Persist a job: valid rows pending, rows already known to be bad failed with their reason."""
    job_id = str(uuid.uuid4())
    with store.session.begin() as s:
        s.add(Job(id=job_id, tenant=tenant, state="queued", total=len(rows) + len(errors),
                  allow_paths=allow_paths))
        s.flush()
        s.add_all(JobRow(job_id=job_id, row_number=r["_row"], state="pending", payload=r)
                  for r in rows)
        s.add_all(JobRow(job_id=job_id, row_number=n, state="failed", payload=payload,
                         error=reason, finished_at=now()) for n, payload, reason in errors)
    return job_id


def claim_rows(store: SqlCatalogStore, limit: int, stale_after: float,
               job_id: str | None = None) -> list[Claim]:
    """Take up to `limit` pending (or abandoned) rows for this worker."""
    token = str(uuid.uuid4())
    stale = now() - timedelta(seconds=stale_after)
    claimable = or_(JobRow.state == "pending",
                    and_(JobRow.state == "claimed", JobRow.claimed_at < stale))
    with store.session.begin() as s:
        q = select(JobRow.id).where(claimable).order_by(JobRow.id).limit(limit)
        if job_id is not None:
            q = q.where(JobRow.job_id == job_id)
        ids = list(s.scalars(q.with_for_update(skip_locked=True)))
        if not ids:
            return []
        s.execute(update(JobRow).where(JobRow.id.in_(ids), claimable)
                  .values(state="claimed", claim_token=token, claimed_at=now()))
        rows = s.execute(select(JobRow, Job).join(Job, Job.id == JobRow.job_id)
                         .where(JobRow.claim_token == token)).all()
        for job in {j.id: j for _, j in rows}.values():
            if job.started_at is None:
                job.started_at = now()
                job.state = "running"
        return [Claim(r.id, token, r.job_id, j.tenant, r.row_number, dict(r.payload),
                      j.allow_paths) for r, j in rows]


def complete_row(session: Session, claim: Claim, media_id: str) -> None:
    """Mark the row done inside the caller's transaction; raise ClaimLost if it isn't ours."""
    complete_rows(session, [(claim, media_id)])


def complete_rows(session: Session, done: list[tuple[Claim, str]]) -> None:
    """Mark rows done with their media inside the caller's transaction, in one statement;
    raise ClaimLost unless every one of them is still claimed by us."""
    media = {claim.row_id: media_id for claim, media_id in done}
    token = {claim.row_id: claim.token for claim, _ in done}
    table = cast(Table, JobRow.__table__)
    result = session.execute(
        update(table).where(table.c.id.in_(list(media)), table.c.state == "claimed",
                            table.c.claim_token == case(token, value=table.c.id))
        .values(state="done", media_id=case(media, value=table.c.id), finished_at=now()))
    updated = int(getattr(result, "rowcount", 0))
    if updated != len(media):
        raise ClaimLost(f"{len(media) - updated} of rows {sorted(media)} were claimed "
                        "by another worker")


def finish_row(store: SqlCatalogStore, claim: Claim, media_id: str | None = None,
               error: str | None = None) -> bool:
    """Done with an existing media (idempotent re-run), or failed with a reason."""
    with store.session.begin() as s:
        if error is None:
            try:
                complete_row(s, claim, media_id or "")
            except ClaimLost:
                return False
            return True
        result = s.execute(
            update(JobRow).where(JobRow.id == claim.row_id, JobRow.claim_token == claim.token,
                                 JobRow.state == "claimed")
            .values(state="failed", error=error[:2000], finished_at=now()))
        return int(getattr(result, "rowcount", 0)) == 1


def progress(store: SqlCatalogStore, tenant: str, job_id: str) -> Progress:
    with store.session() as s:
        job = s.scalar(select(Job).where(Job.id == job_id, Job.tenant == tenant))
        if job is None:
            raise NotFound(f"no job {job_id}")
        counts = dict(s.execute(select(JobRow.state, func.count()).where(JobRow.job_id == job_id)
                                .group_by(JobRow.state)).all())
        last = s.scalar(select(func.max(JobRow.finished_at)).where(JobRow.job_id == job_id))
    done, failed = counts.get("done", 0), counts.get("failed", 0)
    pending = counts.get("pending", 0) + counts.get("claimed", 0)
    state = "done" if pending == 0 else ("running" if job.started_at else "queued")
    rate = eta = None
    if job.started_at is not None:
        end = (as_utc(last) if pending == 0 else None) or now()
        elapsed = (end - (as_utc(job.started_at) or end)).total_seconds()
        processed = sum(c for st, c in counts.items() if st in ("done", "failed"))
        if elapsed > 0 and processed:
            rate = round(processed / elapsed, 2)
            eta = round(pending / rate, 1) if pending else 0.0
    return Progress(job.id, state, job.total, done, failed, pending, as_utc(job.created_at),
                    as_utc(last) if state == "done" else None, rate, eta)


def row_errors(store: SqlCatalogStore, tenant: str, job_id: str, after: int = 0,
               limit: int = 1000) -> list[dict[str, Any]]:
    progress(store, tenant, job_id)  # 404 for another tenant's job
    with store.session() as s:
        rows = s.scalars(select(JobRow).where(JobRow.job_id == job_id, JobRow.state == "failed",
                                              JobRow.row_number > after)
                         .order_by(JobRow.row_number).limit(limit))
        return [{"row": r.row_number, "url": r.payload.get("url") or r.payload.get("path"),
                 "external_id": r.payload.get("external_id"), "error": r.error} for r in rows]


def counts_by_state(store: SqlCatalogStore) -> dict[str, int]:
    with store.session() as s:
        return dict(s.execute(select(JobRow.state, func.count()).group_by(JobRow.state)).all())


def row_outcomes(store: SqlCatalogStore, job_id: str) -> list[tuple[int, str, str | None]]:
    """(row number, state, media id) of every row: what tests and reports check."""
    with store.session() as s:
        return [(r[0], r[1], r[2]) for r in s.execute(
            select(JobRow.row_number, JobRow.state, JobRow.media_id)
            .where(JobRow.job_id == job_id).order_by(JobRow.row_number))]



def list_jobs(store: SqlCatalogStore, tenant: str, before: str | None = None,
              limit: int = 50) -> list[Progress]:
    """The tenant's jobs, newest first; `before` is the last job id of the previous page."""
    q = select(Job.id).where(Job.tenant == tenant)
    with store.session() as s:
        if before is not None:
            last = s.scalar(select(Job).where(Job.id == before, Job.tenant == tenant))
            if last is None:
                raise NotFound(f"no job {before}")
            q = q.where(or_(Job.created_at < last.created_at,
                            and_(Job.created_at == last.created_at, Job.id < last.id)))
        ids = list(s.scalars(q.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)))
    return [progress(store, tenant, job_id) for job_id in ids]


def failed_rows(store: SqlCatalogStore, tenant: str, job_id: str) -> Iterator[dict[str, Any]]:
    """Every failed row of a job, in row order, read a batch at a time."""
    after = 0
    while batch := row_errors(store, tenant, job_id, after, 1000):
        yield from batch
        after = batch[-1]["row"]
