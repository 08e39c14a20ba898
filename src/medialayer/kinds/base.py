"""The media-kind protocol: a kind (image, video, audio, ...) is one package behind these types.

In the spirit of python-threatexchange's ContentType x SignalType x SignalTypeIndex, a kind says
what it accepts (sniffing, suffixes, limits), turns a file into fingerprints (a query-side one and
a stored one: a query may carry views that are never stored), encodes the stored one for the
catalog, builds a candidate index over stored fingerprints, verifies a candidate, and owns the
calibration of its scores. The service, the API, the jobs and the CLI only ever speak to these
types, so a new kind changes nothing outside its own package (see docs/kinds.md).

This module imports nothing heavy: the API, the catalog and the index layer import it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO, Literal, NamedTuple, Protocol, TypeVar, runtime_checkable

from medialayer.errors import InvalidInput, MediaTooLarge

Confidence = Literal["low", "medium", "high"]
CONFIDENCE_ORDER: tuple[Confidence, ...] = ("low", "medium", "high")

MediaInput = Path | BinaryIO
"""What a kind decodes: a file path or a readable binary stream, never the whole file as bytes
(video and audio are read as they are decoded; the service spools uploads to a file)."""

NO_KEY = -1
"""The key of a match that is not (yet) tied to a catalog row: `verify` knows no keys."""

Q = TypeVar("Q")
"""A kind's query-side fingerprint."""
S = TypeVar("S")
"""A kind's stored fingerprint."""
S_co = TypeVar("S_co", covariant=True)
Q_contra = TypeVar("Q_contra", contravariant=True)
S_contra = TypeVar("S_contra", contravariant=True)


@dataclass(frozen=True)
class Limits:
    """What one item of a kind may cost before it is refused (413): bytes read, pixels decoded,
    seconds of media, seconds of decoding. None means the kind has no such dimension."""

    max_bytes: int
    max_pixels: int | None = None
    max_duration: float | None = None
    max_decode_seconds: float | None = None


@dataclass(frozen=True)
class Calibration:
    """Scores at or above which a match is labelled high / medium; set per kind by its own
    calibration run on its evaluation corpus. `high` means safe to act on automatically."""

    high: float
    medium: float

    def label(self, score: float) -> Confidence:
        if score >= self.high:
            return "high"
        if score >= self.medium:
            return "medium"
        return "low"


def at_least(label: str, minimum: str) -> bool:
    """Whether confidence `label` is `minimum` or better."""
    return CONFIDENCE_ORDER.index(label) >= CONFIDENCE_ORDER.index(minimum)


@dataclass(frozen=True)
class Segment:
    """Aligned time ranges in seconds where the query and the reference agree, and how well."""

    query_start: float
    query_end: float
    reference_start: float
    reference_end: float
    score: float


@dataclass(frozen=True)
class Match:
    """A verified candidate: `key` is the catalog row's integer key (NO_KEY from `verify`).

    `explanation` says why it matched (the tier, inliers, regions, ...), in JSON-able values.
    """

    key: int
    score: float
    segments: tuple[Segment, ...] = ()
    explanation: Mapping[str, object] | None = None
    """Why it matched (tier, inliers, matched boxes), when the kind can say; kept on edges."""

    def keyed(self, key: int) -> Match:
        return replace(self, key=key)

    def with_spans(self) -> Match:
        """The segments also in the explanation, as `query_spans` and `reference_spans` (start
        and end seconds each): the explanation is what edges and clusters keep, so a report
        built from them can still say which parts matched."""
        explanation = dict(self.explanation or {})
        explanation["query_spans"] = [[round(s.query_start, 2), round(s.query_end, 2)]
                                      for s in self.segments]
        explanation["reference_spans"] = [[round(s.reference_start, 2), round(s.reference_end, 2)]
                                          for s in self.segments]
        return replace(self, explanation=explanation)

    def swapped(self) -> Match:
        """The same match seen from the other side, for a comparison run the other way: each
        segment's query and reference ranges, and the explanation's `query_*` and
        `reference_*` entries, exchange places."""
        segments = tuple(Segment(s.reference_start, s.reference_end, s.query_start,
                                 s.query_end, s.score) for s in self.segments)
        explanation = None if self.explanation is None else {
            _other_side(name): value for name, value in self.explanation.items()}
        return replace(self, segments=segments, explanation=explanation)


def _other_side(name: str) -> str:
    for a, b in (("query_", "reference_"), ("reference_", "query_")):
        if name.startswith(a):
            return b + name[len(a):]
    return name


