"""Bulk ingestion: CSV rows become a persisted job; workers fetch, fingerprint and index them.

Fetching is async (many rows in flight); fingerprinting, the CPU part, runs in a process pool.
Every row ends `done` (with its media id) or `failed` (with a reason), exactly once, whatever
happens to the processes: see `catalog.jobs` for how claims make that so. Rows are idempotent by
(tenant, external_id): a row whose external id is already in the catalog is done, not duplicated.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.exc import InterfaceError, OperationalError

from medialayer.catalog import jobs as job_rows
from medialayer.catalog.jobs import Claim, ClaimLost
from medialayer.catalog.store import MediaRecord, NewMedia
from medialayer.config import Settings
from medialayer.errors import Conflict, InvalidInput, MediaLayerError, MediaTooLarge
from medialayer.fetch import fetch
from medialayer.kinds import (
    AnyKind,
    get_kind,
    kinds,
    register_all,
    registered_in_process,
    sniff_kind,
)
from medialayer.kinds.base import Encoded
from medialayer.lifeline import die_with_parent, pool_context
from medialayer.service import SNIFF_BYTES, MediaLayer

log = logging.getLogger("medialayer.jobs")
DATABASE_GONE = (OperationalError, InterfaceError)
"""The catalog database could not be reached or dropped the connection: a row that meets this
is not failed but left claimed, to be worked again once the database is back."""
COLUMNS = ("url", "path", "media_type", "name", "external_id")
MAX_FIELD = 4096
EDGE_BATCH = 4
"""Written rows whose edges are kept per step: a stopping worker waits for one step at most."""


def parse_csv(text: str, allow_paths: bool = False, max_rows: int = 1_000_000
              ) -> tuple[list[dict[str, Any]], list[tuple[int, dict[str, Any], str]]]:
    """Rows to do and rows already failed, by physical line, so one malformed line fails alone.

    Columns: url (or path, for local jobs), media_type (default: sniffed from the content),
    name, external_id; any other column goes into the media's metadata.
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
    if row.get("media_type") and row["media_type"] not in kinds():
        return row, f"unsupported media_type {row['media_type']!r}"
    if not row.get("url") and not row.get("path"):
        return row, "the row has no url"
    return row, None


def fingerprint_row(media_type: str | None, data: bytes) -> tuple[str, Encoded]:
    """The CPU part of a row, run in a worker process: bytes in, the kind (given, or sniffed)
    and the stored fingerprint out."""
    kind = get_kind(media_type) if media_type else sniff_kind(data[:SNIFF_BYTES])
    if len(data) > kind.limits.max_bytes:
        raise MediaTooLarge(f"the file is over the cap of {kind.limits.max_bytes} bytes for "
                            f"{kind.name}")
    return kind.name, kind.encode(kind.stored(io.BytesIO(data)))


