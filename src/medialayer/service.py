"""The use cases — index, search, compare, delete, clusters — over the catalog and the indexes.

`MediaLayer` is the library entry point and what the CLI and the HTTP API call. The catalog is
the source of truth; each (tenant, media type) has an in-memory index rebuilt from it at first
use and kept in step with writes, including writes made by other processes (`sync`).
"""

from __future__ import annotations

import ctypes
import io
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from medialayer.catalog import decisions
from medialayer.catalog.store import MediaRecord, NewMedia, Within, WithinMany, open_store
from medialayer.clusters import connected_groups
from medialayer.errors import Conflict, InvalidInput, MediaTooLarge
from medialayer.kinds import AnyKind, get_kind, kinds, sniff_kind
from medialayer.kinds.base import CandidateIndex, Encoded, Match, MediaInput, Window, at_least
from medialayer.locks import ReadWriteLock
from medialayer.results import Cluster, Comparison, MediaRef, SearchHit, SearchResult, Source

DEFAULT_TENANT = "default"
SYNC_INTERVAL = 0.5
"""Seconds between catalog polls for rows written by other processes."""
SNIFF_BYTES = 64
"""How much of a file kinds' sniffing looks at."""


class _KindState:
    """One media type's index (every tenant's items) and how far it has read the catalog."""

    def __init__(self, index: CandidateIndex[Any, Any]) -> None:
        self.index = index
        self.last_seq = 0
        self.last_deletion = 0
        self.synced_at = 0.0
        self.lock = ReadWriteLock()


