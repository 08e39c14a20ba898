"""The index registry's change feed on a fake catalog: a seq that commits after higher ones is
still applied, within the trail; the trail then moves up; deletions are replayed idempotently.
And the two-step build (code columns, then keypoints) on a real catalog."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import sqlalchemy as sa

from medialayer.catalog.models import Media, MediaCode
from medialayer.catalog.store import NewMedia, SqlCatalogStore
from medialayer.index import registry
from medialayer.index.registry import FeedRow, IndexRegistry
from medialayer.kinds.image import Features, ImageFingerprint
from medialayer.kinds.image_search import ImageKind

import fakekind

KIND = fakekind.LinesKind()


class FakeFeed:
    """Committed rows and deletions; `asked` records the floors the registry read from."""

    def __init__(self) -> None:
        self.rows: dict[int, FeedRow] = {}
        self.deletions: list[tuple[int, int]] = []
        self.asked: list[int] = []

    def commit(self, seq: int, seed: int) -> None:
        stored = KIND.stored_of(KIND.query(_file(seed)))
        self.rows[seq] = FeedRow(seq, "shop", KIND.version, KIND.encode(stored))

    def rows_since(self, media_type: str, after_seq: int) -> Iterator[FeedRow]:
        return iter([r for s, r in sorted(self.rows.items()) if s > after_seq])

    def rows_of(self, seqs: Sequence[int]) -> list[FeedRow]:
        return [self.rows[s] for s in seqs if s in self.rows]

    def seqs_since(self, media_type: str, after_seq: int) -> list[int]:
        self.asked.append(after_seq)
        return sorted(s for s in self.rows if s > after_seq)

    def deletions_since(self, media_type: str, after_seq: int) -> list[tuple[int, int]]:
        return [d for d in self.deletions if d[0] > after_seq]

    def last_deletion(self, media_type: str) -> int:
        return max((d for d, _ in self.deletions), default=0)

    def count_between(self, media_type: str, after_seq: int, upto_seq: int) -> int:
        return sum(after_seq < s <= upto_seq for s in self.rows)


def _file(seed: int) -> object:
    import io

    return io.BytesIO(fakekind.lines_file(fakekind.lines_of(seed)))


def test_a_late_seq_is_applied_and_the_trail_moves_up(monkeypatch) -> None:
    monkeypatch.setattr(registry, "START_TRAIL_ROWS", 0)
    now = [1000.0]
    feed = FakeFeed()
    feed.commit(1, 1)
    reg = IndexRegistry(feed, lambda name: KIND, lambda kind: lambda keys, windows=None: {},
                        trail=10.0, clock=lambda: now[0])
    entry = reg.get("lines")
    assert 1 in entry.index
    feed.commit(3, 3)  # seq 2 is taken by a writer that has not committed yet
    now[0] += 1
    reg.sync("lines")
    assert 3 in entry.index and 2 not in entry.index
    feed.commit(2, 2)  # ... and now it has
    now[0] += 1
    reg.sync("lines")
    assert 2 in entry.index
    assert feed.asked[-1] == 1  # still re-reading above what the build saw
    now[0] += 20
    reg.sync("lines")
    assert feed.asked[-1] == 3  # the trail has passed: nothing below 3 is read again

    feed.deletions += [(2, 3)]  # deletion 1 (of seq 2) not committed yet
    reg.sync("lines")
    assert 3 not in entry.index and 2 in entry.index
    feed.deletions.insert(0, (1, 2))
    now[0] += 1
    reg.sync("lines")
    assert 2 not in entry.index and 1 in entry.index


def test_a_new_index_watches_the_rows_below_its_build_by_their_count() -> None:
    now = [1000.0]
    feed = FakeFeed()
    for seq in (1, 2, 4, 5):  # seq 3 is taken by a writer that has not committed yet
        feed.commit(seq, seq)
    reg = IndexRegistry(feed, lambda name: KIND, lambda kind: lambda keys, windows=None: {},
                        trail=10.0, clock=lambda: now[0])
    entry = reg.get("lines")
    for _ in range(3):
        now[0] += 1
        reg.sync("lines")
    assert feed.asked[-3:] == [0, 5, 5]  # the window read once, then only its count
    feed.commit(3, 3)
    now[0] += 1
    reg.sync("lines")
    assert feed.asked[-1] == 0 and 3 in entry.index
    now[0] += 1
    reg.sync("lines")
    assert feed.asked[-1] == 5
    feed.commit(2_000, 7)
    now[0] += 20  # the window's time is over: polls read above the trail alone
    reg.sync("lines")
    assert feed.asked[-1] == 5 and 2_000 in entry.index and entry.window is None


def _image_row(kind: ImageKind, rng: np.random.Generator, tenant: str, points: int) -> NewMedia:
    code, mirror = (int(c) for c in rng.integers(0, 2**63, 2, dtype=np.int64))
    features = Features(rng.uniform(0, 480, (points, 2)).astype(np.float32),
                        rng.integers(0, 256, (points, 32), dtype=np.uint8), (480, 360))
    return NewMedia(tenant=tenant, media_type="image", fingerprint_version=kind.version,
                    fingerprint=kind.encode(ImageFingerprint(code, features, (mirror,))))


def _codes_of(store: SqlCatalogStore, seq: int) -> list[int]:
    with store.engine.connect() as c:
        return list(c.execute(sa.select(MediaCode.code).where(MediaCode.media_seq == seq)
                              .order_by(MediaCode.position)).scalars())


def test_a_two_step_build_loads_codes_then_keypoints_and_backfills_codes(tmp_path) -> None:
    """Codes from the code columns, keypoints from the stored fingerprints after; a row with
    no codes (written before the columns) is indexed whole and its codes written, once; a row
    of another version is left out."""
    store = SqlCatalogStore(f"sqlite:///{tmp_path / 'catalog.db'}")
    kind = ImageKind()
    rng = np.random.default_rng(3)
    seqs = [r.seq for r in store.add_many(
        [_image_row(kind, rng, f"t{i % 3}", 0 if i % 4 == 0 else 40) for i in range(12)])]
    uncoded, old = seqs[1], seqs[2]
    expected = _codes_of(store, uncoded)
    with store.engine.begin() as c:
        c.execute(sa.delete(MediaCode).where(MediaCode.media_seq == uncoded))
        c.execute(sa.update(Media).where(Media.seq == old).values(
            fingerprint_version=kind.version - 1))

    def registry() -> IndexRegistry:
        return IndexRegistry(store, lambda name: kind,
                             lambda k: lambda keys, windows=None: {})

    entry = registry().wait("image")
    index = entry.index
    current = [s for s in seqs if s != old]
    assert [s for s in seqs if s in index] == current and entry.stale == {old}
    assert [s for s in seqs if s in index.local] == [s for i, s in enumerate(seqs)
                                                     if i % 4 and s != old]
    assert [index.tenants.count(f"t{t}") for t in range(3)] == [4, 4, 3]  # t2 lost `old`
    for seq in current:
        code = _codes_of(store, seq)[0] % 2**64
        assert (seq, 0) in index.codes.radius(code, 0)
    assert _codes_of(store, uncoded) == expected  # written back

    writes: list[object] = []
    store_codes = store.store_codes
    store.store_codes = lambda written: writes.append(written)  # type: ignore[method-assign]
    assert len(registry().wait("image").index) == len(current) and writes == []
    store_codes([(uncoded, kind.encode(kind.decode(store.rows_of([uncoded])[0].encoded)))])
    assert _codes_of(store, uncoded) == expected  # once: a second backfill changes nothing

    added = store.add(_image_row(kind, rng, "t0", 40)).seq
    store.delete("t1", store.records([seqs[4]])[seqs[4]].id)
    reg = registry()
    entry = reg.wait("image")
    added_later = store.add(_image_row(kind, rng, "t0", 40)).seq
    reg.sync("image")
    assert added in entry.index.local and added_later in entry.index.local
    assert seqs[4] not in entry.index
