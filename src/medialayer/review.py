"""The review workflow's use cases: keep match edges, serve kept clusters and the queue of open
pairs, and apply reviewers' decisions so they take effect.

What a decision does:
- dismiss ("not a duplicate") on a pair: the pair leaves clusters and the queue for good, even
  if a later search finds it again;
- consolidate: members point at the canonical item (`canonical_id`, also on search hits);
- flag / reject: the item is marked.
A decision that would change nothing returns the earlier decision that made the state what it
is (idempotent); every decision that changes something is recorded with who, when and the state
before and after.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, Subquery, and_, desc, or_, select
from sqlalchemy.orm import Session, aliased

from medialayer import webhooks
from medialayer.catalog import decisions, edges
from medialayer.catalog.decisions import NO_MARK, STATUS_OF, Actor, Mark
from medialayer.catalog.models import Media
from medialayer.catalog.review_models import ClusterMember, MatchEdge, MediaMark
from medialayer.catalog.store import RECORD_COLUMNS, MediaRecord, SqlCatalogStore
from medialayer.clusters import bridges
from medialayer.errors import InvalidInput, NotFound
from medialayer.kinds import get_kind
from medialayer.kinds.base import Match

NEIGHBOURS = 10
"""Matches of a new item kept as its edges (at medium confidence or better)."""


@dataclass(frozen=True)
class Pair:
    """A kept match between two items, as reviewers see it."""

    a: MediaRecord
    b: MediaRecord
    score: float
    confidence: str
    dismissed: bool
    explanation: dict[str, Any] | None
    found_at: Any
    marks: dict[str, Mark] = field(default_factory=dict)
    joins_groups: bool = False
    """Whether this pair alone holds two groups of two or more items together."""

    def as_dict(self) -> dict[str, Any]:
        return {"a": self.a.id, "b": self.b.id, "similarity_score": self.score,
                "confidence": self.confidence, "dismissed": self.dismissed,
                "joins_groups": self.joins_groups, "explanation": self.explanation}


@dataclass(frozen=True)
class KeptCluster:
    """A kept cluster: its members (oldest first), the pairs joining them, a canonical proposal."""

    id: int
    level: str
    media_type: str
    members: list[MediaRecord]
    pairs: list[Pair]
    proposed_canonical_id: str | None
    marks: dict[str, Mark]

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "level": self.level, "media_type": self.media_type,
                "size": len(self.members),
                "proposed_canonical_id": self.proposed_canonical_id,
                "members": [{**m.as_dict(), **self.marks.get(m.id, NO_MARK).as_dict()}
                            for m in self.members],
                "pairs": [p.as_dict() for p in self.pairs]}


@dataclass(frozen=True)
class QueueFilter:
    """What a reviewer narrows the queue of open pairs to."""

    media_type: str | None = None
    min_confidence: str = "medium"
    seller: str | None = None
    category: str | None = None
    cross_seller: bool = False
    sort: str = "newest"


class Review:
    """Edges, clusters, marks and decisions of every tenant, over one catalog store."""

    def __init__(self, store: SqlCatalogStore) -> None:
        self.store = store

    # -- edges, from the service's add paths -------------------------------------------------

    def keep(self, tenant: str, media_type: str, seq: int, matches: list[Match]) -> None:
        """Store the new item `seq`'s matches at medium or better as edges."""
        label = get_kind(media_type).calibration.label
        found = [edges.FoundEdge(seq, m.key, m.score, label(m.score),
                                 _as_seen_from_a(m, query_is_a=seq < m.key))
                 for m in matches if m.key != seq]
        found = [e for e in found if edges.levels_of(e.confidence)]
        if not found:
            return
        with self.store.session.begin() as s:
            edges.lock(s, tenant, media_type)
            edges.keep(s, tenant, media_type, found)
            if hooks := webhooks.wanted(s, tenant, "match"):
                webhooks.enqueue(s, hooks, "match", _match_event(s, media_type, seq, found))

    def forget(self, record: MediaRecord) -> None:
        with self.store.session.begin() as s:
            edges.lock(s, record.tenant, record.media_type)
            edges.forget(s, record.seq)

    # -- reads -------------------------------------------------------------------------------

    def clusters(self, tenant: str, media_type: str | None, level: str = "medium",
                 before: int | None = None, limit: int = 50) -> list[KeptCluster]:
        """A page of kept clusters of one media type (all if None), newest first; `before` is
        the last page's smallest id."""
        return self._views(tenant, edges.page(tenant, media_type, _level(level), before, limit))

    def cluster(self, tenant: str, cluster_id: int) -> KeptCluster:
        with self.store.session() as s:
            row = edges.resolve(s, tenant, cluster_id)
        views = self._views(tenant, edges.one(row.id)) if row is not None else []
        if not views:
            raise NotFound(f"no cluster {cluster_id}")
        return views[0]

    def cluster_of(self, tenant: str, media_id: str, level: str = "medium") -> int | None:
        record = self.store.get(tenant, media_id)
        with self.store.session() as s:
            return edges.cluster_of(s, record.seq, _level(level))

    def pair(self, tenant: str, a_id: str, b_id: str) -> Pair:
        a, b = self.store.get(tenant, a_id), self.store.get(tenant, b_id)
        with self.store.session() as s:
            row = edges.edge(s, a.seq, b.seq)
        if row is None:
            raise NotFound(f"no match between {a_id} and {b_id}")
        marks = self.marks(tenant, [a.id, b.id])
        return _pair(row, {a.seq: a, b.seq: b}, marks)

    def queue(self, tenant: str, filters: QueueFilter, offset: int = 0,
              limit: int = 50) -> list[Pair]:
        """Open pairs: matched, not dismissed, not consolidated together, neither rejected."""
        with self.store.session() as s:
            rows = list(s.scalars(_queue_query(tenant, filters).offset(offset).limit(limit)))
        records = self.store.records([seq for r in rows for seq in (r.a_seq, r.b_seq)])
        marks = self.marks(tenant, [r.id for r in records.values()])
        return [_pair(r, records, marks) for r in rows
                if r.a_seq in records and r.b_seq in records]

    def marks(self, tenant: str, media_ids: list[str]) -> dict[str, Mark]:
        with self.store.session() as s:
            return decisions.marks(s, tenant, media_ids)

    def decisions(self, tenant: str, media_id: str | None = None, cursor: str | None = None,
                  limit: int = 100) -> tuple[list[dict[str, Any]], str | None]:
        with self.store.session() as s:
            return decisions.listing(s, tenant, media_id, cursor, limit)

    # -- decisions ---------------------------------------------------------------------------

    def decide(self, tenant: str, actor: Actor, action: str, media_id: str, *,
               other_media_id: str | None = None, cluster_id: int | None = None,
               note: str | None = None) -> tuple[dict[str, Any], bool]:
        """Apply a decision; (the decision, whether it changed anything)."""
        if action not in decisions.ACTIONS:
            raise InvalidInput(f"action must be one of {', '.join(decisions.ACTIONS)}")
        subject = self.store.get(tenant, media_id)  # NotFound for other tenants' ids
        other = self.store.get(tenant, other_media_id) if other_media_id else None
        if action == "dismiss" and other is None:
            raise InvalidInput("dismiss (not a duplicate) needs other_media_id: it is about a pair")
        if other is not None and other.id == subject.id:
            raise InvalidInput("other_media_id must differ from media_id")
        members = self._members(tenant, subject, other, cluster_id, action)
        with self.store.session.begin() as s:
            edges.lock(s, tenant, subject.media_type)
            before, after = _transition(s, tenant, action, subject, other, members)
            if before == after:
                done = decisions.latest(s, tenant, action, subject.id, other_media_id)
                if done is not None:
                    return done, False
            if action == "dismiss":
                assert other is not None
                edges.dismiss(s, tenant, subject.media_type, subject.seq, other.seq)
            else:
                decisions.set_marks(s, tenant, _marks_of(after))
            made = decisions.record(
                s, tenant, actor, action, subject.id, other_media_id=other_media_id,
                cluster_id=cluster_id, member_ids=[m.id for m in members] or None, note=note,
                from_state=before, to_state=after)
            webhooks.enqueue(s, webhooks.wanted(s, tenant, "decision"), "decision", made)
        return made, True

    # -- internals ---------------------------------------------------------------------------

    def _members(self, tenant: str, subject: MediaRecord, other: MediaRecord | None,
                 cluster_id: int | None, action: str) -> list[MediaRecord]:
        """Who a consolidation links to the canonical `subject`: the cluster's members or the
        other item of the pair."""
        if action != "consolidate":
            return []
        if cluster_id is not None:
            kept = self.cluster(tenant, cluster_id)
            if subject.id not in {m.id for m in kept.members}:
                raise InvalidInput(f"media {subject.id} is not in cluster {cluster_id}")
            return kept.members
        if other is None:
            raise InvalidInput("consolidate needs other_media_id or cluster_id")
        return [subject, other]

    def _views(self, tenant: str, clusters: Subquery) -> list[KeptCluster]:
        """The clusters of a page with their members' records, marks and edges: two queries
        joined on the page (no per-cluster or per-member reads, no lists of ids sent back)."""
        with self.store.session() as s:
            rows = s.execute(_members_query(tenant, clusters)).all()
            kept = edges.page_edges(s, clusters)
        found: dict[int, tuple[str, str, list[MediaRecord]]] = {}
        marks: dict[str, Mark] = {}
        for r in rows:
            found.setdefault(r.cluster_id, (r.cluster_level, r.cluster_media_type, []))[2].append(
                MediaRecord.from_row(r))
            if r.status is not None or r.canonical_id is not None:
                marks[r.id] = Mark(r.status, r.canonical_id)
        records = {m.seq: m for _, _, members in found.values() for m in members}
        by_cluster: dict[int, list[Any]] = {c: [] for c in found}
        for e in kept:
            by_cluster.setdefault(e.cluster_id, []).append(e)
        views = []
        for cluster_id, (level, media_type, members) in found.items():
            split = bridges([(e.a_seq, e.b_seq) for e in by_cluster[cluster_id]])
            pairs = [_pair(e, records, marks, split.get((e.a_seq, e.b_seq), 0) >= 2)
                     for e in by_cluster[cluster_id]]
            views.append(KeptCluster(cluster_id, level, media_type, members, pairs,
                                     _proposed_canonical(members, marks), marks))
        return views


