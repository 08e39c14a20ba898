"""Match edges and the clusters kept over them, maintained one edge at a time.

Clusters are the connected components of the stored edges minus dismissed pairs, one clustering
per confidence level (an edge joins the levels its confidence reaches). A new edge unions two
clusters (the smaller one's members move, the larger keeps its id, the smaller records where
it went); a removed edge or item re-splits only the cluster it was in (the largest part keeps
the id). So a cluster page is a read of kept rows, never a search.

Every change to one (tenant, media type)'s clusters runs under a transaction-scoped advisory
lock on PostgreSQL, so processes adding edges at once cannot interleave a union with a split.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Subquery, Table, and_, delete, func, insert, or_, select, text, update
from sqlalchemy.orm import Session, aliased

from medialayer.catalog.models import utcnow
from medialayer.catalog.review_models import ClusterMember, ClusterRow, MatchEdge
from medialayer.clusters import connected_groups
from medialayer.kinds.base import at_least

LEVELS = ("medium", "high")
"""Confidence levels clusters are kept at; `low` matches are never stored as edges."""


@dataclass(frozen=True)
class FoundEdge:
    """A match between two stored items, as the service found it."""

    a: int
    b: int
    score: float
    confidence: str
    explanation: dict[str, Any] | None = None


def levels_of(confidence: str) -> list[str]:
    return [level for level in LEVELS if at_least(confidence, level)]


def lock(session: Session, tenant: str, media_type: str) -> None:
    """Serialise cluster changes of one tenant's media type across processes (PostgreSQL)."""
    if session.get_bind().dialect.name == "postgresql":
        key = zlib.crc32(f"clusters:{tenant}:{media_type}".encode())
        session.execute(text("select pg_advisory_xact_lock(:k)"), {"k": key})


def keep(session: Session, tenant: str, media_type: str, edges: Iterable[FoundEdge]) -> None:
    """Store edges (the stronger score wins) and union their ends at each level they reach.

    A pair a reviewer dismissed stays dismissed: finding it again changes nothing. Set-based:
    a handful of statements per call whatever the number of edges (a bulk row of a catalog
    full of copies brings ten at once).
    """
    found: dict[tuple[int, int], FoundEdge] = {}
    for e in edges:
        pair = (min(e.a, e.b), max(e.a, e.b))
        if pair[0] != pair[1] and levels_of(e.confidence) and (
                pair not in found or e.score > found[pair].score):
            found[pair] = e
    if not found:
        return
    seqs = sorted({q for pair in found for q in pair})
    table = cast(Table, MatchEdge.__table__)
    known = {(r.a_seq, r.b_seq): r for r in session.execute(
        select(table.c.a_seq, table.c.b_seq, table.c.score, table.c.dismissed)
        .where(table.c.a_seq.in_(seqs), table.c.b_seq.in_(seqs)))}
    fresh = [pair for pair in found if pair not in known]
    if fresh:
        session.execute(insert(table), [
            {"a_seq": a, "b_seq": b, "tenant": tenant, "media_type": media_type,
             "score": found[(a, b)].score, "confidence": found[(a, b)].confidence,
             "explanation": found[(a, b)].explanation, "dismissed": False,
             "found_at": utcnow()} for a, b in fresh])
    for pair, row in known.items():
        if pair in found and found[pair].score > row.score:
            e = found[pair]
            session.execute(update(table).where(table.c.a_seq == pair[0],
                                                table.c.b_seq == pair[1])
                            .values(score=e.score, confidence=e.confidence,
                                    explanation=e.explanation or table.c.explanation))
    live = {pair: e for pair, e in found.items() if not (pair in known and known[pair].dismissed)}
    for level in LEVELS:
        at_level = {pair: e.score for pair, e in live.items()
                    if at_least(e.confidence, level)}
        if at_level:
            _join(session, tenant, media_type, level, at_level)


