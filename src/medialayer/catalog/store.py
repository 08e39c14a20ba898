"""The catalog store: one interface, one SQLAlchemy implementation for SQLite and PostgreSQL.

Callers speak in `MediaRecord`s and never see SQL, so a backend is a class, not a code path.
"""

from __future__ import annotations

import builtins
import collections
import itertools
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from alembic import command
from alembic.config import Config
from sqlalchemy import (
    ColumnElement,
    Engine,
    String,
    and_,
    bindparam,
    cast,
    create_engine,
    delete,
    event,
    func,
    insert,
    or_,
    select,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from medialayer.catalog.models import Deletion, FingerprintChunk, Media, MediaCode
from medialayer.errors import Conflict, InvalidInput, NotFound
from medialayer.fields import problem
from medialayer.index.registry import CodeBatch, FeedRow
from medialayer.kinds.base import Chunk, Encoded, Window

MIGRATIONS = Path(__file__).parent / "migrations"
CODE_BATCH = 65_536
"""Seqs per fetch of a start-up's code load: large enough that per-fetch costs vanish."""
LOAD_THREADS = 4
"""A start-up's code-load queries in flight at once."""
Within = Callable[[Session, str], None]
WithinMany = Callable[[Session, list[str]], None]


@dataclass(frozen=True)
class MediaRecord:
    """A catalog item as callers see it."""

    id: str
    seq: int
    tenant: str
    media_type: str
    name: str | None
    external_id: str | None
    source: str | None
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None

    @classmethod
    def from_row(cls, row: Any) -> MediaRecord:
        """From a Media row, or a result row of the same columns."""
        return cls(id=row.id, seq=row.seq, tenant=row.tenant, media_type=row.media_type,
                   name=row.name, external_id=row.external_id, source=row.source,
                   metadata=dict(row.metadata_ or {}), created_at=as_utc(row.created_at))

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "media_type": self.media_type, "name": self.name,
                "external_id": self.external_id, "source": self.source,
                "metadata": self.metadata,
                "created_at": self.created_at.isoformat() if self.created_at else None}