def _members_query(tenant: str, clusters: Subquery) -> Select[Any]:
    """Each member of the page's clusters with its record's columns and its mark, clusters
    newest first and members oldest first."""
    return (select(clusters.c.id.label("cluster_id"), clusters.c.level.label("cluster_level"),
                   clusters.c.media_type.label("cluster_media_type"), *RECORD_COLUMNS,
                   MediaMark.status, MediaMark.canonical_id)
            .join_from(clusters, ClusterMember, and_(ClusterMember.cluster_id == clusters.c.id,
                                                     ClusterMember.level == clusters.c.level))
            .join(Media, Media.seq == ClusterMember.media_seq)
            .outerjoin(MediaMark, and_(MediaMark.media_id == Media.id, MediaMark.tenant == tenant))
            .order_by(clusters.c.id.desc(), Media.seq))


def _as_seen_from_a(match: Match, query_is_a: bool) -> dict[str, Any] | None:
    """The match's explanation and segments with `query_*` meaning the pair's first item (the
    older, a_seq) and `reference_*` the second, whichever of them was searched for."""
    found: dict[str, Any] = dict(match.explanation or {})
    if match.segments:
        found["segments"] = [dict(vars(s)) for s in match.segments]
    if not found or query_is_a:
        return found or None
    swapped = {_swap(k): v for k, v in found.items() if k != "segments"}
    if "segments" in found:
        swapped["segments"] = [{_swap(k): v for k, v in s.items()} for s in found["segments"]]
    return swapped


