"""Kept clusters and decisions that take effect, through the library.

Edges come two ways here: found by the service's add paths (real photos and copies), and kept
by hand between indexed items (`Match` objects) where a test needs a graph of a given shape.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from medialayer import MediaLayer
from medialayer.catalog import edges
from medialayer.catalog.decisions import Actor
from medialayer.catalog.store import NewMedia
from medialayer.errors import InvalidInput, NotFound
from medialayer.kinds import get_kind
from medialayer.kinds.base import Match
from medialayer.review import QueueFilter

import synth

ALICE = Actor("key-1", "alice")


@pytest.fixture
def ml(tmp_path: Path) -> MediaLayer:
    service = MediaLayer(tmp_path / "data")
    yield service
    service.close()


def items(ml: MediaLayer, n: int, seed: int = 100, **metadata: str) -> list:
    """`n` unrelated indexed photos (no edges between them)."""
    return [ml.index(synth.jpeg(synth.photo(seed + i, (200, 150))), name=f"item-{i}",
                     metadata=dict(metadata)) for i in range(n)]


def link(ml: MediaLayer, a, b, score: float = 0.9) -> None:
    ml.review.keep(a.tenant, a.media_type, a.seq, [Match(b.seq, score)])


def groups(ml: MediaLayer, level: str = "medium") -> list[set[str]]:
    return sorted(({m.name for m in c.members} for c in ml.review.clusters(
        "default", "image", level)), key=lambda g: (-len(g), sorted(g)))


def test_adding_a_copy_keeps_the_edge_and_a_cluster(ml: MediaLayer) -> None:
    original = ml.index(synth.jpeg(synth.photo(1)), name="original")
    copy = ml.index(synth.jpeg(synth.crop_center(synth.photo(1), 0.8), 40), name="copy")
    ml.index(synth.jpeg(synth.photo(2)), name="other")
    assert groups(ml) == [{"original", "copy"}]
    assert ml.review.pair("default", original.id, copy.id).confidence == "high"
    # a search with index=true keeps what it found, without a second search
    result = ml.search(synth.jpeg(synth.blur(synth.photo(1))), index=True, name="blurred")
    assert result.query_media is not None
    assert groups(ml) == [{"original", "copy", "blurred"}]


def test_bulk_added_items_get_their_edges(ml: MediaLayer) -> None:
    kind = get_kind("image")
    blobs = [kind.encode(kind.stored(io.BytesIO(synth.jpeg(im))))
             for im in (synth.photo(3), synth.pad(synth.photo(3), 0.1, "white"))]
    ml.index_fingerprints([NewMedia("default", "image", b, kind.version, name=f"bulk-{i}")
                           for i, b in enumerate(blobs)])
    assert groups(ml) == [{"bulk-0", "bulk-1"}]


def test_unions_keep_the_larger_clusters_id_and_old_ids_follow(ml: MediaLayer) -> None:
    a, b, c, d, e = items(ml, 5)
    link(ml, a, b)
    first = ml.review.cluster_of("default", a.id)
    link(ml, c, d)
    link(ml, d, e)
    second = ml.review.cluster_of("default", c.id)
    link(ml, b, c)
    assert groups(ml) == [{"item-0", "item-1", "item-2", "item-3", "item-4"}]
    assert ml.review.cluster_of("default", a.id) == second  # the larger (3) took the smaller
    assert ml.review.cluster("default", first).id == second


def test_dismissing_the_joining_pair_splits_the_cluster(ml: MediaLayer) -> None:
    a, b, c, d, e = items(ml, 5)
    for x, y in ((a, b), (b, c), (a, c), (c, d), (d, e)):
        link(ml, x, y)  # a-b-c a triangle, d-e a pair, c-d the only pair joining them
    cluster_id = ml.review.cluster_of("default", a.id)
    view = ml.review.cluster("default", cluster_id)
    assert {(p.a.name, p.b.name) for p in view.pairs if p.joins_groups} == {("item-2", "item-3")}
    made = ml.decide(c.id, "dismiss", other_media_id=d.id, actor=ALICE)
    assert made["created"] and made["from_state"] == {"pair": "open"}
    assert groups(ml) == [{"item-0", "item-1", "item-2"}, {"item-3", "item-4"}]
    assert ml.review.cluster_of("default", a.id) == cluster_id  # the larger part keeps the id
    # found again, a dismissed pair stays out
    link(ml, d, c, 0.95)
    assert groups(ml) == [{"item-0", "item-1", "item-2"}, {"item-3", "item-4"}]
    again = ml.decide(c.id, "dismiss", other_media_id=d.id, actor=ALICE)
    assert not again["created"] and again["id"] == made["id"]


def test_a_split_in_the_middle_gives_the_smaller_part_a_new_id(ml: MediaLayer) -> None:
    a, b, c, d, e = items(ml, 5)
    for x, y in ((a, b), (b, c), (c, d), (d, e)):
        link(ml, x, y)
    old = ml.review.cluster_of("default", a.id)
    ml.decide(b.id, "dismiss", other_media_id=c.id)
    assert groups(ml) == [{"item-2", "item-3", "item-4"}, {"item-0", "item-1"}]
    assert ml.review.cluster_of("default", c.id) == old
    assert ml.review.cluster_of("default", a.id) not in (None, old)


def test_levels_cluster_separately_and_low_matches_are_not_kept(ml: MediaLayer) -> None:
    a, b, c, d = items(ml, 4)
    link(ml, a, b, 0.95)  # high
    link(ml, b, c, 0.7)  # medium
    link(ml, c, d, 0.3)  # low: not kept
    assert groups(ml) == [{"item-0", "item-1", "item-2"}]
    assert groups(ml, "high") == [{"item-0", "item-1"}]
    assert groups(ml, "low") == groups(ml)


def test_deleting_an_item_re_splits_its_cluster(ml: MediaLayer) -> None:
    a, b, c = items(ml, 3)
    link(ml, a, b)
    link(ml, b, c)
    ml.delete(b.id)
    assert groups(ml) == []


def test_consolidate_links_members_to_the_canonical_in_search_answers(ml: MediaLayer) -> None:
    original = ml.index(synth.jpeg(synth.photo(4)), name="original")
    copy = ml.index(synth.jpeg(synth.crop_center(synth.photo(4), 0.8), 40), name="copy")
    cluster_id = ml.review.cluster_of("default", copy.id)
    assert ml.review.cluster("default", cluster_id).proposed_canonical_id == original.id
    made = ml.decide(original.id, "consolidate", cluster_id=cluster_id, actor=ALICE)
    assert made["to_state"] == {original.id: {"status": None, "canonical_id": original.id},
                                copy.id: {"status": None, "canonical_id": original.id}}
    assert made["actor"] == {"key_id": "key-1", "name": "alice"}
    hits = ml.search(synth.jpeg(synth.photo(4))).results
    assert {h.media.id: h.canonical_id for h in hits} == {original.id: original.id,
                                                          copy.id: original.id}
    assert ml.review.queue("default", QueueFilter()) == []  # consolidated: no longer open
    assert not ml.decide(original.id, "consolidate", cluster_id=cluster_id)["created"]


def test_flag_and_reject_mark_the_media_and_record_the_state_before(ml: MediaLayer) -> None:
    a, b = items(ml, 2)
    link(ml, a, b)
    flagged = ml.decide(b.id, "flag", actor=ALICE)
    assert flagged["from_state"] == {b.id: {"status": None, "canonical_id": None}}
    rejected = ml.decide(b.id, "reject", actor=ALICE, note="fraud")
    assert rejected["from_state"] == {b.id: {"status": "flagged", "canonical_id": None}}
    assert ml.review.marks("default", [b.id])[b.id].status == "rejected"
    assert ml.review.queue("default", QueueFilter()) == []  # a rejected item's pairs are closed


def test_decisions_page_newest_first_with_a_cursor(ml: MediaLayer) -> None:
    made = [ml.decide(r.id, "flag", actor=ALICE)["id"] for r in items(ml, 5)]
    seen, cursor = [], None
    while True:
        page, cursor = ml.review.decisions("default", cursor=cursor, limit=2)
        seen += [d["id"] for d in page]
        if cursor is None:
            break
    assert seen == made[::-1]


def test_bad_decisions_are_refused(ml: MediaLayer) -> None:
    a, b = items(ml, 2)
    with pytest.raises(InvalidInput):
        ml.decide(a.id, "dismiss")
    with pytest.raises(InvalidInput):
        ml.decide(a.id, "consolidate")
    with pytest.raises(InvalidInput):
        ml.decide(a.id, "dismiss", other_media_id=a.id)
    with pytest.raises(NotFound):
        ml.decide(a.id, "flag", tenant="someone-else")
    link(ml, a, b)
    with pytest.raises(InvalidInput):  # the canonical must be a member
        ml.decide(items(ml, 1, seed=300)[0].id, "consolidate",
                  cluster_id=ml.review.cluster_of("default", a.id))


def test_queue_filters_by_seller_category_and_cross_seller(ml: MediaLayer) -> None:
    a, b = items(ml, 2, seed=100, seller="s1", category="lamps")
    c, = items(ml, 1, seed=110, seller="s2", category="lamps")
    d, = items(ml, 1, seed=120, seller="s2", category="chairs")
    link(ml, a, b)
    link(ml, b, c, 0.7)
    link(ml, c, d, 0.95)

    def names(**f: object) -> list[tuple[str, str]]:
        return [(p.a.name, p.b.name) for p in ml.review.queue("default", QueueFilter(**f))]

    assert len(names()) == 3
    assert len(names(cross_seller=True)) == 1
    assert len(names(category="chairs")) == 1
    assert len(names(seller="s1")) == 2
    assert len(names(min_confidence="high")) == 2
    assert [p.score for p in ml.review.queue("default", QueueFilter(sort="score"))] == \
        [0.95, 0.9, 0.7]


def test_one_call_with_many_edges_merges_every_cluster_it_touches(ml: MediaLayer) -> None:
    a, b, c, d, e, new = items(ml, 6)
    link(ml, a, b)
    link(ml, c, d)
    ml.review.keep("default", "image", new.seq, [Match(x.seq, 0.9) for x in (a, c, e)])
    assert groups(ml) == [{f"item-{i}" for i in range(6)}]
    with ml.store.session() as s:
        assert edges.count(s, "default", "image", "medium") == 1
