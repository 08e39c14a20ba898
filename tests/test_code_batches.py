"""A start-up's code load (`SqlCatalogStore.code_batches`): every row of the kind once, in
batches of seq ranges that follow each other (fetched in parallel), with its tenant, version
and first code, on SQLite and PostgreSQL; rows of other kinds left out, rows without codes and
a tenant name holding a control character included the way the registry expects them."""

from __future__ import annotations

import numpy as np
import sqlalchemy as sa
from pg_fixtures import needs_postgres

from medialayer.catalog.models import Media, MediaCode
from medialayer.catalog.store import NewMedia, SqlCatalogStore
from medialayer.kinds.base import Encoded

pytest_plugins = ["pg_fixtures"]


def _item(media_type: str, tenant: str, code: int, version: int = 1) -> NewMedia:
    return NewMedia(tenant=tenant, media_type=media_type, fingerprint_version=version,
                    fingerprint=Encoded(b"blob", codes=(code, code + 1)))


def check_batches(store: SqlCatalogStore) -> None:
    tenants = ["a", "b", "c\x1fd"]  # the last holds a control character
    items = [_item("image" if i % 4 else "audio", tenants[i % 3], -(2**62) + i)
             for i in range(23)]
    records = store.add_many(items)
    seqs = [r.seq for r in records]
    images = [(r.seq, r.tenant, -(2**62) + i) for i, r in enumerate(records)
              if r.media_type == "image"]
    uncoded, old = images[2][0], images[5][0]
    with store.engine.begin() as c:
        c.execute(sa.delete(MediaCode).where(MediaCode.media_seq == uncoded))
        c.execute(sa.update(Media).where(Media.seq == old).values(fingerprint_version=2))

    batches = list(store.code_batches("image", batch=4))

    assert len(batches) == 6 and all(int(b.seqs.max() - b.seqs.min()) < 4 for b in batches)
    got = sorted((int(s), str(t), int(v), int(c), bool(k)) for b in batches
                 for s, t, v, c, k in zip(b.seqs, b.tenants, b.versions,
                                          b.codes.view(np.int64), b.coded, strict=True))
    assert [(s, t, v, k) for s, t, v, _, k in got] == [
        (s, t, 2 if s == old else 1, s != uncoded) for s, t, _ in images]
    assert [c for s, _, _, c, _ in got if s != uncoded] == [
        c for s, _, c in images if s != uncoded]
    tops = [int(b.seqs.max()) for b in batches]
    assert tops == sorted(tops) and all(
        int(later.seqs.min()) > top for top, later in zip(tops, batches[1:], strict=False))
    assert seqs  # the audio rows were written and left out
    store.engine.dispose()


def test_code_batches_on_sqlite(tmp_path) -> None:
    check_batches(SqlCatalogStore(f"sqlite:///{tmp_path / 'catalog.db'}"))


@needs_postgres
def test_code_batches_on_postgres(pg_url: str) -> None:
    check_batches(SqlCatalogStore(pg_url))



def test_the_code_load_reads_media_rows_from_an_index_alone(tmp_path) -> None:
    """A row's tenant and version come after its fingerprint blob: read from the row, every
    blob's overflow pages would be walked at start-up. SQLite's plan for each query the load
    runs must read media through a covering index."""
    store = SqlCatalogStore(f"sqlite:///{tmp_path / 'catalog.db'}")
    store.add_many([_item("image", "t", 5), _item("image", "t", 6, version=2)])  # both forms
    ran: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        if "media_codes" in statement:
            ran.append((statement, parameters))

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", capture)  # the readers too
    assert sum(len(b.seqs) for b in store.code_batches("image")) == 2
    sa.event.remove(sa.engine.Engine, "before_cursor_execute", capture)
    assert len(ran) == 2  # the joined columns, then the rows (two versions)
    with store.engine.connect() as c:
        for statement, parameters in ran:
            plan = [row[-1] for row in c.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}",
                                                        parameters).all()]
            media = [step for step in plan if step.split()[:2] in (["SEARCH", "media"],
                                                                    ["SCAN", "media"])]
            assert media and all("COVERING INDEX" in step for step in media), plan
    store.engine.dispose()
