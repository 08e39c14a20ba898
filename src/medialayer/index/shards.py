"""One partition of the catalog, for an index node: the change feed seen through a filter.

An index node owns the rows whose seq falls in its partition (`seq % shards == shard`) and
builds and follows its index with the same `IndexRegistry` as any process, over a feed that
hands it only those rows (and their deletions): nothing else of the registry knows there are
shards. Seqs are the catalog's own row keys, allocated one after another and never reused, so
the partitions stay even; a replaced item gets a new seq and may move to another shard, which
is harmless because its old row's deletion is logged under the old seq.

The feed also remembers the highest seq it has seen in the whole catalog (`seen`), before the
filter: a node asked to answer after a given catalog position polls first if it has not
seen that far, so a search right after an ingest finds what was ingested.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from medialayer.index.registry import ChangeFeed, CodeBatch, CodeFeed, FeedRow
from medialayer.kinds.base import Encoded


@dataclass(frozen=True)
class Partition:
    """Shard `shard` of `shards`."""

    shard: int
    shards: int

    def __post_init__(self) -> None:
        if not 0 <= self.shard < self.shards:
            raise ValueError(f"shard {self.shard} is not one of 0..{self.shards - 1}")

    def owns(self, seq: int) -> bool:
        return seq % self.shards == self.shard

    def __str__(self) -> str:
        return f"shard {self.shard} of {self.shards}"


class PartitionedFeed:
    """A `ChangeFeed` and `CodeFeed` with only the rows of one partition."""

    def __init__(self, feed: ChangeFeed, codes: CodeFeed, partition: Partition) -> None:
        self._feed = feed
        self._codes = codes
        self.partition = partition
        self._seen = 0
        self._lock = threading.Lock()

    @property
    def seen(self) -> int:
        """The highest seq of any partition this feed has handed over or filtered out."""
        return self._seen

    def _saw(self, seq: int) -> None:
        with self._lock:
            self._seen = max(self._seen, seq)

    def rows_since(self, media_type: str, after_seq: int) -> Iterator[FeedRow]:
        for row in self._feed.rows_since(media_type, after_seq):
            self._saw(row.seq)
            if self.partition.owns(row.seq):
                yield row

    def rows_of(self, seqs: Sequence[int]) -> list[FeedRow]:
        return self._feed.rows_of([seq for seq in seqs if self.partition.owns(seq)])

    def seqs_since(self, media_type: str, after_seq: int) -> list[int]:
        seqs = self._feed.seqs_since(media_type, after_seq)
        self._saw(max(seqs, default=0))
        return [seq for seq in seqs if self.partition.owns(seq)]

    def deletions_since(self, media_type: str, after_seq: int) -> list[tuple[int, int]]:
        return [(d, seq) for d, seq in self._feed.deletions_since(media_type, after_seq)
                if self.partition.owns(seq)]

    def last_deletion(self, media_type: str) -> int:
        """The catalog's deletion position (a position, not a row: no filter)."""
        return self._feed.last_deletion(media_type)

    def count_between(self, media_type: str, after_seq: int, upto_seq: int) -> int:
        """The whole catalog's count (a count is only compared with an earlier one: every
        partition's row moves it, this one's among them)."""
        return self._feed.count_between(media_type, after_seq, upto_seq)

    def code_batches(self, media_type: str) -> Iterator[CodeBatch]:
        for batch in self._codes.code_batches(media_type):
            self._saw(int(batch.seqs.max(initial=0)))
            mine = batch.seqs % self.partition.shards == self.partition.shard
            if mine.any():
                yield CodeBatch(batch.seqs[mine], batch.tenants[mine], batch.versions[mine],
                                batch.codes[mine], batch.coded[mine])

    def store_codes(self, written: Sequence[tuple[int, Encoded]]) -> None:
        self._codes.store_codes(written)

