"""Snapshots of built indexes in memory-mappable files, shared by every process of a machine.

Each search process used to build its own copy of every index from the catalog: the same tables
once per worker, and a start-up that reads every row. A snapshot is an index's state written
as flat arrays (one `.npy` file each) with a JSON manifest naming the catalog position it
reflects (the highest seq it saw, the deletion position read before the rows). A process maps
the arrays read-only, so the page cache holds one copy for all of them, and replays only the
change feed since that position (the registry does, see `IndexRegistry`).

Layout: `<directory>/<kind>/manifest.json` names the current data folder beside it. A writer
fills a hidden temporary folder, fsyncs every file and the folder, renames it into place and
only then replaces the manifest (written and fsynced under a temporary name first): a reader
sees the old snapshot or the new one, never half of one. The previous data folder is kept, so
a reader that has just read the old manifest can still open it; older ones are removed (a
process that mapped them keeps its mapping). Writers of one kind take turns on a lock file.

A snapshot that cannot be read, is of another catalog, kind version, index format or bands,
or is older than the catalog keeps its deletions log, is ignored with a log line: the index
is then built from the catalog, which stays the source of truth.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import time
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

log = logging.getLogger("medialayer.index.snapshot")

FORMAT = 1
"""The layout of the files and the manifest; an index's own arrays carry their format in
their metadata."""
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class IndexState:
    """An index as named flat arrays and JSON metadata, for a snapshot.

    `writable` names the arrays the index writes in place (a tombstone, a tenant slot): they
    are mapped copy-on-write, so a process's writes stay its own and touch only their pages;
    the others are mapped read-only. `complete` says whether the state holds every tier; if
    not, the rest is loaded from the catalog after mapping.
    """

    arrays: Mapping[str, np.ndarray]
    meta: Mapping[str, Any]
    writable: frozenset[str] = frozenset()
    complete: bool = True

    @classmethod
    def of_parts(cls, parts: Mapping[str, IndexState], complete: bool) -> IndexState:
        """One state of several named parts (an index's sub-indexes)."""
        return cls({f"{name}.{a}": v for name, part in parts.items()
                    for a, v in part.arrays.items()},
                   {name: dict(part.meta) for name, part in parts.items()},
                   frozenset(f"{name}.{a}" for name, part in parts.items()
                             for a in part.writable),
                   complete)

    def part(self, name: str) -> IndexState:
        prefix = f"{name}."
        meta = self.meta.get(name)
        if not isinstance(meta, Mapping):
            raise ValueError(f"the state has no part {name!r}")
        return IndexState({a.removeprefix(prefix): v for a, v in self.arrays.items()
                           if a.startswith(prefix)}, meta,
                          frozenset(a.removeprefix(prefix) for a in self.writable
                                    if a.startswith(prefix)), self.complete)


@runtime_checkable
class Snapshottable(Protocol):
    """An index that can be written to a snapshot and built over one."""

    def state(self) -> IndexState:
        """The index as flat arrays; may fold pending work in first (a write)."""
        ...

    def load_state(self, state: IndexState) -> None:
        """Take `state`'s arrays as this (empty) index's, without copying the read-only
        ones; ValueError if they do not fit it (another format, another configuration)."""
        ...


@dataclass(frozen=True)
class Position:
    """The catalog position a snapshot reflects: every row up to `last_seq` that was visible
    when it was read, and every deletion up to `last_deletion` (read before the rows)."""

    last_seq: int
    last_deletion: int


@dataclass(frozen=True)
class Snapshot:
    position: Position
    state: IndexState
    written_at: float
    """Seconds since the epoch."""
    path: Path = field(compare=False)


class Snapshots:
    """A directory of snapshots of one catalog's indexes, one current snapshot per kind.

    `catalog` names the catalog (a snapshot of another is ignored); `max_age` is how old, in
    seconds, a snapshot may be and still be replayed: no older than the catalog keeps its
    deletions log, or deletions since would be missed.
    """

    def __init__(self, directory: str | Path, catalog: str, max_age: float) -> None:
        self.directory = Path(directory)
        self.catalog = catalog
        self.max_age = max_age

    def write(self, kind: str, version: int, position: Position, state: IndexState) -> Path:
        """Write `state` as the kind's current snapshot, atomically; the data folder's path."""
        home = self.directory / kind
        home.mkdir(parents=True, exist_ok=True)
        with _locked(home / ".lock"):
            name = f"{position.last_seq}-{time.time_ns()}"
            temporary = home / f".tmp-{name}"
            temporary.mkdir()
            arrays = {a: _write_array(temporary / f"{a}.npy", v, a in state.writable)
                      for a, v in state.arrays.items()}
            _fsync_dir(temporary)
            data = home / name
            temporary.rename(data)
            _fsync_dir(home)
            previous = _data_of(home / MANIFEST)
            manifest = {"format": FORMAT, "kind": kind, "kind_version": version,
                        "catalog": self.catalog, "last_seq": position.last_seq,
                        "last_deletion": position.last_deletion, "written_at": time.time(),
                        "complete": state.complete, "data": name, "arrays": arrays,
                        "meta": state.meta}
            _write_atomically(home / MANIFEST, json.dumps(manifest, indent=1).encode())
            _remove_old(home, keep={name, previous})
        return data

    def read(self, kind: str, version: int) -> Snapshot | None:
        """The kind's current snapshot, its arrays mapped; None (with a log line saying
        why, unless there is none) if it is missing or unusable."""
        manifest_path = self.directory / kind / MANIFEST
        if not manifest_path.exists():
            log.info("no %s snapshot in %s: building from the catalog", kind, self.directory)
            return None
        try:
            return self._read(manifest_path, kind, version)
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("ignoring the %s snapshot %s (%s): building from the catalog", kind,
                        manifest_path.parent, e)
            return None

    def _read(self, manifest_path: Path, kind: str, version: int) -> Snapshot:
        manifest = json.loads(manifest_path.read_bytes())
        expected = {"format": FORMAT, "kind": kind, "kind_version": version,
                    "catalog": self.catalog}
        for key, value in expected.items():
            if manifest.get(key) != value:
                raise ValueError(f"{key} is {manifest.get(key)!r}, not {value!r}")
        age = time.time() - float(manifest["written_at"])
        if age > self.max_age:
            raise ValueError(f"written {age:.0f} s ago, longer than deletions are kept "
                             f"({self.max_age:.0f} s)")
        data = manifest_path.parent / str(manifest["data"])
        arrays = {name: _map_array(data / str(spec["file"]), spec)
                  for name, spec in manifest["arrays"].items()}
        writable = frozenset(name for name, spec in manifest["arrays"].items()
                             if spec["mode"] == "c")
        state = IndexState(arrays, manifest["meta"], writable, bool(manifest["complete"]))
        position = Position(int(manifest["last_seq"]), int(manifest["last_deletion"]))
        return Snapshot(position, state, float(manifest["written_at"]), data)


def _write_array(path: Path, array: np.ndarray, writable: bool) -> dict[str, Any]:
    """Write one array, fsynced; its manifest entry (file, dtype, shape, checksum, map mode)."""
    flat = np.ascontiguousarray(array)
    with open(path, "wb") as f:
        np.save(f, flat, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())
    return {"file": path.name, "dtype": flat.dtype.str, "shape": list(flat.shape),
            "crc32": zlib.crc32(flat.data), "mode": "c" if writable else "r"}


def _map_array(path: Path, spec: Mapping[str, Any]) -> np.ndarray:
    """The array at `path`, mapped (copy-on-write or read-only, as written) and checked
    against its manifest entry: a truncated or altered file raises ValueError."""
    mapped = np.load(path, mmap_mode="c" if spec["mode"] == "c" else "r", allow_pickle=False)
    array = np.asarray(mapped)  # a plain ndarray over the map: results of numpy calls on it
    # are not memmaps that keep the file open
    if array.dtype.str != spec["dtype"] or list(array.shape) != list(spec["shape"]):
        raise ValueError(f"{path.name} is {array.dtype.str} {array.shape}, not "
                         f"{spec['dtype']} {tuple(spec['shape'])}")
    if zlib.crc32(array.data) != spec["crc32"]:
        raise ValueError(f"{path.name} does not match its checksum")
    return array


def _write_atomically(path: Path, content: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as f:
        f.write(content)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    """Make a folder's entries (files created or renamed in it) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _data_of(manifest_path: Path) -> str | None:
    """The data folder a manifest names, if it is readable."""
    try:
        return str(json.loads(manifest_path.read_bytes())["data"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _remove_old(home: Path, keep: set[str | None]) -> None:
    """Data folders other than `keep`, and temporary folders of writers that died (writers
    take turns, so no other one is at work)."""
    for entry in home.iterdir():
        if entry.is_dir() and entry.name not in keep:
            shutil.rmtree(entry, ignore_errors=True)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
