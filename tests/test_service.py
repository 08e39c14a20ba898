"""The library API end to end: catalog round trip, restart, tenants, delete, clusters."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from PIL import ImageOps

from medialayer import Conflict, InvalidInput, MediaLayer, MediaRef, NotFound, UnsupportedMedia

import synth


@pytest.fixture
def ml(tmp_path: Path) -> MediaLayer:
    layer = MediaLayer(tmp_path / "data")
    yield layer
    layer.close()


def test_index_then_search_finds_an_edited_copy(ml: MediaLayer) -> None:
    original = ml.index(synth.jpeg(synth.photo(1)), name="sku-1.jpg", external_id="sku-1")
    ml.index(synth.jpeg(synth.photo(2)), name="sku-2.jpg")
    hits = ml.search(synth.jpeg(synth.crop_center(synth.photo(1), 0.75), 40)).results
    assert hits[0].media.id == original.id
    assert hits[0].media.external_id == "sku-1"
    assert hits[0].confidence == "high"
    assert all(h.similarity_score <= hits[0].similarity_score for h in hits)


def test_unrelated_query_gets_no_confident_match(ml: MediaLayer) -> None:
    for seed in range(5):
        ml.index(synth.jpeg(synth.photo(seed)))
    hits = ml.search(synth.jpeg(synth.photo(99))).results
    assert all(h.confidence == "low" for h in hits)


def test_min_score_and_top_k_bound_the_results(ml: MediaLayer) -> None:
    for _ in range(3):
        ml.index(synth.jpeg(synth.photo(1)))
    assert len(ml.search(synth.jpeg(synth.photo(1)), top_k=2).results) == 2
    assert ml.search(synth.jpeg(synth.photo(7)), min_score=0.9).results == []
    with pytest.raises(InvalidInput):
        ml.search(synth.jpeg(synth.photo(1)), top_k=0)


def test_catalog_survives_a_restart(tmp_path: Path) -> None:
    first = MediaLayer(tmp_path / "data")
    record = first.index(synth.jpeg(synth.photo(3)), name="a.jpg", metadata={"price": 9})
    first.close()
    second = MediaLayer(tmp_path / "data")
    assert second.get(record.id).metadata == {"price": 9}
    hits = second.search(synth.jpeg(ImageOps.mirror(synth.photo(3)))).results
    assert hits[0].media.id == record.id and hits[0].confidence == "high"
    second.close()


def test_delete_removes_from_catalog_and_index(ml: MediaLayer) -> None:
    record = ml.index(synth.jpeg(synth.photo(4)))
    ml.delete(record.id)
    assert ml.search(synth.jpeg(synth.photo(4))).results == []
    with pytest.raises(NotFound):
        ml.get(record.id)
    with pytest.raises(NotFound):
        ml.delete(record.id)


def test_a_tenant_never_sees_another_tenants_media(ml: MediaLayer) -> None:
    record = ml.index(synth.jpeg(synth.photo(5)), tenant="shop-a")
    assert ml.search(synth.jpeg(synth.photo(5)), tenant="shop-b").results == []
    with pytest.raises(NotFound):
        ml.get(record.id, tenant="shop-b")
    with pytest.raises(NotFound):
        ml.delete(record.id, tenant="shop-b")
    assert ml.search(synth.jpeg(synth.photo(5)), tenant="shop-a").results[0].media.id == record.id


def test_an_index_reads_back_only_its_own_tenants_fingerprints(ml: MediaLayer) -> None:
    """Verification reads candidates' keypoints from the catalog by key: only the asking
    tenant's rows come back, and a deleted row does not."""
    a = ml.index(synth.jpeg(synth.photo(6)), tenant="shop-a")
    b = ml.index(synth.jpeg(synth.photo(7)), tenant="shop-b")
    assert set(ml.store.fingerprints_of("shop-a", [a.seq, b.seq])) == {a.seq}
    ml.delete(a.id, tenant="shop-a")
    assert ml.store.fingerprints_of("shop-a", [a.seq, b.seq]) == {}
    assert ml.store.fingerprints_of("shop-b", []) == {}


def test_external_id_is_unique_per_tenant(ml: MediaLayer) -> None:
    first = ml.index(synth.jpeg(synth.photo(6)), external_id="x1")
    with pytest.raises(Conflict):
        ml.index(synth.jpeg(synth.photo(6)), external_id="x1")
    assert ml.index(synth.jpeg(synth.photo(6)), external_id="x1", if_exists="return") == first
    ml.index(synth.jpeg(synth.photo(6)), external_id="x1", tenant="other")  # other tenant: fine


