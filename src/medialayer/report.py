"""The dedupe report: a self-contained HTML page of clusters with thumbnails, and a pairs CSV.

People judge duplicates faster by looking than by reading ids, so every member is shown as an
inline thumbnail (data URI): the file can be mailed or archived without the images beside it.
"""

from __future__ import annotations

import base64
import csv
import io
from collections.abc import Mapping
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape
from PIL import Image

from medialayer.errors import MediaLayerError
from medialayer.kinds.image import open_image
from medialayer.results import Cluster

THUMB_SIDE = 180


def thumbnail_uri(path: str | None) -> str | None:
    """A small JPEG data URI of the file at `path`, or None if it can't be read as an image."""
    if not path:
        return None
    try:
        im = open_image(Path(path).read_bytes(), draft_side=THUMB_SIDE)
    except (OSError, MediaLayerError):
        return None
    im.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def write_html(clusters: list[Cluster], out: Path, title: str) -> None:
    env = Environment(loader=PackageLoader("medialayer", "templates"),
                      autoescape=select_autoescape(["html"]))
    view = [{"members": [{"name": m.name, "id": m.id, "source": m.source,
                          "thumb": thumbnail_uri(m.source)} for m in c.members],
             "pairs": [{"a": _name(c, p.a), "b": _name(c, p.b), "score": p.similarity_score,
                        "why": _why(p.explanation)} for p in c.pairs]}
            for c in clusters]
    out.write_text(env.get_template("dedupe.html").render(title=title, clusters=view))


def write_pairs_csv(clusters: list[Cluster], out: Path) -> None:
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["cluster", "a", "b", "similarity_score", "why"])
        for i, c in enumerate(clusters, 1):
            for p in c.pairs:
                w.writerow([i, _source(c, p.a), _source(c, p.b), f"{p.similarity_score:.4f}",
                            _why(p.explanation)])


def _why(explanation: Mapping[str, object] | None) -> str:
    """One line a reviewer reads: the tier, the inliers, how much of each image matched."""
    if not explanation:
        return ""
    e = explanation
    return (f"{e.get('tier')} ({e.get('evidence')}), {e.get('inliers')} inliers, "
            f"covers {_percent(e.get('query_coverage'))} of a / "
            f"{_percent(e.get('reference_coverage'))} of b")


def _percent(share: object) -> str:
    return f"{100 * share:.0f} %" if isinstance(share, float | int) else "?"


def _name(cluster: Cluster, media_id: str) -> str:
    return next((m.name or m.id for m in cluster.members if m.id == media_id), media_id)


def _source(cluster: Cluster, media_id: str) -> str:
    return next((m.source or m.id for m in cluster.members if m.id == media_id), media_id)