@dataclass(frozen=True)
class NewMedia:
    """What a caller hands the store to add one item."""

    tenant: str
    media_type: str
    fingerprint: Encoded
    fingerprint_version: int
    """The kind's `version` when it fingerprinted: no default, rows of another version than the
    kind's are never searched."""
    name: str | None = None
    external_id: str | None = None
    source: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Refuse what one backend would store and the other not (NUL in text, NaN)."""
        for name in ("name", "external_id", "source", "metadata"):
            if reason := problem(getattr(self, name)):
                raise InvalidInput(f"{name} {reason}")


class SqlCatalogStore:
    """The catalog on SQLAlchemy: SQLite (WAL) embedded, or PostgreSQL for several processes."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _engine(url)
        self.session = sessionmaker(self.engine, expire_on_commit=False)
        migrate(self.engine)

    def add(self, item: NewMedia, within: Within | None = None) -> MediaRecord:
        """Insert one item; `within(session, media_id)` runs in the same transaction (job rows)."""
        joined = None if within is None else (lambda s, ids: within(s, ids[0]))
        return self.add_many([item], joined)[0]

    def add_many(self, items: list[NewMedia], within: WithinMany | None = None
                 ) -> list[MediaRecord]:
        """Insert items in one transaction, all or none; `within(session, media_ids)` joins it.

        One commit for a batch of bulk rows instead of one per row: the per-row transaction,
        not the insert, was most of what a bulk row cost the server process.
        """
        rows = [Media(id=str(uuid.uuid4()), tenant=i.tenant, media_type=i.media_type,
                      name=i.name, external_id=i.external_id, source=i.source,
                      metadata_=i.metadata, fingerprint=i.fingerprint.blob,
                      fingerprint_version=i.fingerprint_version,
                      duration=i.fingerprint.duration) for i in items]
        try:
            with self.session.begin() as s:
                s.add_all(rows)
                s.flush()
                add_codes_and_chunks(s, [(r.seq, i.fingerprint)
                                          for r, i in zip(rows, items, strict=True)])
                if within is not None:
                    within(s, [r.id for r in rows])
                return [MediaRecord.from_row(r) for r in rows]
        except IntegrityError as e:
            which = (f"external_id {items[0].external_id!r}" if len(items) == 1
                     else "an external_id of the batch")
            raise Conflict(f"{which} already exists") from e

    def get(self, tenant: str, media_id: str) -> MediaRecord:
        found = self._records(Media.tenant == tenant, Media.id == media_id)
        if not found:
            raise NotFound(f"no media {media_id}")
        return found[0]

    def get_by_external_id(self, tenant: str, external_id: str) -> MediaRecord | None:
        found = self._records(Media.tenant == tenant, Media.external_id == external_id)
        return found[0] if found else None

    def media_ids_by_external_id(self, tenant: str, external_ids: list[str]
                                 ) -> dict[str, str]:
        """external_id -> media id, for those of `external_ids` the tenant has: one query for
        a batch of bulk rows."""
        if not external_ids:
            return {}
        with self.session() as s:
            rows = s.execute(select(Media.external_id, Media.id).where(
                Media.tenant == tenant, Media.external_id.in_(external_ids))).all()
            return {external_id: media_id for external_id, media_id in rows if external_id}

    def get_fingerprint(self, tenant: str, media_id: str) -> tuple[MediaRecord, FeedRow]:
        row = self._row(tenant, media_id)
        with self.session() as s:
            chunks = _chunks(s, [row.seq])
        return MediaRecord.from_row(row), _stored(row.seq, row.tenant, row.fingerprint_version,
                                                  row.fingerprint, row.duration, chunks)

    def records(self, seqs: list[int]) -> dict[int, MediaRecord]:
        if not seqs:
            return {}
        with self.session() as s:
            rows = s.execute(_RECORDS_BY_SEQ, {"seqs": seqs})
            return {r.seq: MediaRecord.from_row(r) for r in rows}

    def fingerprints_of(self, tenant: str | None, seqs: list[int],
                        windows: Mapping[int, Window] | None = None) -> dict[int, FeedRow]:
        """The stored fingerprints of rows `seqs` (the tenant's only, if given); rows gone
        are absent. A row with a window gets only the chunks overlapping it."""
        if not seqs:
            return {}
        with self.engine.connect() as c:  # Core, not a Session: half the overhead
            rows = c.execute(_FINGERPRINTS_BY_SEQ, {"seqs": seqs}).all()
            chunks = _chunks(c, [r.seq for r in rows if r.has_chunks], windows or {})
        return {r.seq: _stored(r.seq, r.tenant, r.fingerprint_version, r.fingerprint,
                               r.duration, chunks)
                for r in rows if tenant in (None, r.tenant)}

    def list(self, tenant: str, media_type: str | None, after_seq: int, limit: int
             ) -> builtins.list[MediaRecord]:
        where = [Media.tenant == tenant, Media.seq > after_seq]
        if media_type:
            where.append(Media.media_type == media_type)
        return self._records(*where, order_by=Media.seq, limit=limit)

    def _records(self, *where: ColumnElement[bool], order_by: Any = None,
                 limit: int | None = None) -> builtins.list[MediaRecord]:
        """Records matching `where`, reading only their columns: never the fingerprint, a
        10 KB blob per image (reading it made a search's five results cost 2 ms)."""
        q = select(*RECORD_COLUMNS).where(*where)
        if order_by is not None:
            q = q.order_by(order_by)
        if limit is not None:
            q = q.limit(limit)
        with self.session() as s:
            return [MediaRecord.from_row(r) for r in s.execute(q)]

    def delete(self, tenant: str, media_id: str) -> MediaRecord:
        with self.session.begin() as s:
            row = s.scalar(select(Media).where(Media.tenant == tenant, Media.id == media_id))
            if row is None:
                raise NotFound(f"no media {media_id}")
            record = MediaRecord.from_row(row)
            s.add(Deletion(media_seq=row.seq, media_type=row.media_type, tenant=row.tenant))
            s.execute(delete(Media).where(Media.seq == row.seq))
            return record

    def rows_since(self, media_type: str, after_seq: int, batch: int = 5000,
                   tenant: str | None = None) -> Iterator[FeedRow]:
        """Stored fingerprints in seq order, fetched in batches to bound memory (Core, not
        a Session: the ORM's row handling was a fifth of a start-up's build)."""
        while True:
            q = (select(*_FINGERPRINT_COLUMNS)
                 .where(Media.media_type == media_type, Media.seq > after_seq))
            if tenant is not None:
                q = q.where(Media.tenant == tenant)
            with self.engine.connect() as c:
                rows = c.execute(q.order_by(Media.seq).limit(batch)).all()
                chunks = _chunks(c, [seq for seq, *_, has_chunks in rows if has_chunks])
            if not rows:
                return
            yield from (_stored(seq, owner, version, blob, duration, chunks)
                        for seq, owner, version, blob, duration, _ in rows)
            after_seq = rows[-1][0]

    def code_batches(self, media_type: str, batch: int = CODE_BATCH) -> Iterator[CodeBatch]:
        """Every row of `media_type` with its first code, as batches of columns, in seq order:
        one batch per `batch` seqs from the kind's lowest to its highest at the call (rows
        written later come through the change feed).

        Each batch is one result row: the database joins the rows and concatenates each
        column into one string, which numpy parses. Fetched as rows, the driver's and
        SQLAlchemy's objects for every value cost more than the rest of a start-up's load.
        The batches' queries run `LOAD_THREADS` at a time, ahead of the caller, on
        connections of their own: their work runs outside the GIL (SQLite's in the driver,
        PostgreSQL's in the server), on every core, while this thread parses and indexes.
        """
        with self.engine.connect() as c:
            low, high = c.execute(_SEQ_BOUNDS, {"type": media_type}).one()
        if low is None:
            return
        starts = iter(range(low - 1, high, batch))
        with self._readers() as engine, ThreadPoolExecutor(
                LOAD_THREADS, thread_name_prefix="code-batches") as pool:
            ahead = collections.deque(
                pool.submit(_code_columns, engine, media_type, after, after + batch)
                for after in itertools.islice(starts, LOAD_THREADS + 1))
            while ahead:
                found = ahead.popleft().result()
                if (after := next(starts, None)) is not None:
                    ahead.append(pool.submit(_code_columns, engine, media_type, after,
                                             after + batch))
                if found is not None:
                    yield found if isinstance(found, CodeBatch) else _parsed(found)

    @contextmanager
    def _readers(self) -> Iterator[Engine]:
        """Connections for parallel reads: the store's own on PostgreSQL; on SQLite (whose
        store shares one connection in turn) a pool of its own for the while (WAL readers
        do not block each other or the writer)."""
        if self.engine.dialect.name != "sqlite":
            yield self.engine
            return
        readers = _engine(self.url, pool_size=LOAD_THREADS)
        try:
            yield readers
        finally:
            readers.dispose()

    def store_codes(self, written: Sequence[tuple[int, Encoded]]) -> None:
        """The codes of rows that have none (rows written before the code columns existed);
        rows deleted or given codes meanwhile are skipped, so it can run again."""
        seqs = [seq for seq, _ in written]
        try:
            with self.session.begin() as s:
                present = set(s.scalars(select(Media.seq).where(Media.seq.in_(seqs))))
                present -= set(s.scalars(select(MediaCode.media_seq)
                                         .where(MediaCode.media_seq.in_(seqs))))
                rows = _code_rows([(seq, e) for seq, e in written if seq in present])
                if rows:
                    s.execute(insert(MediaCode), rows)
        except IntegrityError:  # deleted or written by another process meanwhile: next start
            pass

    def rows_of(self, seqs: Sequence[int]) -> builtins.list[FeedRow]:
        return list(self.fingerprints_of(None, list(seqs)).values())

    def seqs_since(self, media_type: str, after_seq: int) -> builtins.list[int]:
        """Seqs above `after_seq`, from the (media_type, seq) index alone."""
        with self.engine.connect() as c:
            return list(c.execute(_SEQS_SINCE, {"type": media_type, "after": after_seq})
                        .scalars())

    def count_between(self, media_type: str, after_seq: int, upto_seq: int) -> int:
        """Rows in (after_seq, upto_seq], counted on the (media_type, seq) index alone."""
        with self.engine.connect() as c:
            return int(c.execute(_COUNT_BETWEEN, {"type": media_type, "after": after_seq,
                                                  "upto": upto_seq}).scalar_one())

    def deletions_since(self, media_type: str, after_seq: int) -> builtins.list[tuple[int, int]]:
        """(deletion seq, media seq) logged after `after_seq`."""
        with self.engine.connect() as c:
            rows = c.execute(_DELETIONS_SINCE, {"type": media_type, "after": after_seq}).all()
        return [(d, m) for d, m in rows]

    def last_deletion(self, media_type: str) -> int:
        with self.engine.connect() as c:
            return int(c.execute(select(func.max(Deletion.seq))
                                 .where(Deletion.media_type == media_type)).scalar() or 0)

    def prune_deletions(self, older_than: timedelta) -> int:
        """Forget deletions logged longer ago than `older_than`: a process that has not
        polled for that long rebuilds its indexes instead of replaying them."""
        with self.session.begin() as s:
            gone = s.execute(delete(Deletion).where(
                Deletion.deleted_at < datetime.now(UTC) - older_than))
            return int(getattr(gone, "rowcount", 0) or 0)

    def count(self, tenant: str | None = None) -> int:
        q = select(func.count()).select_from(Media)
        if tenant is not None:
            q = q.where(Media.tenant == tenant)
        with self.session() as s:
            return int(s.scalar(q) or 0)

    def _row(self, tenant: str, media_id: str) -> Media:
        with self.session() as s:
            row = s.scalar(select(Media).where(Media.tenant == tenant, Media.id == media_id))
            if row is None:
                raise NotFound(f"no media {media_id}")
            return row