def test_search_with_index_adds_the_query_and_never_matches_itself(ml: MediaLayer) -> None:
    result = ml.search(synth.jpeg(synth.photo(7)), index=True)
    assert result.results == [] and result.query_media is not None
    again = ml.search(synth.jpeg(synth.photo(7)), index=True)
    assert [h.media.id for h in again.results] == [result.query_media.id]


def test_concurrent_ingests_of_one_photo_find_each_other(ml: MediaLayer) -> None:
    data = synth.jpeg(synth.photo(8))
    results = []
    threads = [threading.Thread(target=lambda: results.append(ml.search(data, index=True)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    found = sorted(len(r.results) for r in results)
    assert found == [0, 1]


def test_compare_files_and_catalog_items(ml: MediaLayer) -> None:
    record = ml.index(synth.jpeg(synth.photo(9)))
    same = ml.compare(synth.jpeg(synth.pad(synth.photo(9), 0.1, "white")), MediaRef(record.id))
    other = ml.compare(synth.jpeg(synth.photo(10)), MediaRef(record.id))
    assert same.confidence == "high" and other.confidence == "low"
    assert same.similarity_score > other.similarity_score


def test_clusters_group_near_duplicates(ml: MediaLayer) -> None:
    a = [ml.index(synth.jpeg(e(synth.photo(11)))).id
         for e in (lambda im: im, synth.blur, ImageOps.mirror)]
    b = [ml.index(synth.jpeg(e(synth.photo(12)))).id
         for e in (lambda im: im, lambda im: synth.crop_center(im, 0.8))]
    ml.index(synth.jpeg(synth.photo(13)))
    clusters = ml.clusters()
    assert [sorted(m.id for m in c.members) for c in clusters] == [sorted(a), sorted(b)]


def test_bad_files_raise_clear_errors_and_leave_the_catalog_untouched(
        ml: MediaLayer, tmp_path: Path) -> None:
    bad = tmp_path / "x.jpg"
    bad.write_bytes(b"<html></html>")
    with pytest.raises(UnsupportedMedia):
        ml.index(bad)
    with pytest.raises(InvalidInput):
        ml.index(tmp_path / "missing.jpg")
    with pytest.raises(InvalidInput):
        ml.index(synth.jpeg(synth.photo(1)), media_type="hologram")
    assert ml.list() == []


def test_list_pages_in_insertion_order(ml: MediaLayer) -> None:
    ids = [ml.index(synth.jpeg(synth.photo(s))).id for s in range(5)]
    page1 = ml.list(limit=3)
    page2 = ml.list(after=page1[-1].seq, limit=3)
    assert [r.id for r in page1 + page2] == ids


def test_other_processes_writes_are_seen_after_sync(tmp_path: Path) -> None:
    a, b = MediaLayer(tmp_path / "d"), MediaLayer(tmp_path / "d")
    b.search(synth.jpeg(synth.photo(1)))  # b builds its index now
    record = a.index(synth.jpeg(synth.photo(14)))
    b.sync()
    assert b.search(synth.jpeg(synth.photo(14))).results[0].media.id == record.id
    a.delete(record.id)
    b.sync()
    assert b.search(synth.jpeg(synth.photo(14))).results == []
    a.close()
    b.close()


def test_syncing_does_not_index_this_processs_own_rows_twice(ml: MediaLayer) -> None:
    for seed in range(3):
        ml.index(synth.jpeg(synth.photo(seed)))
    before = ml.index_sizes()["image"]
    ml.sync()
    assert ml.index_sizes()["image"] == before == (3, before[1])


def test_searches_poll_the_catalog_and_pick_up_other_processes_writes(tmp_path: Path,
                                                                       monkeypatch) -> None:
    """No explicit sync: a search due a poll sees new rows and deletions, and a poll that finds
    nothing new never takes the exclusive lock."""
    from medialayer.index import registry

    monkeypatch.setattr(registry, "SYNC_INTERVAL", -1.0)
    a, b = MediaLayer(tmp_path / "d"), MediaLayer(tmp_path / "d")
    query = synth.jpeg(synth.photo(14))
    assert b.search(query).results == []
    record = a.index(query)
    assert b.search(query).results[0].media.id == record.id
    a.delete(record.id)
    assert b.search(query).results == []

    entry = b.indexes.get("image")
    writes = []
    real_write = entry.lock.write
    monkeypatch.setattr(entry.lock, "write", lambda: writes.append(1) or real_write())
    b.search(query)
    assert writes == []
    a.close()
    b.close()
