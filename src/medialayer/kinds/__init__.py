"""The registered media kinds, by name. The service looks a kind up here and knows nothing else.

Kinds register through the `medialayer.kinds` entry-point group (a kind is one installable
package); `register` adds one in-process (tests, notebooks). Entry points are loaded on first
use, so importing this package loads no decoder.
"""

from __future__ import annotations

import logging
import threading
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from medialayer.errors import InvalidInput, MediaTooLarge, UnsupportedMedia
from medialayer.kinds.base import CarriedKind, Carrier, Limits, MediaInput, MediaKind, Track

log = logging.getLogger("medialayer.kinds")

ENTRY_POINT_GROUP = "medialayer.kinds"
AnyKind = MediaKind[Any, Any]

_kinds: dict[str, AnyKind] = {}
_in_process: dict[str, AnyKind] = {}
_loaded = False
_lock = threading.Lock()


def register(kind: AnyKind) -> None:
    """Add (or replace) a kind in this process (and in the fingerprinting pools it starts)."""
    with _lock:
        _kinds[kind.name] = kind
        _in_process[kind.name] = kind


def registered_in_process() -> list[AnyKind]:
    """Kinds added by `register`, which a worker process must register again (entry points it
    finds itself)."""
    with _lock:
        return list(_in_process.values())


def register_all(found: list[AnyKind]) -> None:
    """A worker process's initializer: `register` each of `found`."""
    for kind in found:
        register(kind)


def unregister(name: str) -> None:
    with _lock:
        _kinds.pop(name, None)
        _in_process.pop(name, None)


def kinds() -> dict[str, AnyKind]:
    """Every registered kind by name, the entry points loaded on first call."""
    global _loaded
    if not _loaded:
        with _lock:
            if not _loaded:
                for ep in entry_points(group=ENTRY_POINT_GROUP):
                    _kinds.setdefault(ep.name, _instance(ep.load()))
                _loaded = True
    return dict(_kinds)


def _instance(loaded: Any) -> AnyKind:
    """An entry point may name a kind class or a kind object."""
    return loaded() if isinstance(loaded, type) else loaded  # type: ignore[no-any-return]


def get_kind(media_type: str) -> AnyKind:
    try:
        return kinds()[media_type]
    except KeyError:
        raise InvalidInput(
            f"unsupported media_type {media_type!r}; supported: {', '.join(sorted(kinds()))}"
        ) from None


def sniff_kind(head: bytes) -> AnyKind:
    """The kind whose sniffing recognises a file starting with `head`."""
    for kind in kinds().values():
        if kind.sniff(head):
            return kind
    from medialayer.sniff import sniff

    raise UnsupportedMedia(f"not a supported media file (detected: {sniff(head) or 'unknown'}; "
                           f"supported kinds: {', '.join(sorted(kinds()))})")


def suffixes() -> frozenset[str]:
    """File name suffixes of every kind: what folder walks pick up."""
    return frozenset().union(*(k.suffixes for k in kinds().values()))


def carriers_of(name: str) -> list[str]:
    """The kinds whose files may carry media of kind `name` (`base.Carrier`)."""
    return [k.name for k in kinds().values() if isinstance(k, Carrier) and name in k.carries]


def tracks_in(source: MediaInput, names: frozenset[str], limits: Limits) -> tuple[Track, ...]:
    """The tracks of kinds `names` that a carrier's file holds, each read from its start by
    its own kind under the carrier's `limits`. A track that cannot be had leaves the carrier
    as it is: the file was taken for its own kind."""
    found: list[Track] = []
    for name in sorted(names):
        kind = kinds().get(name)
        if not isinstance(kind, CarriedKind):
            continue
        if not isinstance(source, Path):
            source.seek(0)
        try:
            track = kind.track(source, limits)
        except (UnsupportedMedia, MediaTooLarge) as e:
            log.info("no %s track kept: %s", name, e)
            continue
        if track is not None:
            found.append(track)
    return tuple(found)


__all__ = ["ENTRY_POINT_GROUP", "AnyKind", "carriers_of", "get_kind", "kinds", "register",
           "register_all", "registered_in_process", "sniff_kind", "suffixes", "tracks_in",
           "unregister"]