RECORD_COLUMNS = (Media.id, Media.seq, Media.tenant, Media.media_type, Media.name,
                   Media.external_id, Media.source, Media.metadata_, Media.created_at)


_RECORDS_BY_SEQ = select(*RECORD_COLUMNS).where(Media.seq.in_(bindparam("seqs", expanding=True)))
"""Built once: every search reads its results' records, and building costs more than running."""

_SEQS_SINCE = (select(Media.seq)
               .where(Media.media_type == bindparam("type"), Media.seq > bindparam("after"))
               .order_by(Media.seq))
_COUNT_BETWEEN = (select(func.count())
                  .where(Media.media_type == bindparam("type"), Media.seq > bindparam("after"),
                         Media.seq <= bindparam("upto")))
_DELETIONS_SINCE = (select(Deletion.seq, Deletion.media_seq)
                    .where(Deletion.media_type == bindparam("type"),
                           Deletion.seq > bindparam("after"))
                    .order_by(Deletion.seq))
_SEQ_BOUNDS = select(
    select(func.min(Media.seq)).where(Media.media_type == bindparam("type")).scalar_subquery(),
    select(func.max(Media.seq)).where(Media.media_type == bindparam("type")).scalar_subquery())
"""A kind's lowest and highest seq, each read at an end of the (media_type, seq) index: asked
for both in one aggregate, SQLite reads the whole index."""
_CODE_ROWS = (select(Media.seq, Media.tenant, Media.fingerprint_version, MediaCode.code)
              .outerjoin(MediaCode, and_(MediaCode.media_seq == Media.seq,
                                         MediaCode.position == 0,
                                         MediaCode.media_seq > bindparam("after"),
                                         MediaCode.media_seq <= bindparam("upto")))
              .where(Media.media_type == bindparam("type"), Media.seq > bindparam("after"),
                     Media.seq <= bindparam("upto")))
