"""The catalog on a real PostgreSQL server: the same use cases as on SQLite, across processes.

Runs against MEDIALAYER_TEST_POSTGRES_URL (default: the local server, database `test`), each run in
a schema of its own. Without a reachable server the tests skip with the reason, unless
MEDIALAYER_REQUIRE_POSTGRES=1 (CI sets it), where that is a failure.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io

import pytest
import sqlalchemy as sa
from pg_fixtures import needs_postgres

from medialayer import Conflict, MediaLayer

import synth

pytest_plugins = ["pg_fixtures"]
pytestmark = needs_postgres


def test_round_trip_search_and_delete_on_postgres(pg_url: str, tmp_path) -> None:
    ml = MediaLayer(tmp_path, database_url=pg_url)
    record = ml.index(synth.jpeg(synth.photo(1)), name="a.jpg", external_id="sku-1",
                      metadata={"seller": "s1"})
    assert ml.get(record.id).metadata == {"seller": "s1"}
    hits = ml.search(synth.jpeg(synth.crop_center(synth.photo(1), 0.8))).results
    assert hits[0].media.id == record.id and hits[0].confidence == "high"
    with pytest.raises(Conflict):
        ml.index(synth.jpeg(synth.photo(2)), external_id="sku-1")
    ml.delete(record.id)
    assert ml.search(synth.jpeg(synth.photo(1))).results == []
    ml.close()


def test_two_processes_share_one_catalog(pg_url: str, tmp_path) -> None:
    """Media indexed through one process is found through another after it syncs."""
    a = MediaLayer(tmp_path / "a", database_url=pg_url)
    b = MediaLayer(tmp_path / "b", database_url=pg_url)
    b.search(synth.jpeg(synth.photo(3)))  # b's index is built (empty) before a writes
    record = a.index(synth.jpeg(synth.photo(3)))
    b.sync()
    assert b.search(synth.jpeg(synth.photo(3))).results[0].media.id == record.id
    a.delete(record.id)
    b.sync()
    assert b.search(synth.jpeg(synth.photo(3))).results == []
    a.close()
    b.close()


def test_migrations_are_idempotent(pg_url: str, tmp_path) -> None:
    MediaLayer(tmp_path, database_url=pg_url).close()
    ml = MediaLayer(tmp_path, database_url=pg_url)
    assert ml.list() == []
    ml.close()


def test_searches_poll_postgres_for_other_processes_writes(pg_url: str, tmp_path,
                                                           monkeypatch) -> None:
    from medialayer.index import registry

    monkeypatch.setattr(registry, "SYNC_INTERVAL", -1.0)
    a = MediaLayer(tmp_path / "a", database_url=pg_url)
    b = MediaLayer(tmp_path / "b", database_url=pg_url)
    query = synth.jpeg(synth.photo(21))
    assert b.search(query).results == []
    record = a.index(query)
    assert b.search(query).results[0].media.id == record.id
    a.delete(record.id)
    assert b.search(query).results == []
    a.close()
    b.close()


def test_bulk_rows_on_postgres_are_written_in_batches_exactly_once(pg_url: str, tmp_path
                                                                   ) -> None:
    """The bulk job's batched writes on PostgreSQL: claims, one insert and one row update per
    batch, the row-by-row fallback (a repeated external id), and a claim taken by another."""
    from concurrent.futures import ThreadPoolExecutor

    from medialayer.catalog import jobs as job_rows
    from medialayer.config import Settings
    from medialayer.jobs import JobRunner, submit_csv

    ml = MediaLayer(tmp_path, database_url=pg_url)
    lines = []
    for i in range(12):
        path = tmp_path / f"p{i}.jpg"
        path.write_bytes(synth.jpeg(synth.photo(400 + i)))
        lines.append(f"{path},{'dup' if i in (3, 7) else f'e{i}'}\n")
    settings = Settings(data_dir=str(tmp_path), bulk_concurrency=16)
    job_id = submit_csv(ml, "path,external_id\n" + "".join(lines), "default", settings,
                        allow_paths=True)
    with ThreadPoolExecutor(2) as pool:
        asyncio.run(JobRunner(ml, settings, pool=pool).run_until_idle(job_id))
    outcomes = job_rows.row_outcomes(ml.store, job_id)
    assert [state for _, state, _ in outcomes] == ["done"] * 12
    media = [m for _, _, m in outcomes]
    assert media[3] == media[7] and len(set(media)) == 11 and ml.store.count() == 11

    other = submit_csv(ml, "path\n/nowhere.jpg\n", "default", settings, allow_paths=True)
    [claim] = job_rows.claim_rows(ml.store, 1, 300.0, other)
    stolen = dataclasses.replace(claim, token="someone-else")
    with pytest.raises(job_rows.ClaimLost), ml.store.session.begin() as s:
        job_rows.complete_rows(s, [(claim, media[0]), (stolen, media[1])])
    assert job_rows.row_outcomes(ml.store, other)[0][1] == "claimed"
    ml.close()


def test_nul_bytes_are_refused_on_postgres_as_on_sqlite(pg_url: str, tmp_path) -> None:
    """PostgreSQL refuses NUL in text (a 500 once it got there) where SQLite stored it: both
    now answer 422 on every route, and the library refuses it before any SQL."""
    from fastapi.testclient import TestClient

    from medialayer.api import create_app
    from medialayer.config import Settings
    from medialayer.errors import InvalidInput
    from medialayer.keys import create_key

    from nul_cases import assert_nul_refused

    ml = MediaLayer(tmp_path, database_url=pg_url)
    _info, key = create_key(ml.store, "acme", ["index", "search"])
    _info, admin = create_key(ml.store, "acme", ["admin"])
    settings = Settings(data_dir=str(tmp_path), database_url=pg_url, run_jobs=False)
    with TestClient(create_app(settings, ml), raise_server_exceptions=False) as client:
        assert assert_nul_refused(client, {"X-API-Key": key}, {"X-API-Key": admin},
                                  synth.jpeg(synth.photo(5))) >= 43
    with pytest.raises(InvalidInput, match="NUL"):
        ml.index(synth.jpeg(synth.photo(6)), external_id="sku\x00")
    ml.close()


def test_a_lower_seq_committing_last_is_not_skipped(pg_url: str, tmp_path, monkeypatch) -> None:
    """Two writers whose transactions interleave: the lower seq commits last. A third process
    finds both at its next poll; deletions likewise."""
    import threading

    from medialayer.catalog.models import Deletion, Media
    from medialayer.catalog.store import NewMedia
    from medialayer.index import registry
    from medialayer.kinds import get_kind

    monkeypatch.setattr(registry, "SYNC_INTERVAL", -1.0)
    slow, fast, reader = (MediaLayer(tmp_path / n, database_url=pg_url) for n in "abc")
    first, second = synth.jpeg(synth.photo(31)), synth.jpeg(synth.photo(32))
    assert reader.search(first).results == []  # the reader's index is built, and polls
    kind = get_kind("image")
    item = NewMedia(tenant="default", media_type="image",
                    fingerprint=kind.encode(kind.stored(io.BytesIO(first))),
                    fingerprint_version=kind.version)
    inserted, release = threading.Event(), threading.Event()

    def hold(session: object, ids: list[str]) -> None:
        inserted.set()
        release.wait(30)

    added: list[object] = []
    writer = threading.Thread(target=lambda: added.extend(slow.index_fingerprints([item], hold)))
    writer.start()
    assert inserted.wait(30)
    late = fast.index(second)  # a higher seq, committed first
    assert reader.search(second).results[0].media.id == late.id
    assert reader.search(first).results == []
    release.set()
    writer.join()
    early = added[0]
    assert early.seq < late.seq
    assert reader.search(first).results[0].media.id == early.id

    with slow.store.session.begin() as s:  # the lower deletion seq commits last
        s.add(Deletion(media_seq=early.seq, media_type="image", tenant="default"))
        s.execute(sa.delete(Media).where(Media.seq == early.seq))
        s.flush()
        fast.delete(late.id)
        assert reader.search(second).results == []
        reader.indexes.sync("image")
        assert early.seq in reader.indexes.get("image").index
    assert reader.search(first).results == []
    for ml in (slow, fast, reader):
        ml.close()


def test_upgrade_and_downgrade_on_postgres(pg_url: str, tmp_path) -> None:
    from test_migrations import check_upgrade_from_0002

    check_upgrade_from_0002(pg_url, tmp_path)