class Candidate(NamedTuple):
    """What a candidate index proposes: a key, the reference time offset it votes for (seconds
    to add to a query time to get the reference time; 0 for still media) and the vote count."""

    key: int
    offset: float
    votes: int


@dataclass(frozen=True)
class Chunk:
    """A time slice of a stored fingerprint, kept as its own catalog row so verification reads
    only the slices near a voted offset."""

    number: int
    t_start: float
    t_end: float
    blob: bytes


@dataclass(frozen=True)
class Encoded:
    """A stored fingerprint as the catalog keeps it.

    `blob` is whatever a kind needs whole (may be empty); `chunks` its time slices (time-based
    kinds); `codes` the searchable integer codes (signed 64-bit) the catalog keeps in their own
    columns; `duration` the media's length in seconds (None for still media).
    """

    blob: bytes
    codes: tuple[int, ...] = ()
    chunks: tuple[Chunk, ...] = ()
    duration: float | None = None


TRACK_CHUNKS = 1 << 30
"""Chunk numbers from here on hold the tracks a file carries, one chunk each (`Track`); a kind's
own time slices number below."""
_TRACK_HEADER = struct.Struct("<16sI")  # the track's kind name, its fingerprint version


@dataclass(frozen=True)
class Track:
    """Media of another kind inside a file: a video's soundtrack is audio.

    The carrier's kind asks the track's kind for it (`CarriedKind.track`), with its own limits,
    and keeps it in its `Encoded` as one chunk (`chunk`, read back by `tracks_of`), so the track
    lives and dies with the carrier's catalog row. The index registry puts it in the track
    kind's index under the carrier's key: a search of that kind finds the carrier, with the
    track kind's segments. A track keeps its kind's blob and duration (no codes or chunks), and
    the fingerprint version it was made with: a track of another version is not searched.
    """

    kind: str
    version: int
    blob: bytes
    duration: float

    @property
    def encoded(self) -> Encoded:
        """What the track's kind decodes."""
        return Encoded(self.blob, duration=self.duration)

    def chunk(self, position: int) -> Chunk:
        """The track as the `position`-th track chunk of its carrier's `Encoded`."""
        header = _TRACK_HEADER.pack(self.kind.encode(), self.version)
        return Chunk(TRACK_CHUNKS + position, 0.0, self.duration, header + self.blob)


def tracks_of(encoded: Encoded) -> list[Track]:
    """The tracks a stored fingerprint carries (none for most)."""
    found = []
    for chunk in encoded.chunks:
        if chunk.number >= TRACK_CHUNKS:
            name, version = _TRACK_HEADER.unpack_from(chunk.blob)
            found.append(Track(name.rstrip(b"\0").decode(), version,
                               chunk.blob[_TRACK_HEADER.size:], chunk.t_end))
    return found


Window = tuple[float, float]
"""A reference time range (seconds) whose chunks a verification needs."""


class Loader(Protocol[S_co]):
    """Reads stored fingerprints back from the catalog by key; keys gone are absent.

    With `windows`, a time-based kind's keys are read with only the chunks that overlap their
    window (keys without a window are read whole).
    """

    def __call__(self, keys: Sequence[int], /,
                 windows: Mapping[int, Window] | None = None) -> Mapping[int, S_co]: ...


class CandidateIndex(Protocol[Q_contra, S_contra]):
    """The in-memory search structure of one kind in one process, over every tenant.

    Built from the catalog at start (`upsert_many`), kept in step by the index registry. The
    tenant is a filter: candidates of other tenants are never proposed. Not thread-safe: the
    registry serialises writers with readers; `ready()` says whether `search` would write.
    """

    def upsert(self, key: int, tenant: str, stored: S_contra) -> None: ...
    def upsert_many(self, items: Sequence[tuple[int, str, S_contra]]) -> None: ...
    def delete(self, key: int) -> bool: ...
    def candidates(self, query: Q_contra, tenant: str, exclude: int | None = None
                   ) -> Iterable[Candidate]: ...
    def search(self, query: Q_contra, tenant: str, top_k: int, min_score: float = 0.0,
               exclude: int | None = None) -> list[Match]: ...
    def prepare(self) -> None: ...
    def ready(self) -> bool: ...
    def __contains__(self, key: int) -> bool: ...
    def __len__(self) -> int: ...
    def nbytes(self) -> int: ...


