"""Every kind's in-memory index in this process: building, keeping in step, locks and replay.

The catalog is the source of truth and tells what changed through a `ChangeFeed` (which it
implements; this package never imports it). Keeping in step with other processes must not skip
a row whose sequence number is taken before, and committed after, a higher one (overlapping
writers on PostgreSQL): a poll re-reads the seqs of a trailing window (every seq above the
highest one seen `trail` seconds ago) and fetches the rows the index lacks. Deletions are
idempotent, so their trailing window is simply applied again. A freshly built index cannot know
which of the rows below its build's highest seq were still uncommitted, so for `trail` seconds
it also watches a start window of rows below that seq (`_StartWindow`): cheaply, by their
count, and re-reading their seqs only when the count moves.

Searches share a read lock; writes to an index take the exclusive one, but what costs time
(reading and decoding rows) is done before taking it, and a merge of big tables that an index
can run apart (`MergesOffLock`) runs between two short exclusive sections, searches going on.

A kind whose index has a code tier (`TieredIndex`) is built in two steps when the catalog keeps
codes in columns (`CodeFeed`): the code tier from the integer columns alone, streamed in large
batches without decoding any stored fingerprint; then the rest (an image's keypoints), from the
stored fingerprints, in a background thread, merged batch by batch. Searches wait for both, so
an answer never lacks a tier; writes, feed polls and everything else go on meanwhile. Rows that
have no code in the columns (written before they existed) are indexed whole from their stored
fingerprint and their codes written back, once.

With a snapshot directory (`Snapshots`), a kind whose index has a snapshot form is first looked
for there: a usable snapshot is mapped (shared with every process that maps it) and only the
change feed since its position is replayed; tiers the snapshot lacks load from the catalog as
above. `write_snapshot` writes one.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol, cast, runtime_checkable

import numpy as np
import numpy.typing as npt

from medialayer.errors import InvalidInput
from medialayer.index.snapshot import Position, Snapshot, Snapshots, Snapshottable
from medialayer.kinds.base import (
    CandidateIndex,
    Carrier,
    Encoded,
    Loader,
    Match,
    MediaKind,
    tracks_of,
)
from medialayer.locks import ReadWriteLock

log = logging.getLogger("medialayer.index")

AnyKind = MediaKind[Any, Any]
SYNC_INTERVAL = 0.5
"""Seconds between catalog polls for rows written by other processes."""
TRAIL_SECONDS = 60.0
"""How long a seq may stay uncommitted behind higher ones and still be picked up: longer than
any catalog write transaction."""
START_TRAIL_ROWS = 20_000
"""Until `trail` seconds have passed since the build, polls watch this many rows below the
build's highest (`_StartWindow`): a row still uncommitted when the build read past it is among
them unless more rows than this committed meanwhile."""
BATCH = 5000
DELETIONS_KEPT = timedelta(days=1)
"""How long the catalog keeps its deletions log; an index that has not polled for half of it
is rebuilt rather than replayed."""


@dataclass(frozen=True)
class FeedRow:
    """A catalog row as the feed hands it over."""

    seq: int
    tenant: str
    version: int
    encoded: Encoded


class ChangeFeed(Protocol):
    """What the registry needs from the catalog."""

    def rows_since(self, media_type: str, after_seq: int) -> Iterator[FeedRow]:
        """Rows of `media_type` above `after_seq`, in seq order (in batches)."""
        ...

    def rows_of(self, seqs: Sequence[int]) -> list[FeedRow]: ...

    def seqs_since(self, media_type: str, after_seq: int) -> list[int]:
        """The seqs of `media_type` above `after_seq`, visible now (cheap: no fingerprints)."""
        ...

    def deletions_since(self, media_type: str, after_seq: int) -> list[tuple[int, int]]:
        """(deletion seq, media seq) logged above `after_seq`, in deletion order."""
        ...

    def last_deletion(self, media_type: str) -> int: ...

    def count_between(self, media_type: str, after_seq: int, upto_seq: int) -> int:
        """A count of the visible rows of `media_type` in (after_seq, upto_seq] that changes
        whenever one of them commits or is deleted (cheap: an index range count)."""
        ...


@dataclass(frozen=True)
class CodeBatch:
    """Rows of a kind with consecutive seqs (in any order within the batch) as columns: each
    row's first searchable code, without its stored fingerprint."""

    seqs: npt.NDArray[np.int64]
    tenants: npt.NDArray[np.object_]
    versions: npt.NDArray[np.int64]
    codes: npt.NDArray[np.uint64]
    coded: npt.NDArray[np.bool_]
    """False for a row with no code in the columns (its `codes` entry is meaningless)."""