"""A batch of rows with their first code (NULL for a row with none). The codes' own bounds
on seq let PostgreSQL's merge join start at the batch, not at the first code."""
_CODE_ROWS_SUB = _CODE_ROWS.subquery()
_CODE_COLUMNS = select(
    _CODE_ROWS_SUB.c.tenant, func.count(), func.count(_CODE_ROWS_SUB.c.code),
    func.min(_CODE_ROWS_SUB.c.fingerprint_version), func.max(_CODE_ROWS_SUB.c.fingerprint_version),
    func.aggregate_strings(cast(_CODE_ROWS_SUB.c.seq, String), ","),
    func.aggregate_strings(cast(_CODE_ROWS_SUB.c.code, String), ",")
).group_by(_CODE_ROWS_SUB.c.tenant)
"""The same batch as one row per tenant: counts, and comma-separated columns. One aggregation
reads the rows once and adds each to every column in turn, so the columns stay aligned whatever
order it reads them in; the tenant, once per group, costs nothing per row. A batch with rows of
several versions or without codes (rare, and once: their codes are then written) is read again
as rows."""
_FINGERPRINT_COLUMNS = (Media.seq, Media.tenant, Media.fingerprint_version, Media.fingerprint,
                        Media.duration, Media.duration.is_not(None).label("has_chunks"))
