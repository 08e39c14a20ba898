"""The use cases — index, search, compare, delete, clusters — over the catalog and the indexes.

`MediaLayer` is the library entry point and what the CLI and the HTTP API call. The catalog is
the source of truth; each (tenant, media type) has an in-memory index rebuilt from it at first
use and kept in step with writes, including writes made by other processes (`sync`).
"""

from __future__ import annotations

import builtins
import ctypes
import io
import logging
import os
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

from medialayer import keys
from medialayer.catalog import jobs as job_rows
from medialayer.catalog import upserts
from medialayer.catalog.decisions import Actor, Mark
from medialayer.catalog.jobs import Claim, Progress
from medialayer.catalog.store import MediaRecord, NewMedia, Within, WithinMany, open_store
from medialayer.config import comma_list
from medialayer.errors import Conflict, InvalidInput, MediaTooLarge
from medialayer.fields import problem
from medialayer.index.registry import DELETIONS_KEPT, ChangeFeed, IndexRegistry
from medialayer.index.remote import Fanned, IndexNodes, ShardQuery
from medialayer.index.shards import Partition, PartitionedFeed
from medialayer.index.snapshot import Position, Snapshots
from medialayer.kinds import AnyKind, carriers_of, get_kind, kinds, sniff_kind
from medialayer.kinds.base import Loader, Match, MediaInput, Window, both_ways, tracks_of
from medialayer.kinds.wire import wire_of
from medialayer.policies import Policies, most_severe, verdict
from medialayer.results import (
    Cluster,
    ClusterPair,
    Comparison,
    MediaRef,
    SearchHit,
    SearchResult,
    Source,
)
from medialayer.review import NEIGHBOURS, Review

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

    from medialayer.config import Settings
    from medialayer.webhooks import Dispatcher, Webhooks

DEFAULT_TENANT = "default"
SNIFF_BYTES = 512
"""How much of a file kinds' sniffing looks at: MPEG-TS shows its sync byte three packets
apart (377 bytes)."""
POLICY_ACTOR = Actor(None, "policy")
log = logging.getLogger("medialayer.service")
NODE_TIMEOUT = 10.0
"""Seconds an API process waits for an index node's answer before calling it missing."""


