"""The use cases — index, search, compare, delete, clusters — over the catalog and the indexes.

`MediaLayer` is the library entry point and what the CLI and the HTTP API call. The catalog is
the source of truth; each (tenant, media type) has an in-memory index rebuilt from it at first
use and kept in step with writes, including writes made by other processes (`sync`).
"""

from __future__ import annotations

import builtins
import ctypes
import io
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from medialayer.catalog import decisions
from medialayer.catalog.store import MediaRecord, NewMedia, Within, WithinMany, open_store
from medialayer.clusters import connected_groups
from medialayer.errors import Conflict, InvalidInput, MediaTooLarge
from medialayer.fields import problem
from medialayer.index.registry import DELETIONS_KEPT, IndexRegistry
from medialayer.kinds import AnyKind, get_kind, kinds, sniff_kind
from medialayer.kinds.base import Loader, Match, MediaInput, Window, at_least, both_ways
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
SNIFF_BYTES = 512
"""How much of a file kinds' sniffing looks at: MPEG-TS shows its sync byte three packets
apart (377 bytes)."""


class MediaLayer:
    """A catalog of fingerprinted media and the searches over it."""

    def __init__(self, data_dir: str | Path | None = None, *, database_url: str | None = None,
                 tenant: str = DEFAULT_TENANT, bands: int | None = None) -> None:
        """`bands`: the code indexes' bands (default MEDIALAYER_INDEX_BANDS, else each
        kind's own)."""
        data_dir = data_dir or os.environ.get("MEDIALAYER_DATA_DIR") or "data"
        database_url = database_url or os.environ.get("MEDIALAYER_DATABASE_URL") or None
        bands = bands or int(os.environ.get("MEDIALAYER_INDEX_BANDS") or 0) or None
        self.store = open_store(data_dir, database_url)
        self.store.prune_deletions(DELETIONS_KEPT)
        self.tenant = tenant
        self.indexes = IndexRegistry(self.store, get_kind, self._loader, bands)

    # -- writes ---------------------------------------------------------------------------

    def index(self, source: Source, media_type: str | None = None, *, name: str | None = None,
              external_id: str | None = None, metadata: dict[str, Any] | None = None,
              tenant: str | None = None, source_label: str | None = None,
              if_exists: str = "error") -> MediaRecord:
        """Fingerprint and add one item (its kind sniffed from the content if not given).
        With if_exists='return', a known external id is a no-op."""
        _storable(name=name, external_id=external_id, metadata=metadata)
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
        for media_type in dict.fromkeys(r.media_type for r in records):
            self.indexes.added(media_type, [(r.seq, r.tenant, s)
                                            for r, s in zip(records, stored, strict=True)
                                            if r.media_type == media_type])
        return records

    def delete(self, media_id: str, tenant: str | None = None) -> MediaRecord:
        record = self.store.delete(tenant or self.tenant, media_id)
        self.indexes.deleted(record.media_type, record.seq)
        return record

    # -- reads ----------------------------------------------------------------------------

    def search(self, source: Source, media_type: str | None = None, *, top_k: int = 5,
               min_score: float = 0.0, index: bool = False, name: str | None = None,
               external_id: str | None = None, metadata: dict[str, Any] | None = None,
               tenant: str | None = None, source_label: str | None = None) -> SearchResult:
        """Rank the catalog against a query; with index=True add it afterwards, atomically."""
        if not 1 <= top_k <= 100:
            raise InvalidInput("top_k must be between 1 and 100")
        _storable(name=name, external_id=external_id, metadata=metadata)
        tenant = tenant or self.tenant
        kind, media, label = self._open(source, media_type)
        query = kind.query(media)
        if not index:
            matches = self.indexes.search(kind.name, query, tenant, top_k, min_score)
            return SearchResult(self._hits(kind, matches))
        entry = self.indexes.get(kind.name)
        with entry.lock.write():  # search-then-add is one step: two ingests see each other
            self.indexes.poll(entry)
            matches = entry.index.search(query, tenant, top_k, min_score)
            added = self._add(kind, tenant, kind.stored_of(query), name=name or _name_of(source),
                              external_id=external_id, metadata=metadata,
                              source=source_label or label, if_exists="error")
        return SearchResult(self._hits(kind, matches), added)

    def compare(self, a: Source, b: Source, media_type: str | None = None,
                tenant: str | None = None) -> Comparison:
        """Score `a` and `b` against each other, each as the query against the other stored, and
        keep the stronger: compare(a, b) and compare(b, a) agree. The kind is `media_type`, or
        that of a catalog operand, or sniffed from `a`'s content."""
        tenant = tenant or self.tenant
        kind = self._kind_of_operands(a, b, media_type, tenant)
        match = both_ways(kind, *self._operand(kind, a, tenant),
                           *self._operand(kind, b, tenant))
        return Comparison(match.score, kind.calibration.label(match.score), list(match.segments),
                          match.explanation)

    def get(self, media_id: str, tenant: str | None = None) -> MediaRecord:
        return self.store.get(tenant or self.tenant, media_id)

    def list(self, media_type: str | None = None, *, after: int = 0, limit: int = 100,
             tenant: str | None = None) -> builtins.list[MediaRecord]:
        return self.store.list(tenant or self.tenant, media_type, after, limit)

    def clusters(self, media_type: str | None = None, min_confidence: str = "medium",
                 tenant: str | None = None, neighbours: int = 10) -> builtins.list[Cluster]:
        """Connected groups of items that match each other at `min_confidence` or better
        (items of one kind each; every kind when `media_type` is None)."""
        tenant = tenant or self.tenant
        chosen = [get_kind(media_type)] if media_type else list(kinds().values())
        clusters: builtins.list[Cluster] = []
        for kind in chosen:
            clusters += self._group(self._edges(kind, tenant, min_confidence, neighbours))
        return clusters

    def _edges(self, kind: AnyKind, tenant: str, min_confidence: str, neighbours: int
               ) -> dict[tuple[int, int], Match]:
        """Search proposes the pairs; each pair is then scored once, both ways as `compare`
        does, so an edge does not depend on which item happened to search for the other."""
        load = self._loader(kind)
        scored: dict[tuple[int, int], Match] = {}
        for seq, stored in self._tenant_fingerprints(kind, tenant):
            query = kind.query_of(stored)
            found = self.indexes.search(kind.name, query, tenant, neighbours, 0.0, exclude=seq)
            others = load([m.key for m in found if _pair(seq, m.key) not in scored])
            for key, other in others.items():
                match = both_ways(kind, query, stored, kind.query_of(other), other)
                scored[_pair(seq, key)] = match if seq < key else match.swapped()
        return {pair: m for pair, m in scored.items()
                if at_least(kind.calibration.label(m.score), min_confidence)}

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
                  tenant: str | None = None) -> builtins.list[dict[str, Any]]:
        return decisions.listing(self.store, tenant or self.tenant, media_id, limit)

    def warm_up(self) -> None:
        """Build every kind's index from the catalog now, not on the first request."""
        for media_type in kinds():
            self.indexes.prepare(media_type)
        _release_freed_heap()

    def index_sizes(self) -> dict[str, tuple[int, int]]:
        """Per media type: (items, bytes) held by this process's in-memory indexes."""
        return self.indexes.sizes()

    def sync(self, media_type: str | None = None) -> None:
        """Read rows other processes added or deleted since the last look (every kind's, or
        one kind's)."""
        for name in [media_type] if media_type else list(kinds()):
            self.indexes.sync(name)

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
        self.indexes.added(kind.name, [(record.seq, record.tenant, stored)])
        return record

    def _loader(self, kind: AnyKind) -> Loader[Any]:
        """How a kind's index reads its candidates' fingerprints back from the catalog."""

        def load(keys: Sequence[int], windows: Mapping[int, Window] | None = None
                 ) -> dict[int, Any]:
            rows = self.store.fingerprints_of(None, list(keys), windows)
            return {seq: kind.decode(row.encoded) for seq, row in rows.items()
                    if row.version == kind.version}

        return load

    def _tenant_fingerprints(self, kind: AnyKind, tenant: str) -> Iterable[tuple[int, Any]]:
        for row in self.store.rows_since(kind.name, 0, tenant=tenant):
            if row.version == kind.version:
                yield row.seq, kind.decode(row.encoded)

    def _hits(self, kind: AnyKind, matches: builtins.list[Match]) -> builtins.list[SearchHit]:
        records = self.store.records([m.key for m in matches])
        return [SearchHit(records[m.key], m.score, kind.calibration.label(m.score),
                          list(m.segments), m.explanation)
                for m in matches if m.key in records]

    def _group(self, edges: dict[tuple[int, int], Match]) -> builtins.list[Cluster]:
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

    def _kind_of_operands(self, a: Source, b: Source, media_type: str | None,
                          tenant: str) -> AnyKind:
        if media_type:
            return get_kind(media_type)
        for operand in (a, b):
            if isinstance(operand, MediaRef):
                return get_kind(self.store.get(tenant, operand.media_id).media_type)
        return self._open(a, None)[0]

    def _operand(self, kind: AnyKind, source: Source, tenant: str) -> tuple[Any, Any]:
        """A comparison operand's query and stored fingerprints, decoded once."""
        if isinstance(source, MediaRef):
            stored = self._stored_of(kind, source, tenant)
            return kind.query_of(stored), stored
        query = kind.query(self._open(source, kind.name)[1])
        return query, kind.stored_of(query)

    def _stored_of(self, kind: AnyKind, ref: MediaRef, tenant: str) -> Any:
        record, row = self.store.get_fingerprint(tenant, ref.media_id)
        if record.media_type != kind.name:
            raise InvalidInput(f"media {ref.media_id} is {record.media_type}, not {kind.name}")
        if row.version != kind.version:
            raise InvalidInput(f"media {ref.media_id} was fingerprinted with {kind.name} "
                               f"fingerprint version {row.version}, this build reads version "
                               f"{kind.version}: index it again from its source")
        return kind.decode(row.encoded)

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
    if path.is_dir():
        raise InvalidInput(f"{path} is a folder, not a media file")
    try:
        with path.open("rb") as f:
            return os.fstat(f.fileno()).st_size, f.read(SNIFF_BYTES)
    except OSError as e:
        raise InvalidInput(f"cannot read {path}: {e.strerror}") from e


def _pair(a: int, b: int) -> tuple[int, int]:
    return (a, b) if a < b else (b, a)


def _storable(**fields: Any) -> None:
    """InvalidInput before any look-up if a field could not be stored (NUL, NaN): PostgreSQL
    refuses NUL even in a query's parameters."""
    for name, value in fields.items():
        if reason := problem(value):
            raise InvalidInput(f"{name} {reason}")


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