class JobRunner:
    """Claims rows from the catalog and works them: async fetches, a process pool for hashing."""

    def __init__(self, ml: MediaLayer, settings: Settings, pool: Executor | None = None) -> None:
        self.ml = ml
        self.settings = settings
        self._own_pool = pool is None
        self.pool = pool or ProcessPoolExecutor(
            max_workers=settings.bulk_pool_size(), mp_context=pool_context(),
            initializer=_start_pool_process, initargs=(registered_in_process(),))
        # review hook: written rows' match edges are kept by one task beside the pump
        self._edge_backlog: list[MediaRecord] = []
        self._edge_task: asyncio.Task[None] | None = None
        self._busy = False

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
        Fingerprinted rows are written together, in one transaction, whenever the pump comes
        round: rows that finished meanwhile share it.
        """
        limit = max(1, self.settings.bulk_concurrency)
        inflight: set[asyncio.Task[Fingerprinted | None]] = set()
        while True:
            if not stop.is_set() and len(inflight) <= limit // 2:
                for claim in await self._claim(limit - len(inflight), job_id):
                    inflight.add(asyncio.create_task(self._work(claim)))
            self._busy = bool(inflight)
            if inflight:
                done, inflight = await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
                await self._write(done)
            elif until_idle or stop.is_set():
                if stop.is_set():  # stopping: what is left, `medialayer rebuild-edges` finds
                    self._edge_backlog.clear()
                else:
                    await self._keep_edges()
                return
            else:
                self._keep_edges()
                try:
                    await asyncio.wait_for(stop.wait(), idle_sleep)
                except TimeoutError:
                    pass

    async def _claim(self, n: int, job_id: str | None) -> list[Claim]:
        """Claimed rows still to work; rows whose external id is already in the catalog are
        finished here (one look-up for all of them), not fetched again.

        A claim whose rows were all finished that way is followed by another: an empty answer
        must mean that nothing is left to claim, or `run_until_idle` would stop with rows
        pending (a CSV indexed a second time).
        """
        try:
            while claims := await asyncio.to_thread(self.ml.claim_job_rows, n,
                                                    self.settings.bulk_claim_timeout, job_id):
                if todo := await asyncio.to_thread(self._skip_known, claims):
                    return todo
            return []
        except Exception:  # a database hiccup must not kill the worker loop
            log.exception("claiming job rows failed")
            return []

    def _skip_known(self, claims: list[Claim]) -> list[Claim]:
        """Finish the claims whose (tenant, external id) is already in the catalog with that
        media; return the others."""
        wanted: dict[str, set[str]] = {}
        for claim in claims:
            if claim.payload.get("external_id"):
                wanted.setdefault(claim.tenant, set()).add(claim.payload["external_id"])
        found = {tenant: self.ml.media_ids_by_external_id(tenant, sorted(ids))
                 for tenant, ids in wanted.items()}
        todo = []
        for claim in claims:
            media_id = found.get(claim.tenant, {}).get(claim.payload.get("external_id") or "")
            if media_id is None:
                todo.append(claim)
            else:
                self.ml.finish_job_row(claim, media_id)
        return todo

    async def _work(self, claim: Claim) -> Fingerprinted | None:
        """Fetch and fingerprint a row; None if it ended here (failed)."""
        row = claim.payload
        try:
            data = await self._read(claim)
            loop = asyncio.get_running_loop()
            media_type, encoded = await loop.run_in_executor(
                self.pool, fingerprint_row, row.get("media_type"), data)
            return Fingerprinted(claim, media_type, encoded)
        except Exception as e:  # fails the row, never the job
            await asyncio.to_thread(self._fail, claim, e)
        return None

    async def _read(self, claim: Claim) -> bytes:
        row = claim.payload
        if row.get("url"):
            return await fetch(row["url"], self.settings)
        if not claim.allow_paths:
            raise InvalidInput("this job accepts URLs only")
        path = Path(row["path"])
        cap = max(k.limits.max_bytes for k in kinds().values())
        if path.stat().st_size > cap:
            raise MediaTooLarge(f"{path} is over {cap} bytes")
        return await asyncio.to_thread(path.read_bytes)

    async def _write(self, done: set[asyncio.Task[Fingerprinted | None]]) -> None:
        """Write the rows of `done` that were fingerprinted. A failure here or in a row's task
        (the database went away) leaves rows claimed, to be claimed again after the claim
        timeout; the pump goes on."""
        ready = []
        for task in done:
            if error := task.exception():
                log.error("a bulk row could not be finished", exc_info=error)
            elif (row := task.result()) is not None:
                ready.append(row)
        if not ready:
            return
        try:
            self._edge_backlog += await asyncio.to_thread(self._index, ready)
        except Exception:
            log.exception("writing %d bulk rows failed; they will be claimed again", len(ready))

    def _keep_edges(self) -> asyncio.Task[None]:
        """The task keeping the written rows' match edges, started if none runs. It works while
        the pump has no row in flight (and until idle, at the end of `run_until_idle`): a
        catalog full of copies brings many edges per row, and rows come first."""
        async def drain() -> None:
            while self._edge_backlog and not self._busy:
                records = self._edge_backlog[:EDGE_BATCH]
                del self._edge_backlog[:EDGE_BATCH]
                try:
                    await asyncio.to_thread(self.ml.find_edges, records)
                except Exception:  # edges can be found again: medialayer rebuild-edges
                    log.exception("keeping the edges of %d bulk rows failed", len(records))

        if self._edge_task is None or self._edge_task.done():
            self._edge_task = asyncio.create_task(drain())
        return self._edge_task

    def _index(self, ready: list[Fingerprinted]) -> list[MediaRecord]:
        """Write fingerprinted rows' media and mark the rows done, in one transaction; if that
        fails (an external id that arrived meanwhile, a lost claim), row by row. Returns the
        media written."""
        if len(ready) > 1:
            try:
                return self.ml.index_fingerprints(
                    [r.media() for r in ready], keep_edges=False, within=lambda s, ids: (
                        job_rows.complete_rows(s, [(r.claim, media_id) for r, media_id
                                                   in zip(ready, ids, strict=True)])))
            except Exception:  # each row's own failure is told apart and handled below
                pass
        return [record for row in ready for record in self._index_alone(row)]

    def _index_alone(self, row: Fingerprinted) -> list[MediaRecord]:
        """The row's media written (with its row done), or none if it ended otherwise."""
        claim = row.claim
        try:
            return self.ml.index_fingerprints(
                [row.media()], keep_edges=False,
                within=lambda s, ids: job_rows.complete_row(s, claim, ids[0]))
        except Conflict:  # the same external id arrived through another row meanwhile
            known = self.ml.get_by_external_id(claim.payload["external_id"], claim.tenant)
            self.ml.finish_job_row(claim, known.id if known else None)
        except ClaimLost:
            log.info("row %s of job %s went to another worker", claim.row_number, claim.job_id)
        except DATABASE_GONE:
            raise  # not the row's fault: it stays claimed and is worked again (see `_write`)
        except Exception as e:
            self._fail(claim, e)
        return []

    def _fail(self, claim: Claim, error: Exception) -> None:
        """Record the row as failed: with the reason for bad input or an unreachable source,
        as an internal error (logged with its traceback) for anything else."""
        if isinstance(error, MediaLayerError | OSError):
            reason = str(error) or error.__class__.__name__
        else:
            log.error("row %s of job %s failed", claim.row_number, claim.job_id, exc_info=error)
            reason = f"internal error: {error.__class__.__name__}"
        self.ml.finish_job_row(claim, None, reason)


@dataclass(frozen=True)
class Fingerprinted:
    """A claimed row whose bytes became a stored fingerprint, waiting to be written."""

    claim: Claim
    media_type: str
    encoded: Encoded

    def media(self) -> NewMedia:
        row = self.claim.payload
        return NewMedia(tenant=self.claim.tenant, media_type=self.media_type,
                        fingerprint=self.encoded,
                        fingerprint_version=get_kind(self.media_type).version,
                        name=row.get("name"),
                        external_id=row.get("external_id"),
                        source=row.get("url") or row.get("path"),
                        metadata=row.get("metadata") or {})


def _start_pool_process(found: list[AnyKind]) -> None:
    """A pool process ends with its parent, and knows the kinds registered in this process."""
    die_with_parent()
    register_all(found)


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
    return ml.create_job(tenant, rows, errors, allow_paths)