@runtime_checkable
class CodeFeed(Protocol):
    """A catalog that keeps searchable codes in integer columns."""

    def code_batches(self, media_type: str) -> Iterator[CodeBatch]: ...

    def store_codes(self, written: Sequence[tuple[int, Encoded]]) -> None:
        """Write the codes of rows that have none (idempotent)."""
        ...


@runtime_checkable
class TieredIndex(Protocol):
    """An index whose code tier can be loaded from codes alone, the rest added after."""

    def add_codes(self, keys: npt.NDArray[np.int64], tenants: Collection[str],
                  codes: npt.NDArray[np.uint64]) -> None: ...

    def add_details(self, items: Sequence[tuple[int, str, Any]]) -> None: ...


class OffLockMerge(Protocol):
    def run(self) -> None: ...


@runtime_checkable
class MergesOffLock(Protocol):
    """An index that can merge its tables without the exclusive lock: `begin_merge` (under
    it) does the pending work and hands out the merge due, if any; `run` needs no lock; then
    `end_merge` (under it) swaps the result in."""

    def begin_merge(self) -> Any: ...

    def end_merge(self, merge: Any) -> None: ...


class _Trail:
    """The highest seq seen at each poll, so a poll can start below what was seen `trail`
    seconds ago."""

    def __init__(self, trail: float, clock: Callable[[], float]) -> None:
        self._trail = trail
        self._clock = clock
        self._marks: collections.deque[tuple[float, int]] = collections.deque()
        self.top = 0

    def start(self, seq: int) -> None:
        """Begin with `seq` as the floor: what came before needs no second look."""
        self.top = max(self.top, seq)
        self._marks.append((self._clock() - self._trail, seq))

    def saw(self, seq: int) -> None:
        self.top = max(self.top, seq)
        self._marks.append((self._clock(), self.top))

    def floor(self) -> int:
        """The highest seq seen at least `trail` seconds ago (0 before that)."""
        now = self._clock()
        floor = 0
        while self._marks and now - self._marks[0][0] >= self._trail:
            floor = self._marks.popleft()[1]
        if floor:
            self._marks.appendleft((now - self._trail, floor))
        return floor


@dataclass
class _StartWindow:
    """The rows just below a new index's highest seq, which may still commit: `count` is
    what the feed counted there when the index last read them all."""

    floor: int
    top: int
    count: int
    until: float


class KindIndex:
    """One kind's index with its lock and its place in the change feed."""

    def __init__(self, kind: AnyKind, index: CandidateIndex[Any, Any], trail: float,
                 clock: Callable[[], float], carriers: Sequence[str] = ()) -> None:
        self.kind = kind
        self.index = index
        self.carriers = tuple(carriers)
        """Kinds whose rows carry tracks of this kind (a video's soundtrack for audio): the
        index holds those tracks too, under the carrier rows' keys."""
        self.lock = ReadWriteLock()
        self.rows = _Trail(trail, clock)
        self.deletions = _Trail(trail, clock)
        self.polled_at = 0.0
        self.stale: set[int] = set()
        """Seqs of rows of another fingerprint version, and of carrier rows without a track of
        this kind (of its version): never indexed, never fetched again."""
        self.complete = threading.Event()
        """Set once every tier is loaded (the details of a two-step build come after)."""
        self.failure: BaseException | None = None
        self.window: _StartWindow | None = None
        self.mapped: Position | None = None
        """The position of the snapshot the index was built over (None: from the catalog),
        so an index node can say how it came back."""


