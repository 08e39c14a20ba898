"""Bulk ingestion: CSV rows become a persisted job; workers fetch, fingerprint and index them.

Fetching is async (many rows in flight); fingerprinting, the CPU part, runs in a process pool.
Every row ends `done` (with its media id) or `failed` (with a reason), exactly once, whatever
happens to the processes: see `catalog.jobs` for how claims make that so. Rows are idempotent by
(tenant, external_id): a row whose external id is already in the catalog is done, not duplicated.
"""

from __future__ import annotations

import asyncio
import csv
import logging
import multiprocessing
from concurrent.futures import Executor, ProcessPoolExecutor
from pathlib import Path
from typing import Any

from medialayer.catalog import jobs as job_rows
from medialayer.catalog.jobs import Claim, ClaimLost
from medialayer.config import Settings
from medialayer.errors import Conflict, InvalidInput, MediaLayerError
from medialayer.fetch import fetch
from medialayer.kinds import KINDS, get_kind
from medialayer.service import MAX_FILE_BYTES, MediaLayer

log = logging.getLogger("medialayer.jobs")
COLUMNS = ("url", "path", "media_type", "name", "external_id")
MAX_FIELD = 4096


def parse_csv(text: str, allow_paths: bool = False, max_rows: int = 1_000_000
              ) -> tuple[list[dict[str, Any]], list[tuple[int, dict[str, Any], str]]]:
    """Rows to do and rows already failed, by physical line, so one malformed line fails alone.

    Columns: url (or path, for local jobs), media_type (default image), name, external_id; any
    other column goes into the media's metadata.
    """
    lines = text.lstrip("\ufeff").splitlines()
    if not lines or not lines[0].strip():
        raise InvalidInput("the CSV is empty: a header line (url,media_type,name,external_id) "
                           "is needed")
    header = [h.strip().lower() for h in next(csv.reader([lines[0]]))]
    source = "path" if allow_paths and "path" in header and "url" not in header else "url"
    if source not in header:
        raise InvalidInput(f"the CSV header has no '{source}' column: {','.join(header)}")
    if len(lines) - 1 > max_rows:
        raise InvalidInput(f"the CSV has {len(lines) - 1} rows, over the limit of {max_rows}")
    rows, errors = [], []
    for number, line in enumerate(lines[1:], start=1):
        if not line.strip():
            continue
        row, error = _parse_line(line, header, number)
        if error:
            errors.append((number, row, error))
        else:
            rows.append(row)
    return rows, errors


def _parse_line(line: str, header: list[str], number: int) -> tuple[dict[str, Any], str | None]:
    raw = {"_row": number, "line": line[:MAX_FIELD]}
    try:
        fields = next(csv.reader([line]))
    except csv.Error as e:
        return raw, f"malformed CSV line: {e}"
    if len(fields) != len(header):
        return raw, f"malformed CSV line: {len(fields)} fields, the header has {len(header)}"
    if any(len(f) > MAX_FIELD for f in fields):
        return raw, f"a field is longer than {MAX_FIELD} characters"
    values = {h: f.strip() for h, f in zip(header, fields, strict=True)}
    row: dict[str, Any] = {"_row": number}
    row.update({k: values[k] for k in COLUMNS if values.get(k)})
    extra = {k: v for k, v in values.items() if k not in COLUMNS and v}
    if extra:
        row["metadata"] = extra
    row.setdefault("media_type", "image")
    if row["media_type"] not in KINDS:
        return row, f"unsupported media_type {row['media_type']!r}"
    if not row.get("url") and not row.get("path"):
        return row, "the row has no url"
    return row, None


def fingerprint_blob(media_type: str, data: bytes) -> bytes:
    """The CPU part of a row, run in a worker process: bytes in, stored fingerprint out."""
    kind = get_kind(media_type)
    return kind.encode(kind.fingerprint(data))


