"""The dedupe report: a self-contained HTML page of clusters with thumbnails, and a pairs CSV.

People judge duplicates faster by looking than by reading ids, so every member is shown as an
inline thumbnail (data URI): the file can be mailed or archived without the images beside it.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape

from medialayer.catalog.store import MediaRecord
from medialayer.csvfile import write_csv
from medialayer.errors import MediaLayerError
from medialayer.kinds import get_kind
from medialayer.results import Cluster

THUMB_SIDE = 180


def thumbnail_uri(media: MediaRecord) -> str | None:
    """A small JPEG data URI of the member's file, drawn by its kind, or None if the file can't
    be read or the kind has no picture."""
    if not media.source:
        return None
    try:
        jpeg = get_kind(media.media_type).thumbnail(Path(media.source), THUMB_SIDE)
    except (OSError, MediaLayerError):
        return None
    if jpeg is None:
        return None
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()


def write_html(clusters: list[Cluster], out: Path, title: str) -> None:
    env = Environment(loader=PackageLoader("medialayer", "templates"),
                      autoescape=select_autoescape(["html"]))
    view = [{"members": [{"name": m.name, "id": m.id, "source": m.source,
                          "thumb": thumbnail_uri(m)} for m in c.members],
             "pairs": [{"a": _name(c, p.a), "b": _name(c, p.b), "score": p.similarity_score,
                        "why": _why(p.explanation)} for p in c.pairs]}
            for c in clusters]
    out.write_text(env.get_template("dedupe.html").render(title=title, clusters=view))


def write_pairs_csv(clusters: list[Cluster], out: Path) -> None:
    write_csv(out, ["cluster", "a", "b", "similarity_score", "why"],
              ([i, _source(c, p.a), _source(c, p.b), f"{p.similarity_score:.4f}",
                _why(p.explanation)]
               for i, c in enumerate(clusters, 1) for p in c.pairs))


def _why(explanation: Mapping[str, object] | None) -> str:
    """One line a reviewer reads: the tier (and its evidence), the inliers, how much of each
    item matched; a kind's explanation may have only some of these."""
    if not explanation:
        return ""
    e = explanation
    parts = []
    if "tier" in e:
        parts.append(f"{e['tier']} ({e['evidence']})" if "evidence" in e else str(e["tier"]))
    if "inliers" in e:
        parts.append(f"{e['inliers']} inliers")
    if "query_coverage" in e and "reference_coverage" in e:
        parts.append(f"covers {_percent(e['query_coverage'])} of a / "
                     f"{_percent(e['reference_coverage'])} of b")
    spans_a, spans_b = e.get("query_spans"), e.get("reference_spans")
    if isinstance(spans_a, list) and isinstance(spans_b, list):
        parts += [f"a {_span(a)} = b {_span(b)}" for a, b in zip(spans_a, spans_b, strict=False)]
    return ", ".join(parts)


def _span(span: object) -> str:
    """`[start, end]` seconds as `12.0-18.5 s`."""
    if isinstance(span, list) and len(span) == 2:
        return f"{span[0]:.1f}-{span[1]:.1f} s"
    return "?"


def _percent(share: object) -> str:
    return f"{100 * share:.0f} %" if isinstance(share, float | int) else "?"


def _name(cluster: Cluster, media_id: str) -> str:
    return next((m.name or m.id for m in cluster.members if m.id == media_id), media_id)


def _source(cluster: Cluster, media_id: str) -> str:
    return next((m.source or m.id for m in cluster.members if m.id == media_id), media_id)