def _swap(key: str) -> str:
    for one, other in (("query_", "reference_"), ("reference_", "query_")):
        if key.startswith(one):
            return other + key.removeprefix(one)
    return key


def _match_event(s: Session, media_type: str, seq: int, found: list[edges.FoundEdge]
                 ) -> dict[str, Any]:
    """A `match` webhook's data: the new item and what it matched, by id and external id."""
    ids = {r.seq: r for r in s.execute(select(Media.seq, Media.id, Media.external_id).where(
        Media.seq.in_([seq, *(e.b for e in found)])))}
    new = ids.get(seq)
    return {"media_type": media_type, "media_id": new.id if new else None,
            "external_id": new.external_id if new else None,
            "matches": [{"media_id": ids[e.b].id, "external_id": ids[e.b].external_id,
                         "similarity_score": e.score, "confidence": e.confidence}
                        for e in found if e.b in ids]}


def _level(level: str) -> str:
    """`low` has no kept clusters of its own (low matches are not kept): it reads as medium."""
    if level == "low":
        return "medium"
    if level not in edges.LEVELS:
        raise InvalidInput(f"min_confidence must be one of low, {', '.join(edges.LEVELS)}")
    return level


def _pair(row: Any, records: dict[int, MediaRecord], marks: dict[str, Mark],
          joins: bool = False) -> Pair:
    a, b = records[row.a_seq], records[row.b_seq]
    return Pair(a, b, row.score, row.confidence, row.dismissed, row.explanation, row.found_at,
                {k: v for k, v in marks.items() if k in (a.id, b.id)}, joins)


