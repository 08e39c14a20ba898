"""Alembic migrations: a catalog written at an older revision is upgraded in place at open,
its rows still found, and the newest revision downgrades cleanly (SQLite here; PostgreSQL in
test_postgres.py, which runs `check_upgrade_from_0002` on a real server)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from medialayer import MediaLayer
from medialayer.catalog.store import MIGRATIONS, migrating

import synth

CODES = sa.text("select position, code from media_codes order by position")


def _alembic(conn: sa.Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


def check_upgrade_from_0002(url: str, data_dir: Path) -> None:
    """Write an image at revision 0002 (one blob per row), open the catalog (upgrade to head),
    find the image (its codes, which 0002 had no column for, written back by the index build,
    once), then downgrade to 0002 (through the review tables of 0004 and the time-based kinds'
    of 0003) and upgrade again."""
    ml = MediaLayer(data_dir, database_url=url)
    record = ml.index(synth.jpeg(synth.photo(5)), name="old")
    engine = ml.store.engine
    with migrating(engine) as conn:
        command.downgrade(_alembic(conn), "0002")
    with engine.connect() as conn:
        assert not {"fingerprint_chunks", "match_edges"} & set(sa.inspect(conn).get_table_names())
    ml.close()
    ml = MediaLayer(data_dir, database_url=url)  # upgrades to head
    assert ml.search(synth.jpeg(synth.crop_center(synth.photo(5), 0.8))).results[0].media.id \
        == record.id
    with ml.store.engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
        assert {"fingerprint_chunks", "media_codes", "match_edges", "clusters"} <= tables
        codes = conn.execute(CODES).all()
    assert [p for p, _ in codes] == [0, 1]
    ml.close()
    ml = MediaLayer(data_dir, database_url=url)
    ml.warm_up()
    with ml.store.engine.connect() as conn:
        assert conn.execute(CODES).all() == codes
    ml.close()


def test_upgrade_and_downgrade_on_sqlite(tmp_path: Path) -> None:
    check_upgrade_from_0002(f"sqlite:///{tmp_path / 'catalog.db'}", tmp_path)


def test_a_deleted_highest_seq_is_never_handed_out_again(tmp_path: Path) -> None:
    """A catalog written before 0005 (SQLite reused the highest rowid) whose newest item was
    deleted: after the upgrade the next item gets a new seq, and so does one after that."""
    ml = MediaLayer(tmp_path)
    with migrating(ml.store.engine) as conn:
        command.downgrade(_alembic(conn), "0004")
    ml.index(synth.jpeg(synth.photo(1)), name="kept")
    gone = ml.index(synth.jpeg(synth.photo(2)), name="gone")
    ml.delete(gone.id)
    ml.close()
    ml = MediaLayer(tmp_path)  # upgrades to head
    later = ml.index(synth.jpeg(synth.photo(3)), name="later")
    assert later.seq > gone.seq
    ml.delete(later.id)
    last = ml.index(synth.jpeg(synth.photo(4)), name="last")
    assert last.seq > later.seq
    ml.close()


def test_a_deletion_after_the_log_was_pruned_empty_gets_a_new_seq(tmp_path: Path) -> None:
    """Processes follow the deletion log by seq: once pruning has emptied it, the next deletion
    must still get a seq above every one handed out, on a catalog upgraded from 0005 too."""
    ml = MediaLayer(tmp_path)
    with migrating(ml.store.engine) as conn:
        command.downgrade(_alembic(conn), "0005")
    for n in (1, 2):
        ml.delete(ml.index(synth.jpeg(synth.photo(n)), name=f"gone {n}").id)
    before = ml.store.last_deletion("image")
    ml.close()
    ml = MediaLayer(tmp_path)  # upgrades to head
    assert ml.store.prune_deletions(timedelta(0)) == 2
    ml.delete(ml.index(synth.jpeg(synth.photo(3)), name="gone 3").id)
    assert ml.store.last_deletion("image") > before
    ml.close()
