"""Query fingerprints sent to index nodes: a safe byte form per kind, and the second round.

An API process fingerprints a query once and sends it to every index node (see
`medialayer.index.remote`). The form is an `.npz` of plain arrays read back with
`allow_pickle=False`, so a node never runs code from what it is sent, and whatever it is sent
is checked before it is searched.

A kind whose search widens its query when the first look settles nothing (an image's mirror and
photo-region views, computed only then) widens it at the API process, which alone sees every
shard's answer: `widened` gives the query with every view to send in a second round, or None.
Only kinds with a form here are served by index nodes; the others stay in process.
"""

from __future__ import annotations

import io
import zipfile
from typing import Any, Protocol

import numpy as np

from medialayer.calibration import IMAGE
from medialayer.errors import InvalidInput
from medialayer.kinds import image
from medialayer.kinds.image import Features, ImageFingerprint

MAX_VIEWS = 16
"""More views (and codes) than any query has: a query with more is refused."""


class QueryWire(Protocol):
    """A kind's query in bytes and back, and its second round."""

    def dump(self, query: Any) -> bytes: ...

    def load(self, data: bytes) -> Any:
        """The query `dump` wrote; InvalidInput for anything else."""
        ...

    def widened(self, query: Any, best: float) -> Any | None:
        """The query with every view if the best score over every shard calls for it."""
        ...


class ImageWire:
    """An `ImageFingerprint` query: codes, each view's points and descriptors, the content
    box and page flag (its lazily computed views travel only in a second round)."""

    def dump(self, query: ImageFingerprint) -> bytes:
        arrays: dict[str, np.ndarray] = {
            "codes": np.array(query.codes, np.uint64),
            "box": np.array(query.box if query.box is not None else (), np.int64),
            "page": np.array(query.page)}
        for i, view in enumerate(query.views):
            arrays[f"points{i}"] = np.ascontiguousarray(view.points, np.float32)
            arrays[f"descriptors{i}"] = np.ascontiguousarray(view.descriptors, np.uint8)
            arrays[f"frame{i}"] = np.array([*view.size, view.mirrored], np.int64)
        out = io.BytesIO()
        np.savez(out, **arrays)  # type: ignore[arg-type]  # numpy's stub wants one kind of value
        return out.getvalue()

    def load(self, data: bytes) -> ImageFingerprint:
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
                return _image_query({name: arrays[name] for name in arrays.files})
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as e:
            raise InvalidInput(f"not an image query: {e}") from e

    def widened(self, query: ImageFingerprint, best: float) -> ImageFingerprint | None:
        """As `ImageIndex.search` does in one process: every view, unless the main view
        found a high-confidence match."""
        if query.more is None or IMAGE.label(best) == "high":
            return None
        return query.expanded()


def _image_query(arrays: dict[str, np.ndarray]) -> ImageFingerprint:
    codes = arrays["codes"]
    count = sum(name.startswith("points") for name in arrays)
    if not 0 < count <= MAX_VIEWS or not 0 < len(codes) <= MAX_VIEWS:
        raise ValueError(f"a query has 1 to {MAX_VIEWS} views and codes")
    if codes.dtype != np.uint64 or codes.ndim != 1:
        raise ValueError("codes must be a uint64 vector")
    views = [_view(arrays, i) for i in range(count)]
    box = arrays["box"]
    if box.shape not in {(0,), (4,)}:
        raise ValueError("box must have 4 values")
    four = tuple(int(v) for v in box)
    return ImageFingerprint(int(codes[0]), views[0], tuple(int(c) for c in codes[1:]),
                            tuple(views[1:]), box=(four[0], four[1], four[2], four[3])
                            if four else None, page=bool(arrays["page"]))


def _view(arrays: dict[str, np.ndarray], i: int) -> Features:
    points, descriptors = arrays[f"points{i}"], arrays[f"descriptors{i}"]
    frame = arrays[f"frame{i}"]
    n = len(points)
    if (points.dtype != np.float32 or points.shape != (n, 2) or descriptors.dtype != np.uint8
            or descriptors.shape != (n, image.ORB_BYTES) or frame.shape != (3,)):
        raise ValueError(f"view {i} has the wrong shapes")
    return Features(points, descriptors, (int(frame[0]), int(frame[1])), bool(frame[2]))


WIRES: dict[str, QueryWire] = {"image": ImageWire()}


def wire_of(media_type: str) -> QueryWire | None:
    """The kind's query form for index nodes; None: the kind is searched in process."""
    return WIRES.get(media_type)