"""Only time-based rows (with a duration) can have chunks: still media skip the chunk read."""

_FINGERPRINTS_BY_SEQ = select(*_FINGERPRINT_COLUMNS).where(
    Media.seq.in_(bindparam("seqs", expanding=True)))
"""Built once: every search reads its candidates' fingerprints back to verify them. By seq
alone: with the tenant in the WHERE, SQLite walked the tenant's index (8 ms at 100k items)
instead of the primary key (0.01 ms)."""


def _stored(seq: int, tenant: str, version: int, blob: bytes, duration: float | None,
            chunks: dict[int, list[Chunk]]) -> FeedRow:
    return FeedRow(seq, tenant, version,
                     Encoded(blob, chunks=tuple(chunks.get(seq, ())), duration=duration))


def add_codes_and_chunks(s: Session, written: builtins.list[tuple[int, Encoded]]) -> None:
    codes = _code_rows(written)
    chunks = [{"media_seq": seq, "chunk": c.number, "t_start": c.t_start, "t_end": c.t_end,
               "blob": c.blob} for seq, e in written for c in e.chunks]
    if codes:
        s.execute(insert(MediaCode), codes)
    if chunks:
        s.execute(insert(FingerprintChunk), chunks)


def _code_rows(written: Sequence[tuple[int, Encoded]]) -> builtins.list[dict[str, int]]:
    return [{"media_seq": seq, "position": i, "code": code}
            for seq, e in written for i, code in enumerate(e.codes)]


def _code_batch(rows: Sequence[tuple[int, str, int, int | None]]) -> CodeBatch:
    """Fetched (seq, tenant, version, code) rows as columns; code is NULL for a row that has
    none."""
    seqs, tenants, versions, codes = zip(*rows, strict=True)
    try:
        values = np.array(codes, np.int64)
        coded = np.ones(len(rows), bool)
    except TypeError:  # some NULL: the rare case, row by row
        coded = np.array([code is not None for code in codes], bool)
        values = np.array([code or 0 for code in codes], np.int64)
    return CodeBatch(np.array(seqs, np.int64), np.array(tenants, object),
                     np.array(versions, np.int64), values.view(np.uint64), coded)


def _code_columns(engine: Engine, media_type: str, after: int, upto: int
                  ) -> CodeBatch | list[tuple[str, int, int, str, str]] | None:
    """The rows with `after` < seq <= `upto` (None if there are none): their columns as the
    database joined them, per tenant (tenant, count, version, seqs, codes), or, when they
    cannot be (NULL codes, several versions), read as rows."""
    bounds = {"type": media_type, "after": after, "upto": upto}
    with engine.connect() as c:
        groups = c.execute(_CODE_COLUMNS, bounds).all()
        if not groups:
            return None
        if all(coded == count and low == high for _, count, coded, low, high, _, _ in groups):
            return [(tenant, count, version, seqs, codes)
                    for tenant, count, _, version, _, seqs, codes in groups]
        return _code_batch([(r[0], r[1], r[2], r[3]) for r in c.execute(_CODE_ROWS, bounds)])


