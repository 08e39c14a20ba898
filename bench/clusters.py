"""Kept clusters at catalog scale: adding items with their edges, and serving a cluster page.

A synthetic catalog of `--items` media rows (placeholder fingerprints, never decoded: this
measures the edge and cluster upkeep, not fingerprinting or search) where a share of the
items sit in clusters of 2-6 joined by random edges. Then `--add` new items arrive one at a
time, each with 1-3 edges to random existing items (one transaction per item, as the service
keeps them), and the first cluster pages are served through the HTTP app
(`GET /v1/duplicates/clusters`).
Prints a markdown table.

    python bench/clusters.py [--items 100000] [--add 1000] [--database-url URL]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

# bench/http.py would shadow the standard library's http package that the web stack imports
sys.path = [p for p in sys.path if Path(p).resolve() != Path(__file__).parent.resolve()]

import numpy as np  # noqa: E402 - after the path fix above
from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import insert, select, text  # noqa: E402

from medialayer.api import create_app  # noqa: E402
from medialayer.catalog import edges  # noqa: E402
from medialayer.catalog.models import Media  # noqa: E402
from medialayer.catalog.review_models import ClusterMember, ClusterRow, MatchEdge  # noqa: E402
from medialayer.config import Settings  # noqa: E402
from medialayer.keys import create_key  # noqa: E402
from medialayer.kinds.base import Match  # noqa: E402
from medialayer.service import MediaLayer  # noqa: E402

TENANT = "bench"


def fill(ml: MediaLayer, items: int, clustered: float, rng: np.random.Generator) -> list[int]:
    """`items` media rows, and clusters of 2-6 (chains of high edges) among a `clustered` share
    of them, written in bulk as the kept state would be; their seqs."""
    rows = [{"id": str(uuid.uuid4()), "tenant": TENANT, "media_type": "image",
             "name": f"item-{i}", "metadata_": {"seller": f"s{i % 50}"}, "fingerprint": b"-",
             "fingerprint_version": 1} for i in range(items)]
    with ml.store.session.begin() as s:
        for start in range(0, items, 5000):
            s.execute(insert(Media), rows[start:start + 5000])
    with ml.store.session() as s:
        seqs = sorted(s.scalars(select(Media.seq)))
    pool = [int(x) for x in rng.permutation(seqs)[: int(items * clustered)]]
    groups, at = [], 0
    while at < len(pool) - 6:
        size = int(rng.integers(2, 7))
        groups.append(sorted(pool[at:at + size]))
        at += size
    with ml.store.session.begin() as s:
        s.execute(insert(ClusterRow), [{"id": i + 1, "tenant": TENANT, "media_type": "image",
                                        "level": level, "size": len(g), "top_score": 0.9}
                                       for level in edges.LEVELS
                                       for i, g in enumerate(groups, len(groups) * (
                                           level == "high"))])
        s.execute(insert(ClusterMember), [
            {"level": level, "media_seq": q, "cluster_id": i + 1}
            for level in edges.LEVELS
            for i, g in enumerate(groups, len(groups) * (level == "high")) for q in g])
        if s.get_bind().dialect.name == "postgresql":  # ids were given: move the identity on
            s.execute(text("select setval(pg_get_serial_sequence('clusters', 'id'), "
                           "(select max(id) from clusters))"))
        s.execute(insert(MatchEdge), [
            {"a_seq": a, "b_seq": b, "tenant": TENANT, "media_type": "image", "score": 0.9,
             "confidence": "high", "dismissed": False}
            for g in groups for a, b in zip(g, g[1:], strict=False)])
    return seqs


def cpu_and_wall(fn: Callable[[], object]) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - cpu, time.perf_counter() - wall


def add_items(ml: MediaLayer, seqs: list[int], count: int, rng: np.random.Generator
              ) -> list[tuple[float, float]]:
    """(CPU s, wall s) per item: insert its row, then keep its edges (a transaction each)."""
    timings = []
    for i in range(count):
        targets = [int(t) for t in rng.choice(seqs, int(rng.integers(1, 4)), replace=False)]

        def add(i: int = i, targets: list[int] = targets) -> None:
            with ml.store.session.begin() as s:
                seq = s.execute(insert(Media).returning(Media.seq), [{
                    "id": str(uuid.uuid4()), "tenant": TENANT, "media_type": "image",
                    "name": f"new-{i}", "metadata_": {}, "fingerprint": b"-",
                    "fingerprint_version": 1}]).scalar_one()
            ml.review.keep(TENANT, "image", seq, [Match(t, 0.9) for t in targets])
            seqs.append(seq)

        timings.append(cpu_and_wall(add))
    return timings


def serve_pages(ml: MediaLayer, data_dir: Path, pages: int) -> list[tuple[float, float]]:
    """(CPU s, wall s) per `GET /v1/duplicates/clusters` page of 50, following the cursor."""
    settings = Settings(data_dir=str(data_dir), run_jobs=False)
    _, key = create_key(ml.store, TENANT, ["review"])
    client = TestClient(create_app(settings, ml))  # no lifespan: the indexes are not needed
    timings, answers = [], []
    for _ in range(pages):
        cursor = answers[-1].json()["next_cursor"] if answers else None
        params = {"limit": "50", **({"cursor": cursor} if cursor else {})}
        timings.append(cpu_and_wall(lambda p=params: answers.append(client.get(
            "/v1/duplicates/clusters", params=p, headers={"X-API-Key": key}))))
        assert answers[-1].status_code == 200, answers[-1].text
    return timings


def row(what: str, timings: list[tuple[float, float]]) -> str:
    cpu = [c for c, _ in timings]
    wall = [w for _, w in timings]
    return (f"| {what} | {len(timings)} | {sum(wall):.2f} | {1000 * statistics.median(cpu):.1f}"
            f" | {1000 * statistics.median(wall):.1f} | "
            f"{1000 * float(np.quantile(wall, 0.95)):.1f} | {1000 * max(wall):.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--add", type=int, default=1000)
    parser.add_argument("--clustered", type=float, default=0.3,
                        help="Share of the catalog in clusters.")
    parser.add_argument("--pages", type=int, default=40)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    with tempfile.TemporaryDirectory() as tmp:
        ml = MediaLayer(tmp, database_url=args.database_url, tenant=TENANT)
        seqs = fill(ml, args.items, args.clustered, rng)
        with ml.store.session() as s:
            before = edges.count(s, TENANT, "image", "medium")
        added = add_items(ml, seqs, args.add, rng)
        pages = serve_pages(ml, Path(tmp), args.pages)
        with ml.store.session() as s:
            after = edges.count(s, TENANT, "image", "medium")
        ml.close()
    backend = "PostgreSQL" if args.database_url else "SQLite"
    print(f"\n{args.items} items ({backend}); clusters {before} before adding, {after} after\n",
          file=sys.stderr)
    print("| what | count | total wall s | median CPU ms | median wall ms | p95 wall ms "
          "| max wall ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(row("add an item with 1-3 edges", added))
    print(row("GET /v1/duplicates/clusters (50 a page)", pages))


if __name__ == "__main__":
    main()
