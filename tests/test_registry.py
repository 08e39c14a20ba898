"""The index registry's change feed on a fake catalog: a seq that commits after higher ones is
still applied, within the trail; the trail then moves up; deletions are replayed idempotently."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from medialayer.index import registry
from medialayer.index.registry import FeedRow, IndexRegistry

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