def _parsed(groups: list[tuple[str, int, int, str, str]]) -> CodeBatch:
    """A batch's joined columns as arrays: every row coded."""
    counts = [count for _, count, _, _, _ in groups]
    return CodeBatch(_ints(",".join(seqs for _, _, _, seqs, _ in groups)),
                     np.repeat(np.array([tenant for tenant, *_ in groups], object), counts),
                     np.repeat(np.array([v for _, _, v, _, _ in groups], np.int64), counts),
                     _ints(",".join(codes for *_, codes in groups)).view(np.uint64),
                     np.ones(sum(counts), bool))


def _ints(joined: str) -> npt.NDArray[np.int64]:
    """Comma-separated integers, parsed in C."""
    return np.fromstring(joined, np.int64, sep=",")


def _chunks(conn: Session | Connection, seqs: builtins.list[int],
            windows: Mapping[int, Window] | None = None) -> dict[int, list[Chunk]]:
    """Chunks of rows `seqs` in order: whole, or for a row with a window only those
    overlapping it."""
    if not seqs:
        return {}
    windows = windows or {}
    whole = [seq for seq in seqs if seq not in windows]
    wanted: list[ColumnElement[bool]] = [FingerprintChunk.media_seq.in_(whole)] if whole else []
    wanted += [and_(FingerprintChunk.media_seq == seq, FingerprintChunk.t_end >= t0,
                    FingerprintChunk.t_start <= t1)
               for seq, (t0, t1) in windows.items() if seq in seqs]
    q = (select(FingerprintChunk.media_seq, FingerprintChunk.chunk, FingerprintChunk.t_start,
                FingerprintChunk.t_end, FingerprintChunk.blob)
         .where(or_(*wanted)).order_by(FingerprintChunk.media_seq, FingerprintChunk.chunk))
    found: dict[int, list[Chunk]] = {}
    for seq, number, t0, t1, blob in conn.execute(q):
        found.setdefault(seq, []).append(Chunk(number, t0, t1, blob))
    return found


def as_utc(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything this store writes is UTC."""
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


def _engine(url: str, pool_size: int = 1) -> Engine:
    if url.startswith("sqlite"):
        # One connection shared in turn: threads queue on the pool instead of on SQLite's
        # busy handler, whose sleep-and-retry backoff stalls concurrent writers.
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               pool_size=pool_size, max_overflow=0, pool_timeout=120)

        @event.listens_for(engine, "connect")
        def _pragmas(conn: Any, _record: Any) -> None:  # WAL: readers never block the writer
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(url, pool_pre_ping=True)


def migrate(engine: Engine) -> None:
    """Bring the schema to the latest Alembic revision (idempotent, safe at every start)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with migrating(engine) as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


@contextmanager
def migrating(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction for Alembic. On SQLite foreign keys are off meanwhile: a
    migration that rebuilds a table drops the old one, and with them on, the drop would delete
    the rows that reference it (an item's codes and chunks)."""
    with engine.connect() as conn:
        sqlite = engine.dialect.name == "sqlite"
        if sqlite:  # outside a transaction, where SQLite lets the pragma change
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
        try:
            with conn.begin():
                yield conn
        finally:
            if sqlite:
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                conn.commit()


def open_store(data_dir: str | Path | None = None, database_url: str | None = None
               ) -> SqlCatalogStore:
    """The configured database, or SQLite in `data_dir` (created if missing)."""
    if database_url:
        return SqlCatalogStore(database_url)
    path = Path(data_dir or "data")
    path.mkdir(parents=True, exist_ok=True)
    return SqlCatalogStore(f"sqlite:///{path / 'catalog.db'}")


def session_of(store: SqlCatalogStore) -> Session:
    """A plain session for modules that keep their own tables (keys, jobs, decisions)."""
    return store.session()