class MediaLayer:
    """A catalog of fingerprinted media and the searches over it."""

    def __init__(self, data_dir: str | Path | None = None, *, database_url: str | None = None,
                 tenant: str = DEFAULT_TENANT, bands: int | None = None,
                 snapshot_dir: str | Path | None = None, shard: Partition | None = None,
                 index_nodes: Sequence[str] | None = None,
                 node_timeout: float | None = None) -> None:
        """`bands`: the code indexes' bands (default MEDIALAYER_INDEX_BANDS, else each
        kind's own). `snapshot_dir`: where index snapshots are mapped from and written to
        (default MEDIALAYER_SNAPSHOT_DIR, else none). `shard`: this process is that index
        node: its indexes hold only its partition of the catalog (`search_shard`).
        `index_nodes`: the URLs of the index nodes, shard i at i (default
        MEDIALAYER_INDEX_NODES, comma-separated): kinds they serve are searched there, not in
        this process; `node_timeout` (MEDIALAYER_INDEX_NODE_TIMEOUT) bounds each wait."""
        data_dir = data_dir or os.environ.get("MEDIALAYER_DATA_DIR") or "data"
        database_url = database_url or os.environ.get("MEDIALAYER_DATABASE_URL") or None
        bands = bands or int(os.environ.get("MEDIALAYER_INDEX_BANDS") or 0) or None
        snapshot_dir = snapshot_dir or os.environ.get("MEDIALAYER_SNAPSHOT_DIR") or None
        index_nodes = index_nodes or comma_list(os.environ.get("MEDIALAYER_INDEX_NODES"))
        node_timeout = node_timeout or float(os.environ.get("MEDIALAYER_INDEX_NODE_TIMEOUT")
                                             or NODE_TIMEOUT)
        self.store = open_store(data_dir, database_url)
        self.store.prune_deletions(DELETIONS_KEPT)
        self.tenant = tenant
        catalog = _catalog_name(self.store.engine.url)
        feed: ChangeFeed = self.store
        if shard is not None:  # its own snapshots: another shard's would not fit
            self.feed: PartitionedFeed | None = PartitionedFeed(self.store, self.store, shard)
            feed = self.feed
            catalog = f"{catalog} {shard}"
            snapshot_dir = snapshot_dir and Path(snapshot_dir) / f"shard-{shard.shard}-of-" \
                                                                 f"{shard.shards}"
        else:
            self.feed = None
        snapshots = Snapshots(snapshot_dir, catalog,
                              DELETIONS_KEPT.total_seconds() / 2) if snapshot_dir else None
        self.indexes = IndexRegistry(feed, get_kind, self._loader, bands,
                                     carriers_of=carriers_of, snapshots=snapshots)
        self.nodes = IndexNodes(index_nodes, node_timeout) if index_nodes and shard is None \
            else None  # a node searches its own partition, whatever the environment says
        self._written = 0
        """The highest seq this process wrote: index nodes see at least that far before
        they answer its searches."""
        self.review = Review(self.store)
        self.policies = Policies(self.store)

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
        kind, media, label = self._open(source, media_type)
        stored = kind.stored(media)
        blob = kind.encode(stored)
        _, row = self.store.get_fingerprint(tenant, known.id)
        if kind.name == known.media_type and (row.version, row.encoded) == (kind.version, blob):
            return upserts.update_fields(self.store, tenant, known.id, name=name,
                                         metadata=metadata, source=source_label or label), False
        record = upserts.replace(self.store, known, NewMedia(
            tenant=tenant, media_type=kind.name, fingerprint=blob,
            fingerprint_version=kind.version, name=name, external_id=external_id,
            source=source_label or label, metadata=metadata or {}))
        self._unindex(known)
        self._added(kind.name, [(record.seq, record.tenant, stored)])
        self.indexes.added_tracks([(record.seq, record.tenant, blob)])
        self._keep_edges(record, stored)
        return record, False

    def index_fingerprints(self, items: list[NewMedia], within: WithinMany | None = None,
                           keep_edges: bool = True) -> list[MediaRecord]:
        """Add items fingerprinted elsewhere (worker processes) in one transaction, all or
        none; `within(session, media_ids)` joins it (the bulk job marks its rows done)."""
        stored = [get_kind(i.media_type).decode(i.fingerprint) for i in items]
        records = self.store.add_many(items, within)
        for media_type in dict.fromkeys(r.media_type for r in records):
            self._added(media_type, [(r.seq, r.tenant, s)
                                     for r, s in zip(records, stored, strict=True)
                                     if r.media_type == media_type])
        self.indexes.added_tracks([(r.seq, r.tenant, i.fingerprint)
                                   for r, i in zip(records, items, strict=True)])
        for record, fingerprint in zip(records, stored, strict=True) if keep_edges else ():
            self._keep_edges(record, fingerprint)
        return records

    def find_edges(self, records: list[MediaRecord]) -> None:
        """Keep the edges of items added with keep_edges=False (bulk rows: found after their
        rows are done, so a catalog full of copies does not slow the rows down)."""
        for tenant in {r.tenant for r in records}:
            mine = [r for r in records if r.tenant == tenant]
            rows = self.store.fingerprints_of(tenant, [r.seq for r in mine])
            for r in mine:
                kind = get_kind(r.media_type)
                if r.seq in rows and rows[r.seq].version == kind.version:
                    self._keep_edges(r, kind.decode(rows[r.seq].encoded))

    def delete(self, media_id: str, tenant: str | None = None) -> MediaRecord:
        record = self.store.delete(tenant or self.tenant, media_id)
        self._unindex(record)
        return record

    def _unindex(self, record: MediaRecord) -> None:
        """Drop a deleted row from this process's index and its edges from the clusters
        (index nodes drop it when the feed brings its deletion; until then their matches
        of it are dropped, as rows the catalog no longer has)."""
        if not self._remote(record.media_type):
            self.indexes.deleted(record.media_type, record.seq)
        self.review.forget(record)

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
        if self._remote(kind.name):  # the nodes follow the feed: no local index to lock
            fanned = self._fan_out(kind, query, ShardQuery(tenant, top_k, min_score))
            added = None if not index else self._add(
                kind, tenant, kind.stored_of(query), name=name or _name_of(source),
                external_id=external_id, metadata=metadata, source=source_label or label,
                if_exists="error", found=fanned.matches)
            return self._answer(kind, tenant, fanned.matches, metadata, added, fanned.missing)
        if not index:
            matches = self.indexes.search(kind.name, query, tenant, top_k, min_score)
            return self._answer(kind, tenant, matches, metadata)
        entry = self.indexes.get(kind.name)
        with entry.lock.write():  # search-then-add is one step: two ingests see each other
            self.indexes.poll(entry)
            matches = entry.index.search(query, tenant, top_k, min_score)
            added = self._add(kind, tenant, kind.stored_of(query), name=name or _name_of(source),
                              external_id=external_id, metadata=metadata,
                              source=source_label or label, if_exists="error", found=matches)
        return self._answer(kind, tenant, matches, metadata, added)

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
                 tenant: str | None = None) -> builtins.list[Cluster]:
        """Every kept cluster of items matching at `min_confidence` or better (of one kind, or
        of every kind; see `review` for pages of them): read from the kept edges, never
        searched again."""
        tenant = tenant or self.tenant
        chosen = [get_kind(media_type).name] if media_type else list(kinds())
        found: builtins.list[Cluster] = []
        for name in chosen:
            before = None
            while page := self.review.clusters(tenant, name, min_confidence, before, 500):
                found += [Cluster(c.members, [ClusterPair(p.a.id, p.b.id, p.score, p.explanation)
                                                   for p in c.pairs])
                          for c in page]
                before = page[-1].id
        return sorted(found, key=lambda c: -len(c.members))

    def rebuild_edges(self, media_type: str | None = None, tenant: str | None = None) -> int:
        """Search every item of the tenant (of one kind, or of every kind) again and keep the
        edges found: for a catalog indexed before edges were kept. Returns the number of items
        searched."""
        tenant = tenant or self.tenant
        chosen = [get_kind(media_type)] if media_type else list(kinds().values())
        searched = 0
        for kind in chosen:
            for seq, stored in self._tenant_fingerprints(kind, tenant):
                self.review.keep(tenant, kind.name, seq,
                                 self._neighbours(kind, tenant, seq, stored))
                searched += 1
        return searched

    def decide(self, media_id: str, action: str, *, other_media_id: str | None = None,
               cluster_id: int | None = None, note: str | None = None,
               tenant: str | None = None, actor: Actor | None = None) -> dict[str, Any]:
        """Apply a reviewer's decision (see `medialayer.review`); the decision made, or the
        earlier one if it changes nothing, with `created` telling which."""
        _storable(media_id=media_id, other_media_id=other_media_id, note=note)
        made, created = self.review.decide(tenant or self.tenant, actor or Actor(None, None),
                                           action, media_id, other_media_id=other_media_id,
                                           cluster_id=cluster_id, note=note)
        return {**made, "created": created}

    def decisions(self, media_id: str | None = None, limit: int = 100,
                  tenant: str | None = None) -> builtins.list[dict[str, Any]]:
        return self.review.decisions(tenant or self.tenant, media_id, None, limit)[0]

    def warm_up(self, wait: bool = True, only: Collection[str] | None = None) -> None:
        """Build every kind's index (or those named in `only`) from the catalog now, not on
        the first request; without `wait`, return once the code tiers are in (the rest loads
        behind them, and searches wait for it)."""
        local = [name for name in kinds() if not self._remote(name)
                 and (only is None or name in only)]
        for media_type in local:
            self.indexes.prepare(media_type)
        if wait:
            for media_type in local:
                self.indexes.wait(media_type)
            _release_freed_heap()

    def index_sizes(self) -> dict[str, tuple[int, int]]:
        """Per media type: (items, bytes) held by this process's in-memory indexes."""
        return self.indexes.sizes()

    def write_snapshots(self, media_type: str | None = None) -> dict[str, Path]:
        """Write the snapshot of every kind that has one (or of `media_type`) for the
        processes of this catalog to map: the data folder of each written. Kinds that index
        nodes serve have none here (each node writes its own)."""
        written = {}
        for name in [get_kind(media_type).name] if media_type else list(kinds()):
            if self._remote(name):
                continue
            if (path := self.indexes.write_snapshot(name)) is not None:
                written[name] = path
        return written

    def sync(self, media_type: str | None = None) -> None:
        """Read rows other processes added or deleted since the last look (every kind's, or
        one kind's)."""
        for name in [media_type] if media_type else list(kinds()):
            if not self._remote(name):
                self.indexes.sync(name)

    def search_shard(self, media_type: str, query: bytes, ask: ShardQuery) -> builtins.list[Match]:
        """An index node's answer: the matches in its partition of a query an API process
        sent (`medialayer.kinds.wire`), after polling the catalog if it has not seen as far
        as `ask.after`."""
        wire = wire_of(media_type)
        if self.feed is None or wire is None:
            raise InvalidInput(f"this process is no index node of {media_type}")
        decoded = wire.load(query)
        if self.feed.seen < ask.after:
            self.indexes.sync(media_type)
        return self.indexes.search(media_type, decoded, ask.tenant, ask.top_k, ask.min_score,
                                   ask.exclude)

    def shard_status(self, media_type: str) -> tuple[int, int, Position | None] | None:
        """An index node's (items, highest catalog seq seen, snapshot it came back from), or
        None while its index is loading."""
        entry = self.indexes.get(media_type)
        if not entry.complete.is_set() or entry.failure is not None:
            return None
        with entry.lock.read():
            items = len(entry.index)
        return items, self.feed.seen if self.feed else 0, entry.mapped

    def close(self) -> None:
        self.indexes.close()
        if self.nodes is not None:
            self.nodes.close()
        self.store.engine.dispose()

    # -- what the API, the CLI and bulk jobs keep beside the media --------------------------

    def get_by_external_id(self, external_id: str, tenant: str | None = None
                           ) -> MediaRecord | None:
        return self.store.get_by_external_id(tenant or self.tenant, external_id)

    def media_ids_by_external_id(self, tenant: str, external_ids: builtins.list[str]
                                 ) -> dict[str, str]:
        return self.store.media_ids_by_external_id(tenant, external_ids)

    def count(self, tenant: str | None = None) -> int:
        """Items in the catalog: of one tenant, or of every tenant."""
        return self.store.count(tenant)

    def ping(self) -> None:
        """Raise unless the catalog database answers (readiness)."""
        with self.store.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def create_key(self, tenant: str, scopes: builtins.list[str], name: str | None = None,
                   rate_limit: int | None = None) -> tuple[keys.KeyInfo, str]:
        """A new API key: its record and the plaintext, shown once and never stored."""
        return keys.create_key(self.store, tenant, scopes, name, rate_limit)

    def list_keys(self, tenant: str | None = None) -> builtins.list[keys.KeyInfo]:
        return keys.list_keys(self.store, tenant)

    def revoke_key(self, key_id: str) -> keys.KeyInfo:
        return keys.revoke_key(self.store, key_id)

    def authenticate(self, plaintext: str | None) -> keys.KeyInfo | None:
        return keys.authenticate(self.store, plaintext)

    def start_ui_session(self, key: keys.KeyInfo, hours: float) -> tuple[str, str]:
        return keys.start_session(self.store, key, hours)

    def ui_session(self, token: str | None) -> tuple[keys.KeyInfo, str] | None:
        return keys.session_of(self.store, token)

    def end_ui_session(self, token: str | None) -> None:
        keys.end_session(self.store, token)

    def webhooks(self, settings: Settings) -> Webhooks:
        from medialayer.webhooks import Webhooks  # its HTTP client only where hooks are used

        return Webhooks(self.store, settings)

    def webhook_dispatcher(self, settings: Settings) -> Dispatcher:
        from medialayer.webhooks import Dispatcher

        return Dispatcher(self.store, settings)

    def create_job(self, tenant: str, rows: builtins.list[dict[str, Any]],
                   errors: builtins.list[tuple[int, dict[str, Any], str]],
                   allow_paths: bool = False) -> str:
        return job_rows.create_job(self.store, tenant, rows, errors, allow_paths)

    def claim_job_rows(self, limit: int, stale_after: float, job_id: str | None = None
                       ) -> builtins.list[Claim]:
        return job_rows.claim_rows(self.store, limit, stale_after, job_id)

    def finish_job_row(self, claim: Claim, media_id: str | None = None,
                       error: str | None = None) -> bool:
        return job_rows.finish_row(self.store, claim, media_id, error)

    def job_progress(self, job_id: str, tenant: str | None = None) -> Progress:
        return job_rows.progress(self.store, tenant or self.tenant, job_id)

    def job_errors(self, job_id: str, after: int = 0, limit: int = 1000,
                   tenant: str | None = None) -> builtins.list[dict[str, Any]]:
        return job_rows.row_errors(self.store, tenant or self.tenant, job_id, after, limit)

    def job_failed_rows(self, job_id: str, tenant: str | None = None
                        ) -> Iterator[dict[str, Any]]:
        return job_rows.failed_rows(self.store, tenant or self.tenant, job_id)

    def job_outcomes(self, job_id: str) -> builtins.list[tuple[int, str, str | None]]:
        return job_rows.row_outcomes(self.store, job_id)

    def jobs(self, before: str | None = None, limit: int = 50, tenant: str | None = None
             ) -> builtins.list[Progress]:
        return job_rows.list_jobs(self.store, tenant or self.tenant, before, limit)

    def job_rows_by_state(self) -> dict[str, int]:
        return job_rows.counts_by_state(self.store)

    # -- internals ------------------------------------------------------------------------

    def _known(self, tenant: str, external_id: str, if_exists: str) -> MediaRecord | None:
        known = self.store.get_by_external_id(tenant, external_id)
        if known is not None and if_exists != "return":
            raise Conflict(f"external_id {external_id!r} already exists ({known.id})")
        return known

    def _add(self, kind: AnyKind, tenant: str, stored: Any, *, name: str | None,
             external_id: str | None, metadata: dict[str, Any] | None, source: str | None,
             if_exists: str, within: Within | None = None,
             found: builtins.list[Match] | None = None) -> MediaRecord:
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
        self._added(kind.name, [(record.seq, record.tenant, stored)])
        self.indexes.added_tracks([(record.seq, record.tenant, item.fingerprint)])
        self._keep_edges(record, stored, found)
        return record

    def _remote(self, media_type: str) -> bool:
        """Whether index nodes serve the kind (else this process's own index does)."""
        return self.nodes is not None and wire_of(media_type) is not None

    def _added(self, media_type: str, items: Sequence[tuple[int, str, Any]]) -> None:
        """Rows this process wrote: into its own index, or remembered for the nodes (which
        read them from the feed) so its next search waits until they have."""
        if self._remote(media_type):
            self._written = max([self._written, *(seq for seq, _, _ in items)])
        else:
            self.indexes.added(media_type, items)

    def _fan_out(self, kind: AnyKind, query: Any, ask: ShardQuery) -> Fanned:
        """The query sent to every index node, and again with every view if the kind widens
        it after a first look (as one process's index would)."""
        wire = wire_of(kind.name)
        assert self.nodes is not None and wire is not None  # only for `_remote` kinds
        ask = replace(ask, after=self._written)
        fanned = self.nodes.search(kind.name, wire.dump(query), ask)
        wider = wire.widened(query, max((m.score for m in fanned.matches), default=0.0))
        return fanned if wider is None else self.nodes.search(kind.name, wire.dump(wider), ask)

    def _keep_edges(self, record: MediaRecord, stored: Any,
                    found: builtins.list[Match] | None = None) -> None:
        """Keep a new item's matches as edges: those `found` by the search that added it, else
        a search for its neighbours now (review hook: medialayer.review)."""
        if found is None:
            found = self._neighbours(get_kind(record.media_type), record.tenant, record.seq,
                                     stored)
        self.review.keep(record.tenant, record.media_type, record.seq,
                         self._of_its_kind(record.media_type, found))

    def _of_its_kind(self, media_type: str, found: builtins.list[Match]
                     ) -> builtins.list[Match]:
        """The matches that are items of `media_type`: clusters hold one kind, while the
        kind's index also holds the tracks other kinds carry (a video's soundtrack)."""
        if not found or not carriers_of(media_type):
            return found
        records = self.store.records([m.key for m in found])
        return [m for m in found if m.key in records and records[m.key].media_type == media_type]

    def _neighbours(self, kind: AnyKind, tenant: str, seq: int, stored: Any
                    ) -> builtins.list[Match]:
        if not self._remote(kind.name):
            return self.indexes.search(kind.name, kind.query_of(stored), tenant, NEIGHBOURS,
                                       0.0, exclude=seq)
        fanned = self._fan_out(kind, kind.query_of(stored), ShardQuery(
            tenant, NEIGHBOURS, exclude=seq))
        if fanned.missing:  # nothing to flag on an ingest: the log says which edges may lack
            log.warning("edges of %s row %d kept without shards %s (no answer)", kind.name, seq,
                        fanned.missing)
        return fanned.matches

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

    def _answer(self, kind: AnyKind, tenant: str, matches: builtins.list[Match],
                metadata: dict[str, Any] | None, added: MediaRecord | None = None,
                missing: builtins.list[int] | None = None) -> SearchResult:
        """The hits with their canonical items and the tenant's policy's actions; an ingested
        query the policy auto-rejects is marked rejected (audited as the policy's decision)."""
        records = self.store.records([m.key for m in matches])
        marks = self.review.marks(tenant, [r.id for r in records.values()])
        rules = self.policies.rules(tenant)
        hits = [SearchHit(records[m.key], m.score, kind.calibration.label(m.score),
                          list(m.segments), m.explanation, _canonical(marks.get(records[m.key].id)),
                          verdict(rules, kind.name, m.score, metadata or {},
                                  records[m.key].metadata))
                for m in matches if m.key in records]
        action = most_severe([h.action for h in hits])
        if added is not None and action == "auto_reject":
            self.review.decide(tenant, POLICY_ACTOR, "reject", added.id,
                               note="auto_reject by the tenant's policy")
        return SearchResult(hits, added, action, sorted(missing or []))

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
        """A catalog item's stored fingerprint, or that of the track of this kind it carries
        (a video's soundtrack compared as audio)."""
        record, row = self.store.get_fingerprint(tenant, ref.media_id)
        version, encoded = row.version, row.encoded
        if record.media_type != kind.name:
            track = next((t for t in tracks_of(encoded) if t.kind == kind.name), None)
            if track is None:
                raise InvalidInput(f"media {ref.media_id} is {record.media_type}, not "
                                   f"{kind.name}, and carries no {kind.name}")
            version, encoded = track.version, track.encoded
        if version != kind.version:
            raise InvalidInput(f"media {ref.media_id} was fingerprinted with {kind.name} "
                               f"fingerprint version {version}, this build reads version "
                               f"{kind.version}: index it again from its source")
        return kind.decode(encoded)

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



def _storable(**fields: Any) -> None:
    """InvalidInput before any look-up if a field could not be stored (NUL, NaN): PostgreSQL
    refuses NUL even in a query's parameters."""
    for name, value in fields.items():
        if reason := problem(value):
            raise InvalidInput(f"{name} {reason}")


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


def _catalog_name(url: URL) -> str:
    """The catalog as snapshots name it: its URL without password, an SQLite file by its
    absolute path (the same file from any working folder)."""
    if url.get_backend_name() == "sqlite" and url.database:
        return f"sqlite:///{Path(url.database).resolve()}"
    return url.render_as_string(hide_password=True)
