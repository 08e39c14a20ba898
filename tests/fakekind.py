"""A small time-based media kind that lives only in the tests: "lines" files.

A file is a header line `MLLINES` then text lines; line i is second i of the "media". A copy
keeps a run of the lines (an excerpt) and may change their case and spacing. It exercises what a
video or audio kind does: a query-side and a stored fingerprint that differ, chunks read back
near a voted time offset, candidates voting for (key, offset), aligned segments. It is
registered in-process (`medialayer.kinds.register`), changing nothing outside this module.
"""

from __future__ import annotations

import hashlib
import io
import struct
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from medialayer.errors import MediaTooLarge, UnsupportedMedia
from medialayer.kinds.base import (
    NO_KEY,
    Calibration,
    Candidate,
    Chunk,
    Encoded,
    Limits,
    Loader,
    Match,
    MediaInput,
    Segment,
    Window,
    rank,
    read_all,
)

MAGIC = b"MLLINES\n"
CHUNK_LINES = 4
MAX_LINES = 10_000


def lines_file(lines: Sequence[str]) -> bytes:
    return MAGIC + "\n".join(lines).encode()


def line_hash(line: str) -> int:
    """A 63-bit hash of a line with case and spacing normalised (what a copy may change)."""
    norm = " ".join(line.lower().split()).encode()
    return int.from_bytes(hashlib.blake2b(norm, digest_size=8).digest(), "big") >> 1


@dataclass(frozen=True)
class Stored:
    """Line hashes by second; `first` is the second of hashes[0] (chunks read partially)."""

    hashes: tuple[int, ...]
    first: int = 0
    duration: float = 0.0


@dataclass(frozen=True)
class Query:
    """The query side also keeps each line's text length, which nothing stores."""

    hashes: tuple[int, ...]
    lengths: tuple[int, ...]


class LinesIndex:
    """(line hash) -> [(key, second)], with the tenant as a filter."""

    def __init__(self, load: Loader[Stored]) -> None:
        self._load = load
        self._postings: dict[int, list[tuple[int, int]]] = defaultdict(list)
        self._tenant: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self._tenant)

    def __contains__(self, key: int) -> bool:
        return key in self._tenant

    def nbytes(self) -> int:
        return 0

    def prepare(self) -> None:
        pass

    def ready(self) -> bool:
        return True

    def upsert(self, key: int, tenant: str, stored: Stored) -> None:
        self.upsert_many([(key, tenant, stored)])

    def upsert_many(self, items: Sequence[tuple[int, str, Stored]]) -> None:
        for key, tenant, stored in items:
            self.delete(key)
            self._tenant[key] = tenant
            for second, h in enumerate(stored.hashes, start=stored.first):
                self._postings[h].append((key, second))

    def delete(self, key: int) -> bool:
        return self._tenant.pop(key, None) is not None

    def candidates(self, query: Query, tenant: str, exclude: int | None = None
                   ) -> Iterator[Candidate]:
        votes: Counter[tuple[int, int]] = Counter()
        for second, h in enumerate(query.hashes):
            for key, ref_second in self._postings.get(h, ()):
                if self._tenant.get(key) == tenant and key != exclude:
                    votes[key, ref_second - second] += 1
        for (key, offset), n in votes.most_common(20):
            yield Candidate(key, float(offset), n)

    def search(self, query: Query, tenant: str, top_k: int, min_score: float = 0.0,
               exclude: int | None = None) -> list[Match]:
        return rank(self, LinesKind.verify, self._load, query, tenant, top_k, min_score,
                    exclude, window=_window)


def _window(query: Query, candidate: Candidate) -> Window:
    return candidate.offset, candidate.offset + len(query.hashes)


class LinesKind:
    name = "lines"
    version = 1
    suffixes = frozenset({".lines"})
    limits = Limits(max_bytes=1 << 20, max_duration=float(MAX_LINES))
    calibration = Calibration(high=0.8, medium=0.5)

    def sniff(self, head: bytes) -> bool:
        return head.startswith(MAGIC)

    def _lines(self, source: MediaInput) -> list[str]:
        data = read_all(source, self.limits.max_bytes)
        if not data.startswith(MAGIC):
            raise UnsupportedMedia("not a lines file")
        try:
            lines = data[len(MAGIC):].decode().split("\n")
        except UnicodeDecodeError as e:
            raise UnsupportedMedia(f"cannot decode lines: {e}") from e
        if len(lines) > MAX_LINES:
            raise MediaTooLarge(f"{len(lines)} s of lines, over {MAX_LINES}")
        return lines

    def query(self, source: MediaInput) -> Query:
        lines = self._lines(source)
        return Query(tuple(map(line_hash, lines)), tuple(len(line) for line in lines))

    def stored(self, source: MediaInput) -> Stored:
        hashes = tuple(map(line_hash, self._lines(source)))
        return Stored(hashes, 0, float(len(hashes)))

    def stored_of(self, query: Query) -> Stored:
        return Stored(query.hashes, 0, float(len(query.hashes)))

    def query_of(self, stored: Stored) -> Query:
        return Query(stored.hashes, (0,) * len(stored.hashes))

    def encode(self, stored: Stored) -> Encoded:
        chunks = tuple(
            Chunk(n, float(start), float(min(start + CHUNK_LINES, len(stored.hashes))),
                  struct.pack(f"<{len(part)}q", *part))
            for n, start in enumerate(range(0, len(stored.hashes), CHUNK_LINES))
            if (part := stored.hashes[start:start + CHUNK_LINES]))
        return Encoded(b"", codes=stored.hashes[:1], chunks=chunks, duration=stored.duration)

    def decode(self, encoded: Encoded) -> Stored:
        """From every chunk, or from the consecutive chunks a windowed read returned."""
        chunks = sorted(encoded.chunks, key=lambda c: c.number)
        hashes: list[int] = []
        for chunk in chunks:
            hashes += struct.unpack(f"<{len(chunk.blob) // 8}q", chunk.blob)
        first = int(chunks[0].t_start) if chunks else 0
        return Stored(tuple(hashes), first, encoded.duration or 0.0)

    @staticmethod
    def verify(query: Query, stored: Stored) -> Match:
        """The best offset's run of equal lines, as a share of the query's lines."""
        if not query.hashes:
            return Match(NO_KEY, 0.0)
        at = {h: i for i, h in reversed(list(enumerate(stored.hashes, start=stored.first)))}
        offsets = Counter(at[h] - i for i, h in enumerate(query.hashes) if h in at)
        if not offsets:
            return Match(NO_KEY, 0.0)
        offset, agreeing = offsets.most_common(1)[0]
        score = round(agreeing / len(query.hashes), 4)
        span = len(query.hashes)
        segment = Segment(0.0, float(span), float(offset), float(offset + span), score)
        return Match(NO_KEY, score, (segment,), {"offset": offset, "lines": agreeing})

    def new_index(self, load: Loader[Stored], bands: int | None = None) -> LinesIndex:
        return LinesIndex(load)

    def thumbnail(self, path: Path, side: int) -> bytes | None:
        return None


def lines_of(seed: int, n: int = 24) -> list[str]:
    return [f"line {seed}-{i} {'x' * ((seed * 7 + i) % 5)}" for i in range(n)]


def excerpt(data: bytes) -> bytes:
    """A copy: lines 6..18 of a lines file, upper-cased and re-spaced."""
    lines = io.BytesIO(data[len(MAGIC):]).read().decode().split("\n")
    return lines_file(["  " + line.upper() for line in lines[6:18]])