class MediaKind(Protocol[Q, S]):
    """One kind of media: what it accepts, how it is fingerprinted, indexed and verified."""

    name: str
    """The `media_type` in URLs, CSV rows and the catalog."""
    version: int
    """The stored fingerprint's format version; rows of another version are refused."""
    suffixes: frozenset[str]
    """File name suffixes (lower case, with the dot) that folder walks pick up."""
    limits: Limits
    calibration: Calibration

    def sniff(self, head: bytes) -> bool:
        """Whether a file starting with `head` (its first 512 bytes) is this kind's."""
        ...

    def query(self, source: MediaInput) -> Q:
        """Decode and fingerprint a file to search with (every view worth trying)."""
        ...

    def stored(self, source: MediaInput) -> S:
        """Decode and fingerprint a file to keep in the catalog."""
        ...

    def stored_of(self, query: Q) -> S:
        """The stored fingerprint of a query (search with index=true decodes once)."""
        ...

    def query_of(self, stored: S) -> Q:
        """A stored fingerprint as a query (clusters, compare against a catalog item)."""
        ...

    def encode(self, stored: S) -> Encoded: ...
    def decode(self, encoded: Encoded) -> S: ...

    def verify(self, query: Q, stored: S) -> Match:
        """Score one candidate (key NO_KEY), with aligned segments for time-based kinds."""
        ...

    def new_index(self, load: Loader[S], bands: int | None = None) -> CandidateIndex[Q, S]:
        """An empty index; `load` reads candidates' stored fingerprints back for verification;
        `bands` tunes a code index's bands (None: the kind's default)."""
        ...

    def thumbnail(self, path: Path, side: int) -> bytes | None:
        """A small JPEG picture of the file for reports, or None if the kind has none."""
        ...


@runtime_checkable
class Carrier(Protocol):
    """A kind whose files also carry media of other kinds (a video's soundtrack): it keeps
    their `Track`s in what it encodes, made by the kinds it names here."""

    carries: frozenset[str]
    """The names of the kinds whose media its files may carry."""


@runtime_checkable
class CarriedKind(Protocol):
    """A kind whose media can sit inside another kind's files."""

    def track(self, source: MediaInput, limits: Limits) -> Track | None:
        """This kind's media inside `source`, fingerprinted and encoded, under the carrier's
        `limits`; None when the file holds none worth keeping (no such stream, silence, or
        nothing this kind can decode)."""
        ...


def rank(index: CandidateIndex[Q, S], verify: Callable[[Q, S], Match], load: Loader[S], query: Q,
         tenant: str, top_k: int, min_score: float = 0.0, exclude: int | None = None,
         window: Callable[[Q, Candidate], Window] | None = None) -> list[Match]:
    """The usual `search`: candidates, their stored fingerprints, verification, best first.

    A kind whose verification is costly keeps `candidates` short. With `window`, each candidate
    is read with only the chunks of the reference time range `window(query, candidate)` (for
    example the query's length placed at the voted offset).
    """
    best: dict[int, Candidate] = {}
    for c in index.candidates(query, tenant, exclude):
        if c.key != exclude and (c.key not in best or c.votes > best[c.key].votes):
            best[c.key] = c
    windows = None
    if window is not None:
        windows = {k: window(query, c) for k, c in best.items()}
    stored = load(list(best), windows)
    matches = [verify(query, s).keyed(k) for k, s in stored.items()]
    kept = [m for m in matches if m.score > 0 and m.score >= min_score]
    kept.sort(key=lambda m: (-m.score, m.key))
    return kept[:top_k]


def both_ways(kind: MediaKind[Q, S], query_a: Q, stored_a: S, query_b: Q, stored_b: S
              ) -> Match:
    """`a` verified against `b` and `b` against `a`, the stronger kept (seen from `a`), so a
    comparison does not depend on the order of its operands: a query carries views that are
    never stored (an image's mirror), so one direction can see more than the other."""
    forward, backward = kind.verify(query_a, stored_b), kind.verify(query_b, stored_a)
    return backward.swapped() if backward.score > forward.score else forward


def read_all(source: MediaInput, max_bytes: int) -> bytes:
    """A whole (small) file's bytes, for kinds whose decoder wants them; over `max_bytes` is
    refused without reading the rest."""
    if isinstance(source, Path):
        try:
            with source.open("rb") as f:
                return read_all(f, max_bytes)
        except OSError as e:
            raise InvalidInput(f"cannot read {source}: {e.strerror}") from e
    data = source.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise MediaTooLarge(f"the file is over the cap of {max_bytes} bytes")
    return data
