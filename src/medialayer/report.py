"""The dedupe report: a self-contained HTML page of clusters with thumbnails, and a pairs CSV.

People judge duplicates faster by looking than by reading ids, so every member is shown as an
inline thumbnail (data URI): the file can be mailed or archived without the images beside it.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape
from PIL import Image

from medialayer.csvfile import write_csv
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
             "pairs": [{"a": _name(c, a), "b": _name(c, b), "score": s} for a, b, s in c.pairs]}
            for c in clusters]
    out.write_text(env.get_template("dedupe.html").render(title=title, clusters=view))


def write_pairs_csv(clusters: list[Cluster], out: Path) -> None:
    write_csv(out, ["cluster", "a", "b", "similarity_score"],
              ([i, _source(c, a), _source(c, b), f"{s:.4f}"]
               for i, c in enumerate(clusters, 1) for a, b, s in c.pairs))


def _name(cluster: Cluster, media_id: str) -> str:
    return next((m.name or m.id for m in cluster.members if m.id == media_id), media_id)


def _source(cluster: Cluster, media_id: str) -> str:
    return next((m.source or m.id for m in cluster.members if m.id == media_id), media_id)