class JobRunner:
    """Claims rows from the catalog and works them: async fetches, a process pool for hashing."""

    def __init__(self, ml: MediaLayer, settings: Settings, pool: Executor | None = None) -> None:
        self.ml = ml
        self.settings = settings
        self._own_pool = pool is None
        self.pool = pool or ProcessPoolExecutor(max_workers=max(1, settings.bulk_workers),
                                                mp_context=multiprocessing.get_context(
                                                    "forkserver"))

    def close(self) -> None:
        if self._own_pool:
            self.pool.shutdown(wait=False, cancel_futures=True)

    async def run_until_idle(self, job_id: str | None = None) -> None:
        """Work rows (of one job, or any) until none is left to claim."""
        await self._pump(asyncio.Event(), job_id, until_idle=True)

    async def run_forever(self, stop: asyncio.Event, idle_sleep: float = 0.5) -> None:
        """Work rows as they come until `stop` is set; rows in flight are finished first."""
        await self._pump(stop, None, until_idle=False, idle_sleep=idle_sleep)

    async def _pump(self, stop: asyncio.Event, job_id: str | None, until_idle: bool,
                    idle_sleep: float = 0.5) -> None:
        """Keep up to `bulk_concurrency` rows in flight, claiming more as rows finish.

        A pipeline, not batches: a slow fetch holds one slot, never a whole batch of rows.
        """
        limit = max(1, self.settings.bulk_concurrency)
        inflight: set[asyncio.Task] = set()
        while True:
            if not stop.is_set() and len(inflight) <= limit // 2:
                for claim in await self._claim(limit - len(inflight), job_id):
                    inflight.add(asyncio.create_task(self._work(claim)))
            if inflight:
                _, inflight = await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
            elif until_idle or stop.is_set():
                return
            else:
                try:
                    await asyncio.wait_for(stop.wait(), idle_sleep)
                except TimeoutError:
                    pass

    async def _claim(self, n: int, job_id: str | None) -> list[Claim]:
        try:
            return await asyncio.to_thread(job_rows.claim_rows, self.ml.store, n,
                                           self.settings.bulk_claim_timeout, job_id)
        except Exception:  # a database hiccup must not kill the worker loop
            log.exception("claiming job rows failed")
            return []

    async def _work(self, claim: Claim) -> None:
        row = claim.payload
        try:
            existing = await self._existing(claim)
            if existing is not None:
                await asyncio.to_thread(job_rows.finish_row, self.ml.store, claim, existing)
                return
            data = await self._read(claim)
            loop = asyncio.get_running_loop()
            blob = await loop.run_in_executor(self.pool, fingerprint_blob, row["media_type"], data)
            await asyncio.to_thread(self._index, claim, blob)
        except ClaimLost:
            log.info("row %s of job %s went to another worker", claim.row_number, claim.job_id)
        except (MediaLayerError, OSError) as e:
            await asyncio.to_thread(job_rows.finish_row, self.ml.store, claim, None,
                                    f"{e.__class__.__name__}: {e}" if not str(e) else str(e))
        except Exception as e:  # an unexpected bug fails the row, never the job
            log.exception("row %s of job %s failed", claim.row_number, claim.job_id)
            await asyncio.to_thread(job_rows.finish_row, self.ml.store, claim, None,
                                    f"internal error: {e.__class__.__name__}")

    async def _existing(self, claim: Claim) -> str | None:
        external_id = claim.payload.get("external_id")
        if not external_id:
            return None
        known = await asyncio.to_thread(self.ml.store.get_by_external_id, claim.tenant,
                                        external_id)
        return known.id if known else None

    async def _read(self, claim: Claim) -> bytes:
        row = claim.payload
        if row.get("url"):
            return await fetch(row["url"], self.settings)
        if not claim.allow_paths:
            raise InvalidInput("this job accepts URLs only")
        path = Path(row["path"])
        if path.stat().st_size > MAX_FILE_BYTES:
            raise InvalidInput(f"{path} is over {MAX_FILE_BYTES} bytes")
        return await asyncio.to_thread(path.read_bytes)

    def _index(self, claim: Claim, blob: bytes) -> None:
        row = claim.payload
        try:
            self.ml.index_fingerprint(
                row["media_type"], blob, tenant=claim.tenant, name=row.get("name"),
                external_id=row.get("external_id"), metadata=row.get("metadata"),
                source=row.get("url") or row.get("path"),
                within=lambda session, media_id: job_rows.complete_row(session, claim, media_id))
        except Conflict:  # the same external id arrived through another row meanwhile
            known = self.ml.store.get_by_external_id(claim.tenant, row["external_id"])
            job_rows.finish_row(self.ml.store, claim, known.id if known else None)


def submit_csv(ml: MediaLayer, text: str | bytes, tenant: str, settings: Settings,
               allow_paths: bool = False, base: Path | None = None) -> str:
    """Persist a CSV as a job and return its id; workers pick it up from the catalog."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InvalidInput(f"the CSV is not UTF-8 text: {e}") from e
    rows, errors = parse_csv(text, allow_paths, settings.bulk_max_rows)
    if base is not None:
        for row in rows:
            if row.get("path") and not Path(row["path"]).is_absolute():
                row["path"] = str(base / row["path"])
    return job_rows.create_job(ml.store, tenant, rows, errors, allow_paths)