class MediaLayer:
    """A catalog of fingerprinted media and the searches over it."""

    def __init__(self, data_dir: str | Path | None = None, *, database_url: str | None = None,
                 tenant: str = DEFAULT_TENANT) -> None:
        data_dir = data_dir or os.environ.get("MEDIALAYER_DATA_DIR") or "data"
        database_url = database_url or os.environ.get("MEDIALAYER_DATABASE_URL") or None
        self.store = open_store(data_dir, database_url)
        self.tenant = tenant
        self._kinds: dict[str, _KindState] = {}
        self._kinds_lock = threading.Lock()

    # -- writes ---------------------------------------------------------------------------

    def index(self, source: Source, media_type: str | None = None, *, name: str | None = None,
              external_id: str | None = None, metadata: dict[str, Any] | None = None,
              tenant: str | None = None, source_label: str | None = None,
              if_exists: str = "error") -> MediaRecord:
        """Fingerprint and add one item (its kind sniffed from the content if not given).
        With if_exists='return', a known external id is a no-op."""
        tenant = tenant or self.tenant
        if external_id is not None and (known := self._known(tenant, external_id, if_exists)):
            return known
        kind, media, label = self._open(source, media_type)
        return self._add(kind, tenant, kind.stored(media), name=name or _name_of(source),
                         external_id=external_id, metadata=metadata,
                         source=source_label or label, if_exists=if_exists)

    def index_fingerprints(self, items: list[NewMedia], within: WithinMany | None = None
                           ) -> list[MediaRecord]:
        """Add items fingerprinted elsewhere (worker processes) in one transaction, all or
        none; `within(session, media_ids)` joins it (the bulk job marks its rows done)."""
        stored = [get_kind(i.media_type).decode(i.fingerprint) for i in items]
        records = self.store.add_many(items, within)
        self._index_added(list(zip(records, stored, strict=True)))
        return records

    def delete(self, media_id: str, tenant: str | None = None) -> MediaRecord:
        record = self.store.delete(tenant or self.tenant, media_id)
        state = self._state(record.media_type)
        with state.lock.write():
            state.index.delete(record.seq)
        return record

    # -- reads ----------------------------------------------------------------------------

    def search(self, source: Source, media_type: str | None = None, *, top_k: int = 5,
               min_score: float = 0.0, index: bool = False, name: str | None = None,
               external_id: str | None = None, metadata: dict[str, Any] | None = None,
               tenant: str | None = None, source_label: str | None = None) -> SearchResult:
        """Rank the catalog against a query; with index=True add it afterwards, atomically."""
        if not 1 <= top_k <= 100:
            raise InvalidInput("top_k must be between 1 and 100")
        tenant = tenant or self.tenant
        kind, media, label = self._open(source, media_type)
        query = kind.query(media)
        state = self._state(kind.name)
        if not index:
            matches = self._search_shared(kind, state, tenant, query, top_k, min_score)
            return SearchResult(self._hits(kind, matches))
        with state.lock.write():  # search-then-add is one step: two ingests see each other
            self._refresh(kind, state)
            matches = state.index.search(query, tenant, top_k, min_score)
            added = self._add(kind, tenant, kind.stored_of(query), name=name or _name_of(source),
                              external_id=external_id, metadata=metadata,
                              source=source_label or label, if_exists="error")
        return SearchResult(self._hits(kind, matches), added)

    def _search_shared(self, kind: AnyKind, state: _KindState, tenant: str, query: Any,
                       top_k: int, min_score: float, exclude: int | None = None) -> list[Match]:
        """Search under the shared lock, so searches run in parallel on every core.

        Pending index work (catching up with the catalog, sorting new entries) is a write;
        it is done under the exclusive lock first, and the search retries until the index
        is ready to be read as it is.
        """
        self._refresh(kind, state)
        while True:
            with state.lock.read():
                if state.index.ready():
                    return state.index.search(query, tenant, top_k, min_score, exclude)
            with state.lock.write():
                state.index.prepare()

    def compare(self, a: Source, b: Source, media_type: str | None = None,
                tenant: str | None = None) -> Comparison:
        """Score `a` (as a query) against `b` (as a stored item); the kind is `media_type`, or
        that of a catalog operand, or sniffed from `a`'s content."""
        tenant = tenant or self.tenant
        kind = self._kind_of_operands(a, b, media_type, tenant)
        query = (kind.query_of(self._stored_of(kind, a, tenant)) if isinstance(a, MediaRef)
                 else kind.query(self._open(a, kind.name)[1]))
        stored = (self._stored_of(kind, b, tenant) if isinstance(b, MediaRef)
                  else kind.stored(self._open(b, kind.name)[1]))
        match = kind.verify(query, stored)
        return Comparison(match.score, kind.calibration.label(match.score), list(match.segments))

    def get(self, media_id: str, tenant: str | None = None) -> MediaRecord:
        return self.store.get(tenant or self.tenant, media_id)

    def list(self, media_type: str | None = None, *, after: int = 0, limit: int = 100,
             tenant: str | None = None) -> list[MediaRecord]:
        return self.store.list(tenant or self.tenant, media_type, after, limit)

    def clusters(self, media_type: str | None = None, min_confidence: str = "medium",
                 tenant: str | None = None, neighbours: int = 10) -> list[Cluster]:
        """Connected groups of items that match each other at `min_confidence` or better
        (items of one kind each; every kind when `media_type` is None)."""
        tenant = tenant or self.tenant
        chosen = [get_kind(media_type)] if media_type else list(kinds().values())
        clusters: list[Cluster] = []
        for kind in chosen:
            clusters += self._group(self._edges(kind, tenant, min_confidence, neighbours))
        return clusters

    def _edges(self, kind: AnyKind, tenant: str, min_confidence: str, neighbours: int
               ) -> dict[tuple[int, int], float]:
        state = self._state(kind.name)
        edges: dict[tuple[int, int], float] = {}
        for seq, stored in self._tenant_fingerprints(kind, tenant):
            found = self._search_shared(kind, state, tenant, kind.query_of(stored), neighbours,
                                        0.0, exclude=seq)
            for m in found:
                if at_least(kind.calibration.label(m.score), min_confidence):
                    pair = (min(seq, m.key), max(seq, m.key))
                    edges[pair] = max(edges.get(pair, 0.0), m.score)
        return edges

    def decide(self, media_id: str, action: str, *, other_media_id: str | None = None,
               note: str | None = None, tenant: str | None = None) -> dict[str, Any]:
        """Store a reviewer's decision on an item or a pair (both must be in the tenant)."""
        tenant = tenant or self.tenant
        if action not in decisions.ACTIONS:
            raise InvalidInput(f"action must be one of {', '.join(decisions.ACTIONS)}")
        for media in (media_id, other_media_id):
            if media is not None:
                self.store.get(tenant, media)  # NotFound for unknown or other tenants' ids
        return decisions.record(self.store, tenant, media_id, action, other_media_id, note)

    def decisions(self, media_id: str | None = None, limit: int = 100,
                  tenant: str | None = None) -> list[dict[str, Any]]:
        return decisions.listing(self.store, tenant or self.tenant, media_id, limit)

    def warm_up(self) -> None:
        """Build every kind's index from the catalog now, not on the first request."""
        for media_type in kinds():
            state = self._state(media_type)
            with state.lock.write():
                state.index.prepare()
        _release_freed_heap()

    def index_sizes(self) -> dict[str, tuple[int, int]]:
        """Per media type: (items, bytes) held by this process's in-memory indexes."""
        with self._kinds_lock:
            states = dict(self._kinds)
        sizes = {}
        for name, state in states.items():
            with state.lock.write():
                sizes[name] = (len(state.index), state.index.nbytes())
        return sizes

    def sync(self, media_type: str | None = None) -> None:
        """Read rows other processes added or deleted since the last look (every kind's, or
        one kind's)."""
        for name in [media_type] if media_type else list(kinds()):
            state = self._state(name)
            with state.lock.write():
                self._catch_up(name, state)

    def close(self) -> None:
        self.store.engine.dispose()

    # -- internals ------------------------------------------------------------------------

    def _known(self, tenant: str, external_id: str, if_exists: str) -> MediaRecord | None:
        known = self.store.get_by_external_id(tenant, external_id)
        if known is not None and if_exists != "return":
            raise Conflict(f"external_id {external_id!r} already exists ({known.id})")
        return known

    def _add(self, kind: AnyKind, tenant: str, stored: Any, *, name: str | None,
             external_id: str | None, metadata: dict[str, Any] | None, source: str | None,
             if_exists: str, within: Within | None = None) -> MediaRecord:
        item = NewMedia(tenant=tenant, media_type=kind.name, fingerprint=kind.encode(stored),
                        fingerprint_version=kind.version, name=name, external_id=external_id,
                        source=source, metadata=metadata or {})
        try:
            record = self.store.add(item, within)
        except Conflict:
            if if_exists == "return" and external_id is not None:
                known = self.store.get_by_external_id(tenant, external_id)
                if known is not None:
                    return known
            raise
        self._index_added([(record, stored)])
        return record

    def _index_added(self, added: list[tuple[MediaRecord, Any]]) -> None:
        """Put new catalog rows in this process's indexes, one exclusive lock per media type."""
        for media_type in dict.fromkeys(record.media_type for record, _ in added):
            state = self._state(media_type)
            with state.lock.write():
                state.index.upsert_many([(record.seq, record.tenant, stored)
                                         for record, stored in added
                                         if record.media_type == media_type])

    def _state(self, media_type: str) -> _KindState:
        with self._kinds_lock:
            if media_type not in self._kinds:
                kind = get_kind(media_type)
                state = _KindState(kind.new_index(self._loader(kind)))
                self._kinds[media_type] = state
                with state.lock.write():
                    self._catch_up(media_type, state)
            return self._kinds[media_type]

    def _refresh(self, kind: AnyKind, state: _KindState) -> None:
        """Catch the index up with the catalog if a poll is due.

        The exclusive lock waits for every search in flight, so it is taken only when the
        catalog has changed, not on every search.
        """
        if time.monotonic() - state.synced_at > SYNC_INTERVAL:
            state.synced_at = time.monotonic()  # one poll per interval, not one per thread
            if self.store.changed_since(kind.name, state.last_seq, state.last_deletion):
                with state.lock.write():
                    self._catch_up(kind.name, state)

    def _loader(self, kind: AnyKind) -> Any:
        """How a kind's index reads its candidates' fingerprints back from the catalog."""

        def load(keys: Sequence[int], windows: Mapping[int, Window] | None = None
                 ) -> dict[int, Any]:
            return {seq: kind.decode(Encoded(blob))
                    for seq, blob in self.store.fingerprints_of(None, list(keys)).items()}

        return load

    def _catch_up(self, media_type: str, state: _KindState) -> None:
        """Apply catalog rows and deletions past what this process has seen."""
        kind = get_kind(media_type)
        batch: list[tuple[int, str, Any]] = []
        for seq, tenant, blob in self.store.fingerprints_since(media_type, state.last_seq):
            if seq not in state.index:  # rows this process added are indexed already
                batch.append((seq, tenant, kind.decode(Encoded(blob))))
            state.last_seq = max(state.last_seq, seq)
        state.index.upsert_many(batch)
        for deletion, media_seq, _ in self.store.deletions_since(media_type,
                                                                 state.last_deletion):
            state.index.delete(media_seq)
            state.last_deletion = deletion
        state.synced_at = time.monotonic()

    def _tenant_fingerprints(self, kind: AnyKind, tenant: str) -> Iterable[tuple[int, Any]]:
        for seq, _, blob in self.store.fingerprints_since(kind.name, 0, tenant=tenant):
            yield seq, kind.decode(Encoded(blob))

    def _hits(self, kind: AnyKind, matches: list[Match]) -> list[SearchHit]:
        records = self.store.records([m.key for m in matches])
        return [SearchHit(records[m.key], m.score, kind.calibration.label(m.score),
                          list(m.segments))
                for m in matches if m.key in records]

    def _group(self, edges: dict[tuple[int, int], float]) -> list[Cluster]:
        groups = connected_groups(edges)
        records = self.store.records([key for group in groups for key in group])
        clusters = []
        for group in groups:
            members = set(group)
            pairs = [(records[a].id, records[b].id, s) for (a, b), s in sorted(edges.items())
                     if a in members and a in records and b in records]
            clusters.append(Cluster([records[k] for k in group if k in records], pairs))
        return clusters

    def _kind_of_operands(self, a: Source, b: Source, media_type: str | None,
                          tenant: str) -> AnyKind:
        if media_type:
            return get_kind(media_type)
        for operand in (a, b):
            if isinstance(operand, MediaRef):
                return get_kind(self.store.get(tenant, operand.media_id).media_type)
        return self._open(a, None)[0]

    def _stored_of(self, kind: AnyKind, ref: MediaRef, tenant: str) -> Any:
        record, blob = self.store.get_fingerprint(tenant, ref.media_id)
        if record.media_type != kind.name:
            raise InvalidInput(f"media {ref.media_id} is {record.media_type}, not {kind.name}")
        return kind.decode(Encoded(blob))

    def _open(self, source: Source | MediaInput, media_type: str | None
              ) -> tuple[AnyKind, MediaInput, str | None]:
        """The kind (given, or sniffed from the first bytes), the file as a kind reads it, and
        its label; over the kind's byte cap is refused before anything is decoded."""
        if isinstance(source, MediaRef):
            raise InvalidInput("a catalog reference cannot be indexed or searched again")
        if isinstance(source, bytes):
            media: MediaInput = io.BytesIO(source)
            size, label, head = len(source), None, source[:SNIFF_BYTES]
        elif isinstance(source, str | Path):
            media, label = Path(source), str(source)
            size, head = _size_and_head(media)
        else:
            media, label = source, None
            head = source.read(SNIFF_BYTES)
            source.seek(0)
            size = 0
        kind = get_kind(media_type) if media_type else sniff_kind(head)
        if size > kind.limits.max_bytes:
            raise MediaTooLarge(f"{label or 'the file'} is {size} bytes, over the cap of "
                                f"{kind.limits.max_bytes} for {kind.name}")
        return kind, media, label


def _size_and_head(path: Path) -> tuple[int, bytes]:
    try:
        with path.open("rb") as f:
            return os.fstat(f.fileno()).st_size, f.read(SNIFF_BYTES)
    except OSError as e:
        raise InvalidInput(f"cannot read {path}: {e.strerror}") from e


def _name_of(source: Source) -> str | None:
    return Path(source).name if isinstance(source, str | Path) else None


def _release_freed_heap() -> None:
    """Give the C heap's free pages back to the system (glibc; elsewhere nothing happens).

    Building the indexes decodes every stored fingerprint into blocks of about 10 KB that are
    freed again, and glibc keeps them: at 100k items about 650 MB of a process's RSS was heap
    that nothing used, until this call.
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