def _join(session: Session, tenant: str, media_type: str, level: str,
          scored: dict[tuple[int, int], float]) -> None:
    """Union the ends of `scored` edges at one level: each connected group of them goes into
    the largest cluster it touches (the others merge into it), or a new one."""
    seqs = sorted({q for pair in scored for q in pair})
    members = cast(Table, ClusterMember.__table__)
    cluster_of = dict(session.execute(
        select(members.c.media_seq, members.c.cluster_id)
        .where(members.c.level == level, members.c.media_seq.in_(seqs))).all())
    rows = {r.id: r for r in session.scalars(
        select(ClusterRow).where(ClusterRow.id.in_(set(cluster_of.values()))))}
    merged: dict[int, int] = {}  # clusters merged by an earlier group of this call

    def live(cluster_id: int) -> int:
        while cluster_id in merged:
            cluster_id = merged[cluster_id]
        return cluster_id

    for group in connected_groups(scored):
        touched = sorted({live(cluster_of[q]) for q in group if q in cluster_of},
                         key=lambda c: (-rows[c].size, c))
        top = max(s for (a, _), s in scored.items() if a in set(group))
        if touched:
            target = rows[touched[0]]
        else:
            target = ClusterRow(tenant=tenant, media_type=media_type, level=level, size=0,
                                top_score=top)
            session.add(target)
            session.flush()
        for other in touched[1:]:
            session.execute(update(members).where(members.c.cluster_id == other)
                            .values(cluster_id=target.id))
            target.size += rows[other].size
            target.top_score = max(target.top_score, rows[other].top_score)
            rows[other].size, rows[other].merged_into = 0, target.id
            merged[other] = target.id
        new = [q for q in group if q not in cluster_of]
        if new:
            session.execute(insert(members), [{"level": level, "media_seq": q,
                                                "cluster_id": target.id} for q in new])
            target.size += len(new)
            rows[target.id] = target
            cluster_of.update({q: target.id for q in new})
        _touch(target, top)


def dismiss(session: Session, tenant: str, media_type: str, a: int, b: int) -> bool:
    """Mark a pair "not a duplicate" (stored even if never found, so it never joins later);
    True if that changed anything. The clusters it was in are split where it held them."""
    a, b = min(a, b), max(a, b)
    row = session.get(MatchEdge, (a, b))
    if row is not None and row.dismissed:
        return False
    if row is None:
        session.add(MatchEdge(a_seq=a, b_seq=b, tenant=tenant, media_type=media_type, score=0.0,
                              confidence="low", dismissed=True))
        return True
    row.dismissed = True
    session.flush()
    _resplit(session, {m.cluster_id for m in _members_of(session, a)})
    return True


def forget(session: Session, seq: int) -> None:
    """An item left the catalog: drop its edges and re-split the clusters it was in."""
    clusters = {m.cluster_id for m in _members_of(session, seq)}
    session.execute(delete(MatchEdge).where(or_(MatchEdge.a_seq == seq, MatchEdge.b_seq == seq)))
    session.execute(delete(ClusterMember).where(ClusterMember.media_seq == seq))
    session.flush()
    _resplit(session, clusters)


def edge(session: Session, a: int, b: int) -> MatchEdge | None:
    return session.get(MatchEdge, (min(a, b), max(a, b)))


def resolve(session: Session, tenant: str, cluster_id: int) -> ClusterRow | None:
    """The live cluster an id names, following merges; None if unknown or another tenant's."""
    for _ in range(64):  # merge chains are short; the bound only guards against a cycle
        row = session.get(ClusterRow, cluster_id)
        if row is None or row.tenant != tenant:
            return None
        if row.merged_into is None:
            return row if row.size >= 2 else None
        cluster_id = row.merged_into
    return None


def page(tenant: str, media_type: str | None, level: str, before: int | None,
         limit: int) -> Subquery:
    """Live clusters, newest first (by id), `limit` at most, ids below `before` if given, of one
    media type or all: a keyset page as a subquery the page's member and edge reads join on, so
    a page costs two queries whatever its size."""
    q = select(ClusterRow.id, ClusterRow.level, ClusterRow.media_type).where(
        ClusterRow.tenant == tenant, ClusterRow.level == level,
        ClusterRow.merged_into.is_(None), ClusterRow.size >= 2)
    if media_type is not None:
        q = q.where(ClusterRow.media_type == media_type)
    if before is not None:
        q = q.where(ClusterRow.id < before)
    return q.order_by(ClusterRow.id.desc()).limit(limit).subquery("page")


def one(cluster_id: int) -> Subquery:
    """A single cluster, shaped as `page`'s subquery."""
    return select(ClusterRow.id, ClusterRow.level, ClusterRow.media_type).where(
        ClusterRow.id == cluster_id).subquery("page")