class IndexRegistry:
    """Builds each kind's index on first use (in bulk) and keeps it in step with the feed.

    A kind's index also holds the tracks of that kind that rows of other kinds carry
    (`base.Track`: a video's soundtrack in the audio index), under the carrier row's key:
    `carriers_of(name)` names the kinds whose rows may carry them.
    """

    def __init__(self, feed: ChangeFeed, kind_of: Callable[[str], AnyKind],
                 loader_of: Callable[[AnyKind], Loader[Any]], bands: int | None = None,
                 trail: float = TRAIL_SECONDS, clock: Callable[[], float] = time.monotonic,
                 carriers_of: Callable[[str], Sequence[str]] = lambda name: (),
                 snapshots: Snapshots | None = None) -> None:
        self._feed = feed
        self._snapshots = snapshots
        self._kind_of = kind_of
        self._carriers_of = carriers_of
        self._loader_of = loader_of
        self._bands = bands
        self._trail = trail
        self._clock = clock
        self._indexes: dict[str, KindIndex] = {}
        self._lock = threading.Lock()
        self._loaders: list[threading.Thread] = []
        self._closing = threading.Event()

    def get(self, media_type: str) -> KindIndex:
        """The kind's index, built from the whole catalog on first use."""
        with self._lock:
            found = self._indexes.get(media_type)
            if found is None:
                found = self._build(self._kind_of(media_type), background=True)
                self._indexes[media_type] = found
            return found

    def wait(self, media_type: str) -> KindIndex:
        """The kind's index once every tier is loaded."""
        entry = self.get(media_type)
        entry.complete.wait()
        if entry.failure is not None:
            raise RuntimeError(f"the {media_type} index failed to load") from entry.failure
        return entry

    def close(self) -> None:
        """Stop background loads (between batches) and wait for them."""
        self._closing.set()
        for thread in self._loaders:
            thread.join()

    def search(self, media_type: str, query: Any, tenant: str, top_k: int,
               min_score: float = 0.0, exclude: int | None = None) -> list[Match]:
        """Search under the shared lock, so searches run in parallel on every core.

        Pending index work (catching up with the feed, sorting new entries) is a write; it is
        done under the exclusive lock first, and the search retries until the index is ready
        to be read as it is.
        """
        entry = self.wait(media_type)
        self.poll(entry)
        while True:
            with entry.lock.read():
                if entry.index.ready():
                    return entry.index.search(query, tenant, top_k, min_score, exclude)
            self._prepare(entry)

    def added(self, media_type: str, items: Sequence[tuple[int, str, Any]]) -> None:
        """Rows this process wrote: indexed now, not when the feed brings them."""
        entry = self.get(media_type)
        with entry.lock.write():
            entry.index.upsert_many(items)
            entry.rows.saw(max((seq for seq, _, _ in items), default=0))

    def added_tracks(self, rows: Sequence[tuple[int, str, Encoded]]) -> None:
        """The tracks of rows this process wrote, (seq, tenant, encoded) each: indexed now in
        their kinds' indexes, when they are of a kind here and of its version."""
        found: dict[str, list[tuple[int, str, Any]]] = {}
        for seq, tenant, encoded in rows:
            for track in tracks_of(encoded):
                try:
                    kind = self._kind_of(track.kind)
                except InvalidInput:
                    continue
                if track.version == kind.version:
                    found.setdefault(kind.name, []).append(
                        (seq, tenant, kind.decode(track.encoded)))
        for name, items in found.items():
            self.added(name, items)

    def deleted(self, media_type: str, seq: int) -> None:
        """The row leaves its kind's index, and the indexes built so far of the tracks its
        kind carries."""
        entry = self.get(media_type)
        with entry.lock.write():
            entry.index.delete(seq)
        kind = entry.kind
        for name in sorted(kind.carries) if isinstance(kind, Carrier) else ():
            with self._lock:
                carried = self._indexes.get(name)
            if carried is not None:
                with carried.lock.write():
                    carried.index.delete(seq)

    def poll(self, entry: KindIndex, force: bool = False) -> None:
        """Catch up with the feed if a poll is due (or `force`)."""
        now = self._clock()
        if not force and now - entry.polled_at <= SYNC_INTERVAL:
            return
        if entry.polled_at and now - entry.polled_at > DELETIONS_KEPT.total_seconds() / 2:
            self._rebuild(entry)
            return
        entry.polled_at = now  # one poll per interval, not one per thread
        name = entry.kind.name
        floor = min(entry.rows.floor(), self._window_floor(entry, now))
        own = self._unseen(entry, self._feed.seqs_since(name, floor))
        carried = self._unseen(entry, [seq for carrier in entry.carriers
                                       for seq in self._feed.seqs_since(carrier, floor)])
        missing = own + carried
        items = self._decoded(entry, self._feed.rows_of(own)) if own else []
        items += self._tracks(entry, self._feed.rows_of(carried)) if carried else []
        floor = entry.deletions.floor()
        deletions = sorted(d for source in (name, *entry.carriers)
                           for d in self._feed.deletions_since(source, floor))
        if not items and not any(seq in entry.index for _, seq in deletions):
            self._saw(entry, missing, deletions)
            return
        with entry.lock.write():
            entry.index.upsert_many(items)
            for _, seq in deletions:
                entry.index.delete(seq)
        self._saw(entry, missing, deletions)

    def _window_floor(self, entry: KindIndex, now: float) -> int:
        """Where a poll must read from for the start window: its floor if a row there
        committed or went since it was last read, else nowhere below the trail."""
        window = entry.window
        if window is None or now >= window.until:
            entry.window = None
            return entry.rows.top
        count = self._window_count(entry, window)
        if count == window.count:
            return entry.rows.top
        window.count = count  # counted before the read below: a later change moves it again
        return window.floor

    def _window_count(self, entry: KindIndex, window: _StartWindow) -> int:
        return sum(self._feed.count_between(source, window.floor, window.top)
                   for source in (entry.kind.name, *entry.carriers))

    def _open_window(self, entry: KindIndex) -> None:
        """Watch the rows below the build's highest seq for `trail` seconds; the first poll
        reads them all once, after counting them."""
        top = entry.rows.top
        entry.rows = _Trail(self._trail, self._clock)
        entry.rows.start(top)
        floor = max(0, top - START_TRAIL_ROWS)
        if floor < top:
            entry.window = _StartWindow(floor, top, -1, self._clock() + self._trail)

    @staticmethod
    def _unseen(entry: KindIndex, seqs: list[int]) -> list[int]:
        return [seq for seq in seqs if seq not in entry.index and seq not in entry.stale]

    def sync(self, media_type: str) -> None:
        self.poll(self.get(media_type), force=True)

    def prepare(self, media_type: str) -> None:
        self._prepare(self.get(media_type))

    @staticmethod
    def _prepare(entry: KindIndex) -> None:
        """The index's pending work under the exclusive lock; a merge due, off it."""
        index = entry.index
        merger = index if isinstance(index, MergesOffLock) else None
        with entry.lock.write():
            merge: OffLockMerge | None = merger.begin_merge() if merger else None
            if merge is None:
                index.prepare()
        if merger and merge:
            merge.run()
            with entry.lock.write():
                merger.end_merge(merge)

    def sizes(self) -> dict[str, tuple[int, int]]:
        """Per media type: (items, bytes) of the indexes built so far."""
        with self._lock:
            entries = dict(self._indexes)
        sizes = {}
        for name, entry in entries.items():
            with entry.lock.read():
                sizes[name] = (len(entry.index), entry.index.nbytes())
        return sizes

    def write_snapshot(self, media_type: str) -> Path | None:
        """Write the kind's snapshot from an index built for it alone (from the current
        snapshot and the feed since, or from the catalog): its data folder, or None without
        a snapshot directory or a snapshot form."""
        kind = self._kind_of(media_type)
        snapshots = self._snapshots
        if snapshots is None or not isinstance(kind.new_index(self._loader_of(kind), self._bands),
                                               Snapshottable):
            return None
        entry = self._build(kind)
        entry.index.prepare()
        position = Position(entry.rows.top, entry.deletions.top)
        state = cast(Snapshottable, entry.index).state()  # the kind's index, as checked above
        return snapshots.write(kind.name, kind.version, position, state)

    def write_served_snapshot(self, media_type: str) -> Path | None:
        """Write the kind's snapshot from the index this process serves, once loaded, under
        its exclusive lock: no second build (an index node's first start), but searches wait
        while the arrays are written. None without a snapshot directory or form."""
        entry = self.wait(media_type)
        snapshots, index = self._snapshots, entry.index
        if snapshots is None or not isinstance(index, Snapshottable):
            return None
        with entry.lock.write():
            entry.index.prepare()
            position = Position(entry.rows.top, entry.deletions.top)
            return snapshots.write(entry.kind.name, entry.kind.version, position, index.state())

    def _build(self, kind: AnyKind, background: bool = False) -> KindIndex:
        """A new index of every row of the kind: over its snapshot and the feed since if
        there is a usable one, else in two steps if it can (see the module's docstring), the
        second in a thread of its own if `background`."""
        entry = KindIndex(kind, kind.new_index(self._loader_of(kind), self._bands),
                          self._trail, self._clock, self._carriers_of(kind.name))
        entry.deletions.start(max(self._feed.last_deletion(source)  # before: rows are gone
                                  for source in (kind.name, *entry.carriers)))
        snapshot = self._map(entry)
        entry.mapped = snapshot.position if snapshot is not None else None
        index, feed = entry.index, self._feed
        self._load_tracks(entry)
        if snapshot is not None:
            self._replay(entry, snapshot.position)
            if not snapshot.state.complete and isinstance(index, TieredIndex):
                self._details(entry, index, snapshot.position.last_seq, background)
            else:
                entry.complete.set()
        elif isinstance(index, TieredIndex) and isinstance(feed, CodeFeed):
            self._load_codes(entry, index, feed)
            self._details(entry, index, entry.rows.top, background)
        else:
            self._load_whole(entry)
            entry.complete.set()
        self._open_window(entry)
        entry.polled_at = self._clock()
        return entry

    def _details(self, entry: KindIndex, index: TieredIndex, top: int, background: bool
                 ) -> None:
        if background:
            thread = threading.Thread(target=self._load_details, args=(entry, index, top),
                                      name=f"index-{entry.kind.name}", daemon=True)
            self._loaders.append(thread)
            thread.start()
        else:
            self._load_details(entry, index, top)

    def _map(self, entry: KindIndex) -> Snapshot | None:
        """The kind's snapshot mapped into the entry's (empty) index, if there is a usable
        one; otherwise None, with the index still empty."""
        kind, index = entry.kind, entry.index
        if self._snapshots is None or not isinstance(index, Snapshottable):
            return None
        snapshot = self._snapshots.read(kind.name, kind.version)
        if snapshot is None:
            return None
        try:
            self._check_position(kind.name, snapshot.position)
            index.load_state(snapshot.state)
        except (ValueError, KeyError, TypeError) as e:  # what a state that does not fit raises
            log.warning("ignoring the %s snapshot %s (%s): building from the catalog",
                        kind.name, snapshot.path, e)
            entry.index = kind.new_index(self._loader_of(kind), self._bands)
            return None
        log.info("mapped the %s snapshot %s (up to seq %d)", kind.name, snapshot.path,
                 snapshot.position.last_seq)
        return snapshot

    def _check_position(self, media_type: str, position: Position) -> None:
        """ValueError unless the catalog has been where the snapshot says: its last row is
        there or its deletion is logged, and the deletions log reaches its position (a
        snapshot of another catalog, or of this one before a restore, fails)."""
        if position.last_deletion > self._feed.last_deletion(media_type):
            raise ValueError("the catalog's deletions log is behind the snapshot")
        if position.last_seq and position.last_seq not in self._feed.seqs_since(
                media_type, position.last_seq - 1) and position.last_seq not in {
                seq for _, seq in self._feed.deletions_since(media_type, position.last_deletion)}:
            raise ValueError(f"the catalog has no row {position.last_seq}, nor its deletion")

    def _replay(self, entry: KindIndex, position: Position) -> None:
        """The feed since a snapshot's position: the deletions logged since, then every
        visible row above the trail below its last seq that the index lacks (rows added
        since, and rows that committed late), in batches."""
        name = entry.kind.name
        entry.rows.top = position.last_seq
        for _, seq in self._feed.deletions_since(name, position.last_deletion):
            entry.index.delete(seq)
        floor = max(0, position.last_seq - START_TRAIL_ROWS)
        missing = [seq for seq in self._feed.seqs_since(name, floor) if seq not in entry.index]
        for start in range(0, len(missing), BATCH):
            rows = self._feed.rows_of(missing[start:start + BATCH])
            entry.index.upsert_many(self._decoded(entry, rows))

    def _load_whole(self, entry: KindIndex) -> None:
        """Every row from its stored fingerprint."""
        self._load_rows(entry, entry.kind.name, self._decoded)

    def _load_tracks(self, entry: KindIndex) -> None:
        """The tracks of this kind in every carrier row."""
        for carrier in entry.carriers:
            self._load_rows(entry, carrier, self._tracks)

    def _load_rows(self, entry: KindIndex, media_type: str,
                   items_of: Callable[[KindIndex, list[FeedRow]], list[tuple[int, str, Any]]]
                   ) -> None:
        """Every row of `media_type`, in batches (vectorised adds)."""
        batch: list[FeedRow] = []
        for row in self._feed.rows_since(media_type, 0):
            batch.append(row)
            if len(batch) == BATCH:
                entry.index.upsert_many(items_of(entry, batch))
                batch = []
        entry.index.upsert_many(items_of(entry, batch))

    def _load_codes(self, entry: KindIndex, index: TieredIndex, feed: CodeFeed) -> None:
        """The code tier from the code columns; rows without codes whole, their codes
        written back."""
        kind = entry.kind
        uncoded: list[int] = []
        stale = 0
        for batch in feed.code_batches(kind.name):
            entry.rows.top = max(entry.rows.top, int(batch.seqs.max()))
            current = batch.versions == kind.version
            if not current.all():
                old = batch.seqs[~current].tolist()
                entry.stale.update(old)
                stale += len(old)
            ready = current & batch.coded
            index.add_codes(batch.seqs[ready], batch.tenants[ready], batch.codes[ready])
            uncoded += batch.seqs[current & ~batch.coded].tolist()
        entry.index.prepare()
        if stale:
            _warn_stale(kind, stale)
        for start in range(0, len(uncoded), BATCH):
            items = self._decoded(entry, self._feed.rows_of(uncoded[start:start + BATCH]))
            entry.index.upsert_many(items)
            feed.store_codes([(seq, kind.encode(stored)) for seq, _, stored in items])
        if uncoded:
            log.info("wrote the codes of %d %s rows that had none", len(uncoded), kind.name)

    def _load_details(self, entry: KindIndex, index: TieredIndex, top: int) -> None:
        """The rest of every row up to `top` from its stored fingerprint; each batch decoded
        off the lock and merged under it."""
        kind = entry.kind
        try:
            batch: list[FeedRow] = []
            for row in self._feed.rows_since(kind.name, 0):
                if self._closing.is_set():
                    raise RuntimeError("closed before the index was loaded")
                if row.seq > top:
                    break
                if row.version == kind.version:
                    batch.append(row)
                if len(batch) == BATCH:
                    self._add_details(entry, index, batch)
                    batch = []
            self._add_details(entry, index, batch)
            with entry.lock.write():
                entry.index.prepare()
        except BaseException as e:  # searches wait on `complete`: they must hear of it
            entry.failure = e
            log.exception("loading the %s index failed", kind.name)
        finally:
            entry.complete.set()

    @staticmethod
    def _add_details(entry: KindIndex, index: TieredIndex, rows: list[FeedRow]) -> None:
        kind = entry.kind
        items = [(row.seq, row.tenant, kind.decode(row.encoded)) for row in rows]
        with entry.lock.write():
            index.add_details(items)

    def _rebuild(self, entry: KindIndex) -> None:
        """Build the index afresh, off the lock, and swap it in."""
        fresh = self._build(entry.kind)
        with entry.lock.write():
            entry.failure = fresh.failure
            entry.index, entry.rows, entry.deletions = fresh.index, fresh.rows, fresh.deletions
            entry.stale, entry.polled_at = fresh.stale, fresh.polled_at
            entry.mapped = fresh.mapped

    def _decoded(self, entry: KindIndex, rows: Iterable[FeedRow]) -> list[tuple[int, str, Any]]:
        kind = entry.kind
        items = []
        stale = 0
        for row in rows:
            entry.rows.top = max(entry.rows.top, row.seq)
            if row.version == kind.version:
                items.append((row.seq, row.tenant, kind.decode(row.encoded)))
            else:
                entry.stale.add(row.seq)
                stale += 1
        if stale:
            _warn_stale(kind, stale)
        return items

    def _tracks(self, entry: KindIndex, rows: Iterable[FeedRow]) -> list[tuple[int, str, Any]]:
        """The tracks of the entry's kind that carrier rows hold; a row without one (of the
        kind's version) is not fetched again."""
        kind = entry.kind
        items = []
        stale = 0
        for row in rows:
            entry.rows.top = max(entry.rows.top, row.seq)
            tracks = [t for t in tracks_of(row.encoded) if t.kind == kind.name]
            current = [t for t in tracks if t.version == kind.version]
            if current:
                items.append((row.seq, row.tenant, kind.decode(current[0].encoded)))
            else:
                entry.stale.add(row.seq)
                stale += bool(tracks)
        if stale:
            _warn_stale(kind, stale)
        return items

    @staticmethod
    def _saw(entry: KindIndex, seqs: list[int], deletions: list[tuple[int, int]]) -> None:
        entry.rows.saw(max(seqs, default=0))
        entry.deletions.saw(max((d for d, _ in deletions), default=0))


def _warn_stale(kind: AnyKind, stale: int) -> None:
    log.warning("%d %s rows have another fingerprint version than this build's (%d) and are "
                "not searched: index them again from their sources", stale, kind.name,
                kind.version)
