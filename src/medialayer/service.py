"""The use cases — index, search, compare, delete, clusters — over the catalog and the indexes.

`MediaLayer` is the library entry point and what the CLI and the HTTP API call. The catalog is
the source of truth; each (tenant, media type) has an in-memory index rebuilt from it at first
use and kept in step with writes, including writes made by other processes (`sync`).
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from medialayer.calibration import at_least, confidence
from medialayer.catalog import decisions
from medialayer.catalog.store import MediaRecord, NewMedia, Within, WithinMany, open_store
from medialayer.clusters import connected_groups
from medialayer.errors import Conflict, InvalidInput, MediaTooLarge
from medialayer.kinds import KINDS, FingerprintLoader, KindIndex, Match, get_kind
from medialayer.locks import ReadWriteLock
from medialayer.results import (
    Cluster,
    ClusterPair,
    Comparison,
    MediaRef,
    SearchHit,
    SearchResult,
    Source,
)

DEFAULT_TENANT = "default"
MAX_FILE_BYTES = 50 * 1024 * 1024
SYNC_INTERVAL = 0.5
"""Seconds between catalog polls for rows written by other processes."""


class _KindState:
    """One media type's indexes (one per tenant) and how far they have read the catalog."""

    def __init__(self) -> None:
        self.by_tenant: dict[str, KindIndex] = {}
        self.tenant_of: dict[int, str] = {}
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

    def index(self, source: Source, media_type: str = "image", *, name: str | None = None,
              external_id: str | None = None, metadata: dict[str, Any] | None = None,
              tenant: str | None = None, source_label: str | None = None,
              if_exists: str = "error") -> MediaRecord:
        """Fingerprint and add one item. With if_exists='return', a known external id is a no-op."""
        tenant = tenant or self.tenant
        if external_id is not None and (known := self._known(tenant, external_id, if_exists)):
            return known
        data, label = self._read(source)
        kind = get_kind(media_type)
        fingerprint = kind.fingerprint(data)
        return self._add(kind.name, tenant, fingerprint, name=name or _name_of(source),
                         external_id=external_id, metadata=metadata,
                         source=source_label or label, if_exists=if_exists)

    def index_fingerprints(self, items: list[NewMedia], within: WithinMany | None = None
                           ) -> list[MediaRecord]:
        """Add items fingerprinted elsewhere (worker processes) in one transaction, all or
        none; `within(session, media_ids)` joins it (the bulk job marks its rows done)."""
        fingerprints = [get_kind(i.media_type).decode(i.fingerprint) for i in items]
        records = self.store.add_many(items, within)
        self._index_added(list(zip(records, fingerprints, strict=True)))
        return records

    def delete(self, media_id: str, tenant: str | None = None) -> MediaRecord:
        record = self.store.delete(tenant or self.tenant, media_id)
        state = self._state(record.media_type)
        with state.lock.write():
            index = state.by_tenant.get(record.tenant)
            if index is not None:
                index.remove(record.seq)
            state.tenant_of.pop(record.seq, None)
        return record

    # -- reads ----------------------------------------------------------------------------

    def search(self, source: Source, media_type: str = "image", *, top_k: int = 5,
               min_score: float = 0.0, index: bool = False, name: str | None = None,
               external_id: str | None = None, metadata: dict[str, Any] | None = None,
               tenant: str | None = None, source_label: str | None = None) -> SearchResult:
        """Rank the catalog against a query; with index=True add it afterwards, atomically."""
        if not 1 <= top_k <= 100:
            raise InvalidInput("top_k must be between 1 and 100")
        tenant = tenant or self.tenant
        kind = get_kind(media_type)
        data, label = self._read(source)
        query = kind.fingerprint(data, query=True)
        state = self._state(kind.name)
        if not index:
            matches = self._search_shared(kind.name, state, tenant, query, top_k, min_score)
            return SearchResult(self._hits(kind.name, matches))
        with state.lock.write():  # search-then-add is one step: two ingests see each other
            matches = self._index_for(kind.name, tenant).search(query, top_k, min_score)
            added = self._add(kind.name, tenant, query, name=name or _name_of(source),
                              external_id=external_id, metadata=metadata,
                              source=source_label or label, if_exists="error")
        return SearchResult(self._hits(kind.name, matches), added)

    def _search_shared(self, media_type: str, state: _KindState, tenant: str, query: Any,
                       top_k: int, min_score: float, exclude: int | None = None) -> list[Match]:
        """Search under the shared lock, so searches run in parallel on every core.

        Pending index work (catching up with the catalog, sorting new entries) is a write;
        it is done under the exclusive lock first, and the search retries until the index
        is ready to be read as it is.
        """
        index = self._index_for(media_type, tenant)
        while True:
            with state.lock.read():
                if index.ready():
                    return index.search(query, top_k, min_score, exclude)
            with state.lock.write():
                index.prepare()

    def compare(self, a: Source, b: Source, media_type: str = "image",
                tenant: str | None = None) -> Comparison:
        kind = get_kind(media_type)
        tenant = tenant or self.tenant
        match = kind.compare(self._fingerprint_of(kind, a, tenant, query=True),
                             self._fingerprint_of(kind, b, tenant, query=True))
        return Comparison(match.score, confidence(kind.name, match.score), match.segments,
                          match.explanation)

    def get(self, media_id: str, tenant: str | None = None) -> MediaRecord:
        return self.store.get(tenant or self.tenant, media_id)

    def list(self, media_type: str | None = None, *, after: int = 0, limit: int = 100,
             tenant: str | None = None) -> list[MediaRecord]:
        return self.store.list(tenant or self.tenant, media_type, after, limit)

    def clusters(self, media_type: str = "image", min_confidence: str = "medium",
                 tenant: str | None = None, neighbours: int = 10) -> list[Cluster]:
        """Connected groups of items that match each other at `min_confidence` or better.

        Search proposes the pairs; each pair is then scored once with `compare`, which is
        symmetric, so an edge does not depend on which item happened to search for the other.
        """
        tenant = tenant or self.tenant
        kind = get_kind(media_type)
        state = self._state(kind.name)
        load = self._loader(kind.name, tenant)
        scored: dict[tuple[int, int], Match] = {}
        for seq, blob in self._tenant_fingerprints(kind.name, tenant):
            fingerprint = kind.decode(blob)
            found = self._search_shared(kind.name, state, tenant, fingerprint, neighbours,
                                        0.0, exclude=seq)
            others = load([m.key for m in found if (min(seq, m.key), max(seq, m.key))
                           not in scored])
            for key, other in others.items():
                scored[(min(seq, key), max(seq, key))] = kind.compare(fingerprint, other)
        edges = {pair: m for pair, m in scored.items()
                 if at_least(confidence(kind.name, m.score), min_confidence)}
        return self._group(edges)

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
        """Build every kind's indexes from the catalog now, not on the first request."""
        for media_type in KINDS:
            state = self._state(media_type)
            with state.lock.write():
                for index in state.by_tenant.values():
                    index.prepare()
        _release_freed_heap()

    def index_sizes(self) -> dict[str, tuple[int, int]]:
        """Per media type: (items, bytes) held by this process's in-memory indexes."""
        with self._kinds_lock:
            kinds = dict(self._kinds)
        sizes = {}
        for name, state in kinds.items():
            with state.lock.write():
                indexes = list(state.by_tenant.values())
                sizes[name] = (sum(len(i) for i in indexes), sum(i.nbytes() for i in indexes))
        return sizes

    def sync(self, media_type: str = "image") -> None:
        """Read rows other processes added or deleted since the last look."""
        state = self._state(media_type)
        with state.lock.write():
            self._catch_up(media_type, state)

    def close(self) -> None:
        self.store.engine.dispose()

    # -- internals ------------------------------------------------------------------------

    def _known(self, tenant: str, external_id: str, if_exists: str) -> MediaRecord | None:
        known = self.store.get_by_external_id(tenant, external_id)
        if known is not None and if_exists != "return":
            raise Conflict(f"external_id {external_id!r} already exists ({known.id})")
        return known

    def _add(self, media_type: str, tenant: str, fingerprint: Any, *, name: str | None,
             external_id: str | None, metadata: dict[str, Any] | None, source: str | None,
             if_exists: str, within: Within | None = None) -> MediaRecord:
        kind = get_kind(media_type)
        item = NewMedia(tenant=tenant, media_type=media_type, fingerprint=kind.encode(fingerprint),
                        name=name, external_id=external_id, source=source,
                        metadata=metadata or {})
        try:
            record = self.store.add(item, within)
        except Conflict:
            if if_exists == "return" and external_id is not None:
                known = self.store.get_by_external_id(tenant, external_id)
                if known is not None:
                    return known
            raise
        self._index_added([(record, fingerprint)])
        return record

    def _index_added(self, added: list[tuple[MediaRecord, Any]]) -> None:
        """Put new catalog rows in this process's indexes, one exclusive lock per media type."""
        for media_type in dict.fromkeys(record.media_type for record, _ in added):
            state = self._state(media_type)
            with state.lock.write():
                for record, fingerprint in added:
                    if record.media_type == media_type:
                        self._index_for(media_type, record.tenant).add(record.seq, fingerprint)
                        state.tenant_of[record.seq] = record.tenant

    def _state(self, media_type: str) -> _KindState:
        with self._kinds_lock:
            if media_type not in self._kinds:
                state = _KindState()
                self._kinds[media_type] = state
                with state.lock.write():
                    self._catch_up(media_type, state)
            return self._kinds[media_type]

    def _index_for(self, media_type: str, tenant: str) -> KindIndex:
        """The tenant's index, caught up with the catalog if a poll is due.

        The exclusive lock waits for every search in flight, so it is taken only when the
        catalog has changed (or the tenant has no index yet), not on every search.
        """
        state = self._state(media_type)
        if time.monotonic() - state.synced_at > SYNC_INTERVAL:
            state.synced_at = time.monotonic()  # one poll per interval, not one per thread
            if self.store.changed_since(media_type, state.last_seq, state.last_deletion):
                with state.lock.write():
                    self._catch_up(media_type, state)
        index = state.by_tenant.get(tenant)
        if index is None:
            with state.lock.write():
                index = self._tenant_index(media_type, state, tenant)
        return index

    def _tenant_index(self, media_type: str, state: _KindState, tenant: str) -> KindIndex:
        if tenant not in state.by_tenant:
            state.by_tenant[tenant] = get_kind(media_type).new_index(
                self._loader(media_type, tenant))
        return state.by_tenant[tenant]

    def _loader(self, media_type: str, tenant: str) -> FingerprintLoader:
        """How a tenant's index reads its candidates' fingerprints back from the catalog."""
        kind = get_kind(media_type)

        def load(keys: list[int]) -> dict[int, Any]:
            return {seq: kind.decode(blob)
                    for seq, blob in self.store.fingerprints_of(tenant, keys).items()}

        return load

    def _catch_up(self, media_type: str, state: _KindState) -> None:
        """Apply catalog rows and deletions past what this process has seen."""
        kind = get_kind(media_type)
        for seq, tenant, blob in self.store.fingerprints_since(media_type, state.last_seq):
            if seq not in state.tenant_of:  # rows this process added are indexed already
                self._tenant_index(media_type, state, tenant).add(seq, kind.decode(blob))
                state.tenant_of[seq] = tenant
            state.last_seq = max(state.last_seq, seq)
        for deletion, media_seq, tenant in self.store.deletions_since(media_type,
                                                                      state.last_deletion):
            if tenant in state.by_tenant:
                state.by_tenant[tenant].remove(media_seq)
            state.tenant_of.pop(media_seq, None)
            state.last_deletion = deletion
        state.synced_at = time.monotonic()

    def _tenant_fingerprints(self, media_type: str, tenant: str) -> Iterable[tuple[int, bytes]]:
        for seq, _, blob in self.store.fingerprints_since(media_type, 0, tenant=tenant):
            yield seq, blob

    def _hits(self, media_type: str, matches: list[Match]) -> list[SearchHit]:
        records = self.store.records([m.key for m in matches])
        return [SearchHit(records[m.key], m.score, confidence(media_type, m.score), m.segments,
                          m.explanation)
                for m in matches if m.key in records]

    def _group(self, edges: dict[tuple[int, int], Match]) -> list[Cluster]:
        groups = connected_groups({pair: m.score for pair, m in edges.items()})
        records = self.store.records([key for group in groups for key in group])
        clusters = []
        for group in groups:
            members = set(group)
            pairs = [ClusterPair(records[a].id, records[b].id, m.score, m.explanation)
                     for (a, b), m in sorted(edges.items())
                     if a in members and a in records and b in records]
            clusters.append(Cluster([records[k] for k in group if k in records], pairs))
        return clusters

    def _fingerprint_of(self, kind: Any, source: Source, tenant: str, query: bool) -> Any:
        if isinstance(source, MediaRef):
            _, blob = self.store.get_fingerprint(tenant, source.media_id)
            return kind.decode(blob)
        data, _ = self._read(source)
        return kind.fingerprint(data, query=query)

    def _read(self, source: Source) -> tuple[bytes, str | None]:
        if isinstance(source, bytes):
            if len(source) > MAX_FILE_BYTES:
                raise MediaTooLarge(f"file is over {MAX_FILE_BYTES} bytes")
            return source, None
        if isinstance(source, MediaRef):
            raise InvalidInput("a catalog reference cannot be indexed or searched again")
        path = Path(source)
        try:
            size = path.stat().st_size
        except OSError as e:
            raise InvalidInput(f"cannot read {path}: {e.strerror}") from e
        if size > MAX_FILE_BYTES:
            raise MediaTooLarge(f"{path} is {size} bytes, over {MAX_FILE_BYTES}")
        return path.read_bytes(), str(path)


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