def page_edges(session: Session, clusters: Subquery) -> list[Any]:
    """Undismissed edges inside each cluster of `clusters` that reach the cluster's level, with
    its id (`cluster_id`), strongest first: both ends are looked up as members of that cluster,
    never as a product of two lists of seqs."""
    table = cast(Table, MatchEdge.__table__)
    a, b = aliased(ClusterMember), aliased(ClusterMember)
    strong = or_(*(and_(clusters.c.level == level,
                        table.c.confidence.in_([c for c in LEVELS if at_least(c, level)]))
                   for level in LEVELS))
    return list(session.execute(
        select(a.cluster_id, table.c.a_seq, table.c.b_seq, table.c.score, table.c.confidence,
               table.c.dismissed, table.c.explanation, table.c.found_at)
        .join_from(clusters, a, and_(a.cluster_id == clusters.c.id, a.level == clusters.c.level))
        .join(table, table.c.a_seq == a.media_seq)
        .join(b, and_(b.level == a.level, b.media_seq == table.c.b_seq,
                      b.cluster_id == a.cluster_id))
        .where(table.c.dismissed.is_(False), strong)
        .order_by(table.c.score.desc(), table.c.a_seq, table.c.b_seq)))


def members(session: Session, cluster_ids: list[int]) -> dict[int, list[int]]:
    """Member seqs of each cluster, in seq order (oldest first)."""
    found: dict[int, list[int]] = {c: [] for c in cluster_ids}
    if not cluster_ids:
        return found
    rows = session.execute(select(ClusterMember.cluster_id, ClusterMember.media_seq)
                           .where(ClusterMember.cluster_id.in_(cluster_ids))
                           .order_by(ClusterMember.media_seq))
    for cluster_id, seq in rows:
        found[cluster_id].append(seq)
    return found


def live_edges(session: Session, seqs: list[int], level: str = "medium") -> list[Any]:
    """Undismissed edges between items of `seqs` that reach `level`, as rows with the edge's
    columns (Core rows, not ORM objects: a page of clusters reads hundreds)."""
    if not seqs:
        return []
    wanted = [c for c in ("medium", "high") if at_least(c, level)]
    table = cast(Table, MatchEdge.__table__)
    return list(session.execute(
        select(table).where(table.c.a_seq.in_(seqs), table.c.b_seq.in_(seqs),
                            table.c.dismissed.is_(False), table.c.confidence.in_(wanted))
        .order_by(table.c.score.desc(), table.c.a_seq, table.c.b_seq)))


def cluster_of(session: Session, seq: int, level: str = "medium") -> int | None:
    row = session.get(ClusterMember, (level, seq))
    return row.cluster_id if row else None


def _members_of(session: Session, seq: int) -> list[ClusterMember]:
    return list(session.scalars(select(ClusterMember).where(ClusterMember.media_seq == seq)))


def _touch(row: ClusterRow | None, score: float) -> None:
    if row is not None:
        row.top_score = max(row.top_score, score)
        row.updated_at = utcnow()


def _resplit(session: Session, cluster_ids: set[int]) -> None:
    """Recompute the components of each cluster from its live edges at its level."""
    for cluster_id in sorted(cluster_ids):
        row = session.get(ClusterRow, cluster_id)
        if row is None or row.merged_into is not None:
            continue
        seqs = members(session, [cluster_id])[cluster_id]
        scored = {(e.a_seq, e.b_seq): e.score for e in live_edges(session, seqs, row.level)}
        groups = connected_groups(scored)
        kept = {s for g in groups for s in g}
        gone = [s for s in seqs if s not in kept]
        if gone:
            session.execute(delete(ClusterMember).where(ClusterMember.level == row.level,
                                                        ClusterMember.media_seq.in_(gone)))
        row.size = len(groups[0]) if groups else 0
        row.top_score = _top(scored, groups[0]) if groups else 0.0
        row.updated_at = utcnow()
        for group in groups[1:]:
            part = ClusterRow(tenant=row.tenant, media_type=row.media_type, level=row.level,
                              size=len(group), top_score=_top(scored, group))
            session.add(part)
            session.flush()
            session.execute(update(ClusterMember).where(ClusterMember.level == row.level,
                                                        ClusterMember.media_seq.in_(group))
                            .values(cluster_id=part.id))


def _top(scored: dict[tuple[int, int], float], group: list[int]) -> float:
    members_ = set(group)
    return max((s for (a, _), s in scored.items() if a in members_), default=0.0)


def count(session: Session, tenant: str, media_type: str, level: str) -> int:
    return int(session.scalar(select(func.count()).select_from(ClusterRow).where(
        ClusterRow.tenant == tenant, ClusterRow.media_type == media_type,
        ClusterRow.level == level, ClusterRow.merged_into.is_(None), ClusterRow.size >= 2)) or 0)