def _proposed_canonical(members: list[MediaRecord], marks: dict[str, Mark]) -> str | None:
    """The item already chosen as canonical, else the brand's (metadata `official` true),
    else the oldest: the listing customers most likely found first."""
    chosen = [m.id for m in members if marks.get(m.id, NO_MARK).canonical_id == m.id]
    if chosen:
        return chosen[0]
    official = [m.id for m in members if str(m.metadata.get("official", "")).lower()
                in ("1", "true", "yes")]
    if official:
        return official[0]
    return members[0].id if members else None


def _transition(s: Session, tenant: str, action: str, subject: MediaRecord,
                other: MediaRecord | None, members: list[MediaRecord]
                ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The subject's state before the decision and the state the decision leads to."""
    if action == "dismiss":
        assert other is not None
        row = edges.edge(s, subject.seq, other.seq)
        was = "unmatched" if row is None else ("dismissed" if row.dismissed else "open")
        return {"pair": was}, {"pair": "dismissed"}
    involved = [m.id for m in members] if members else [subject.id]
    current = decisions.marks(s, tenant, involved)
    before = {i: current.get(i, NO_MARK).as_dict() for i in involved}
    if action == "consolidate":
        after = {i: {**before[i], "canonical_id": subject.id} for i in involved}
    else:
        after = {**before, subject.id: {**before[subject.id], "status": STATUS_OF[action]}}
    return before, after


def _marks_of(state: dict[str, Any]) -> dict[str, Mark]:
    return {media_id: Mark(v["status"], v["canonical_id"]) for media_id, v in state.items()}


def _queue_query(tenant: str, f: QueueFilter) -> Select[Any]:
    ma, mb = aliased(Media), aliased(Media)
    ka, kb = aliased(MediaMark), aliased(MediaMark)
    wanted = ["high"] if f.min_confidence == "high" else ["medium", "high"]
    q = (select(MatchEdge)
         .join(ma, ma.seq == MatchEdge.a_seq).join(mb, mb.seq == MatchEdge.b_seq)
         .outerjoin(ka, ka.media_id == ma.id).outerjoin(kb, kb.media_id == mb.id)
         .where(MatchEdge.tenant == tenant, MatchEdge.dismissed.is_(False),
                MatchEdge.confidence.in_(wanted),
                or_(ka.status.is_(None), ka.status != "rejected"),
                or_(kb.status.is_(None), kb.status != "rejected"),
                or_(ka.canonical_id.is_(None), kb.canonical_id.is_(None),
                    ka.canonical_id != kb.canonical_id)))
    if f.media_type:
        q = q.where(MatchEdge.media_type == f.media_type)
    seller_a, seller_b = ma.metadata_["seller"].as_string(), mb.metadata_["seller"].as_string()
    if f.seller:
        q = q.where(or_(seller_a == f.seller, seller_b == f.seller))
    if f.category:
        q = q.where(or_(ma.metadata_["category"].as_string() == f.category,
                        mb.metadata_["category"].as_string() == f.category))
    if f.cross_seller:
        q = q.where(and_(seller_a.is_not(None), seller_b.is_not(None), seller_a != seller_b))
    if f.sort == "score":
        return q.order_by(desc(MatchEdge.score), desc(MatchEdge.found_at))
    return q.order_by(desc(MatchEdge.found_at), desc(MatchEdge.score))
