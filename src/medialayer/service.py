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
from pathlib import Path
from typing import Any

from medialayer.calibration import confidence
from medialayer.catalog import upserts
from medialayer.catalog.decisions import Actor, Mark
from medialayer.catalog.store import MediaRecord, NewMedia, Within, WithinMany, open_store
from medialayer.errors import Conflict, InvalidInput, MediaTooLarge
from medialayer.kinds import KINDS, FingerprintLoader, KindIndex, Match, get_kind
from medialayer.locks import ReadWriteLock
from medialayer.policies import Policies, most_severe, verdict
from medialayer.results import Cluster, Comparison, MediaRef, SearchHit, SearchResult, Source
from medialayer.review import NEIGHBOURS, Review

DEFAULT_TENANT = "default"
MAX_FILE_BYTES = 50 * 1024 * 1024
POLICY_ACTOR = Actor(None, "policy")
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
        self.review = Review(self.store)
        self.policies = Policies(self.store)
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

    def upsert(self, source: Source, media_type: str, external_id: str, *,
               name: str | None = None, metadata: dict[str, Any] | None = None,
               tenant: str | None = None, source_label: str | None = None
               ) -> tuple[MediaRecord, bool]:
        """Add the item with this external id, or update it: (record, whether it was added).

        Same media: only name, metadata and source change. New media (a seller replaced the
        photo of a SKU): a new fingerprint under the same media id (`catalog.upserts`).
        """
        tenant = tenant or self.tenant
        known = self.store.get_by_external_id(tenant, external_id)
        if known is None:
            return self.index(source, media_type, name=name, external_id=external_id,
                              metadata=metadata, tenant=tenant, source_label=source_label,
                              if_exists="return"), True
        data, label = self._read(source)
        kind = get_kind(media_type)
        fingerprint = kind.fingerprint(data)
        blob = kind.encode(fingerprint)
        if kind.name == known.media_type and blob == self.store.get_fingerprint(tenant,
                                                                              known.id)[1]:
            return upserts.update_fields(self.store, tenant, known.id, name=name,
                                         metadata=metadata, source=source_label or label), False
        record = upserts.replace(self.store, known, NewMedia(
            tenant=tenant, media_type=kind.name, fingerprint=blob, name=name,
            external_id=external_id, source=source_label or label, metadata=metadata or {}))
        self._unindex(known)
        self._index_added([(record, fingerprint)])
        self._keep_edges(record, fingerprint)
        return record, False

    def index_fingerprints(self, items: list[NewMedia], within: WithinMany | None = None,
                           keep_edges: bool = True) -> list[MediaRecord]:
        """Add items fingerprinted elsewhere (worker processes) in one transaction, all or
        none; `within(session, media_ids)` joins it (the bulk job marks its rows done)."""
        fingerprints = [get_kind(i.media_type).decode(i.fingerprint) for i in items]
        records = self.store.add_many(items, within)
        added = list(zip(records, fingerprints, strict=True))
        self._index_added(added)
        for record, fingerprint in added if keep_edges else ():
            self._keep_edges(record, fingerprint)
        return records

    def find_edges(self, records: list[MediaRecord]) -> None:
        """Keep the edges of items added with keep_edges=False (bulk rows: found after their
        rows are done, so a catalog full of copies does not slow the rows down)."""
        for tenant in {r.tenant for r in records}:
            mine = [r for r in records if r.tenant == tenant]
            blobs = self.store.fingerprints_of(tenant, [r.seq for r in mine])
            for r in mine:
                if r.seq in blobs:
                    self._keep_edges(r, get_kind(r.media_type).decode(blobs[r.seq]))

    def delete(self, media_id: str, tenant: str | None = None) -> MediaRecord:
        record = self.store.delete(tenant or self.tenant, media_id)
        self._unindex(record)
        return record

    def _unindex(self, record: MediaRecord) -> None:
        """Drop a deleted row from this process's index and its edges from the clusters."""
        state = self._state(record.media_type)
        with state.lock.write():
            index = state.by_tenant.get(record.tenant)
            if index is not None:
                index.remove(record.seq)
            state.tenant_of.pop(record.seq, None)
        self.review.forget(record)

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
            return self._answer(kind.name, tenant, matches, metadata)
        with state.lock.write():  # search-then-add is one step: two ingests see each other
            matches = self._index_for(kind.name, tenant).search(query, top_k, min_score)
            added = self._add(kind.name, tenant, query, name=name or _name_of(source),
                              external_id=external_id, metadata=metadata,
                              source=source_label or label, if_exists="error", found=matches)
        return self._answer(kind.name, tenant, matches, metadata, added)

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
                             self._fingerprint_of(kind, b, tenant, query=False))
        return Comparison(match.score, confidence(kind.name, match.score), match.segments)

    def get(self, media_id: str, tenant: str | None = None) -> MediaRecord:
        return self.store.get(tenant or self.tenant, media_id)

    def list(self, media_type: str | None = None, *, after: int = 0, limit: int = 100,
             tenant: str | None = None) -> list[MediaRecord]:
        return self.store.list(tenant or self.tenant, media_type, after, limit)

    def clusters(self, media_type: str = "image", min_confidence: str = "medium",
                 tenant: str | None = None) -> list[Cluster]:
        """Every kept cluster of items matching at `min_confidence` or better (see `review`
        for pages of them): read from the kept edges, never searched again."""
        tenant = tenant or self.tenant
        get_kind(media_type)
        found: list[Cluster] = []
        before = None
        while page := self.review.clusters(tenant, media_type, min_confidence, before, 500):
            found += [Cluster(c.members, [(p.a.id, p.b.id, p.score) for p in c.pairs])
                      for c in page]
            before = page[-1].id
        return sorted(found, key=lambda c: -len(c.members))

    def rebuild_edges(self, media_type: str = "image", tenant: str | None = None) -> int:
        """Search every item of the tenant again and keep the edges found: for a catalog
        indexed before edges were kept. Returns the number of items searched."""
        tenant = tenant or self.tenant
        kind = get_kind(media_type)
        searched = 0
        for seq, _, blob in self.store.fingerprints_since(kind.name, 0, tenant=tenant):
            self.review.keep(tenant, kind.name, seq, self._neighbours(kind.name, tenant, seq,
                                                                      kind.decode(blob)))
            searched += 1
        return searched

    def decide(self, media_id: str, action: str, *, other_media_id: str | None = None,
               cluster_id: int | None = None, note: str | None = None,
               tenant: str | None = None, actor: Actor | None = None) -> dict[str, Any]:
        """Apply a reviewer's decision (see `medialayer.review`); the decision made, or the
        earlier one if it changes nothing, with `created` telling which."""
        made, created = self.review.decide(tenant or self.tenant, actor or Actor(None, None),
                                           action, media_id, other_media_id=other_media_id,
                                           cluster_id=cluster_id, note=note)
        return {**made, "created": created}

    def decisions(self, media_id: str | None = None, limit: int = 100,
                  tenant: str | None = None) -> list[dict[str, Any]]:
        return self.review.decisions(tenant or self.tenant, media_id, None, limit)[0]

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
             if_exists: str, within: Within | None = None,
             found: list[Match] | None = None) -> MediaRecord:
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
        self._keep_edges(record, fingerprint, found)
        return record

    def _keep_edges(self, record: MediaRecord, fingerprint: Any,
                    found: list[Match] | None = None) -> None:
        """Keep a new item's matches as edges: those `found` by the search that added it, else
        a search for its neighbours now (review hook: medialayer.review)."""
        if found is None:
            found = self._neighbours(record.media_type, record.tenant, record.seq, fingerprint)
        self.review.keep(record.tenant, record.media_type, record.seq, found)

    def _neighbours(self, media_type: str, tenant: str, seq: int, fingerprint: Any
                    ) -> list[Match]:
        return self._search_shared(media_type, self._state(media_type), tenant, fingerprint,
                                   NEIGHBOURS, 0.0, exclude=seq)

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

    def _answer(self, media_type: str, tenant: str, matches: list[Match],
                metadata: dict[str, Any] | None, added: MediaRecord | None = None
                ) -> SearchResult:
        """The hits with their canonical items and the tenant's policy's actions; an ingested
        query the policy auto-rejects is marked rejected (audited as the policy's decision)."""
        records = self.store.records([m.key for m in matches])
        marks = self.review.marks(tenant, [r.id for r in records.values()])
        rules = self.policies.rules(tenant)
        hits = [SearchHit(records[m.key], m.score, confidence(media_type, m.score), m.segments,
                          _canonical(marks.get(records[m.key].id)),
                          verdict(rules, media_type, m.score, metadata or {},
                                  records[m.key].metadata))
                for m in matches if m.key in records]
        action = most_severe([h.action for h in hits])
        if added is not None and action == "auto_reject":
            self.review.decide(tenant, POLICY_ACTOR, "reject", added.id,
                               note="auto_reject by the tenant's policy")
        return SearchResult(hits, added, action)

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


def _canonical(mark: Mark | None) -> str | None:
    return mark.canonical_id if mark else None


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
