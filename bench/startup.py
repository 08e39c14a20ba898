"""Start-up: time and peak memory from opening a catalog to a ready index, and tenant cost.

    .venv/bin/python bench/startup.py [--items 1000000] [--keypoint-items 20000]
        [--postgres postgresql://postgres@127.0.0.1:5432/test] [--tenant-items 100000]
        [--tiers global,keypoint] [--starts 1] [--no-tenants] [--ready-only] [--keep DIR]

1. Global tier: `--items` synthetic image rows (random 64-bit codes, no keypoints) are written
   to a fresh SQLite catalog (and a fresh schema of `--postgres`, if given); a new process opens
   the catalog and builds the index as `medialayer serve` does: the code tier from the code
   columns (`MediaLayer.warm_up(wait=False)`, after which the service takes requests), then the
   keypoint tier from the stored fingerprints (`MediaLayer.warm_up()`), each on its own row.
   Printed: items, seconds, items per second, CPU seconds, the PostgreSQL backends' CPU seconds
   (the server's share, not in the process's), the load average, the process's peak RSS
   (VmHWM) and RSS added since the start, the index's bytes. Per tier: the keypoint row counts
   from the end of the code tier.
2. Keypoint tier, separately: `--keypoint-items` rows with 256 random ORB-sized descriptors.
3. Tenants: the same number of items (`--tenant-items`, with keypoints) indexed as 1 tenant, and
   as tenants of 100 items each, in a fresh process each: the index's bytes and the RSS added.

Every measurement runs in a child process of its own, so peaks do not mix.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

DESCRIPTORS = 256
BATCH = 20_000


def cpu_seconds() -> float:
    """This process's user + system CPU time: on a shared, loaded machine a steadier measure of
    the work than wall time."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def status_mb(field_name: str) -> float:
    for line in Path(f"/proc/{os.getpid()}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def blob(code: int, mirror: int, points: np.ndarray, descriptors: np.ndarray) -> bytes:
    from medialayer.kinds.image import Features, ImageFingerprint, encode

    return encode(ImageFingerprint(code, Features(points, descriptors), (mirror,)))


def populate(url: str, items: int, keypoints: bool, tenants: int = 1) -> None:
    """Write `items` synthetic image rows (and their codes) straight into the catalog."""
    from medialayer.catalog.models import Media, MediaCode
    from medialayer.catalog.store import SqlCatalogStore
    from medialayer.kinds.image_search import ImageKind

    store = SqlCatalogStore(url)  # creates the schema
    rng = np.random.default_rng(7)
    now = datetime.now(UTC)
    empty_points, empty_desc = np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8)
    with store.engine.begin() as conn:
        for start in range(0, items, BATCH):
            n = min(BATCH, items - start)
            codes = rng.integers(0, 2**63, size=(n, 2), dtype=np.int64)
            rows, code_rows = [], []
            for i in range(n):
                seq = start + i + 1
                if keypoints:
                    points = rng.uniform(0, 480, (DESCRIPTORS, 2)).astype(np.float32)
                    desc = rng.integers(0, 256, (DESCRIPTORS, 32), dtype=np.uint8)
                else:
                    points, desc = empty_points, empty_desc
                rows.append({"seq": seq, "id": str(uuid.UUID(int=seq)),
                             "tenant": f"t{seq % tenants}", "media_type": "image",
                             "metadata": {}, "created_at": now,
                             "fingerprint_version": ImageKind.version,
                             "fingerprint": blob(int(codes[i, 0]), int(codes[i, 1]), points,
                                                 desc)})
                code_rows += [{"media_seq": seq, "position": p, "code": int(codes[i, p])}
                              for p in (0, 1)]
            conn.execute(sa.insert(Media.__table__), rows)
            conn.execute(sa.insert(MediaCode.__table__), code_rows)
    if store.engine.dialect.name == "postgresql":  # as autovacuum would, before any start
        with store.engine.begin() as conn:
            conn.execute(sa.text("analyze media"))
            conn.execute(sa.text("analyze media_codes"))
    store.engine.dispose()


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of another process on this machine (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ServerCpu:
    """CPU seconds of the PostgreSQL backends serving this process (found by a per-run
    application name): the server's share of a start-up, which the process's own CPU lacks.
    A local server only; nothing for SQLite, whose work is in the process's own CPU."""

    def __init__(self, url: str) -> None:
        self.name = f"ml-startup-{uuid.uuid4().hex[:8]}"
        postgres = url.startswith("postgresql")
        self.url = f"{url}{'&' if '?' in url else '?'}application_name={self.name}" \
            if postgres else url
        self._engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://",
                                                    1)) if postgres else None
        self._seen: dict[int, float] = {}

    def take(self) -> float | None:
        """CPU of the backends since the last call (None for SQLite)."""
        if self._engine is None:
            return None
        with self._engine.connect() as conn:
            pids = conn.execute(sa.text("select pid from pg_stat_activity "
                                        "where application_name = :n"), {"n": self.name})
            now = {pid: process_cpu(pid) for pid in pids.scalars()}
        spent = sum(cpu - self._seen.get(pid, 0.0) for pid, cpu in now.items())
        self._seen.update(now)
        return spent


def measure_start(url: str, keypoints: bool = True) -> dict[str, Any]:
    """In this (fresh) process: open the catalog and build every index, as `serve` does, one
    stage at a time: open (migrations), the other kinds (their imports; no rows), the image
    code tier from the code columns, which together make the service ready
    (`warm_up(wait=False)`); then, with `keypoints`, the keypoint tier behind it (`warm_up()`,
    searches wait for it)."""
    from medialayer.kinds import kinds
    from medialayer.service import MediaLayer

    server = ServerCpu(url)
    before = status_mb("VmRSS")
    stages: list[dict[str, Any]] = []
    clock = [time.perf_counter(), cpu_seconds()]

    def stage(name: str, items: int) -> None:
        now = [time.perf_counter(), cpu_seconds()]
        stages.append({"stage": name, "items": items, "seconds": now[0] - clock[0],
                       "cpu": now[1] - clock[1], "db_cpu": server.take(),
                       "load": os.getloadavg()[0], "peak_mb": status_mb("VmHWM"),
                       "added_mb": status_mb("VmRSS") - before,
                       "index_mb": ml.index_sizes().get("image", (0, 0))[1] / 2**20})
        clock[:] = now

    ml = MediaLayer(Path(tempfile.gettempdir()), database_url=server.url)
    stage("open catalog", 0)
    for other in kinds():  # first, so the image kind's background load overlaps none of it
        if other != "image":
            ml.indexes.prepare(other)
    stage("other kinds (imports, no rows)", 0)
    ml.warm_up(wait=False)
    items = ml.index_sizes()["image"][0]
    stage("global tier (image codes)", items)
    ready = {"stage": "start to ready", "items": items,
             **{k: sum(s[k] for s in stages) for k in ("seconds", "cpu")},
             "db_cpu": None if stages[-1]["db_cpu"] is None else
             sum(s["db_cpu"] for s in stages), "load": stages[-1]["load"],
             **{k: stages[-1][k] for k in ("peak_mb", "added_mb", "index_mb")}}
    if keypoints:
        ml.warm_up()
        stage("keypoint tier, after ready", items)
    ml.close()
    return {"stages": [*stages[:3], ready, *stages[3:]]}


def measure_tenants(items: int, per_tenant: int) -> dict[str, Any]:
    """In this (fresh) process: `items` items with keypoints in tenants of `per_tenant`."""
    from medialayer.kinds.image import Features, ImageFingerprint
    from medialayer.kinds.image_search import ImageIndex

    rng = np.random.default_rng(11)
    before = status_mb("VmRSS")
    index = ImageIndex(lambda keys, windows=None: {})
    for start in range(0, items, BATCH):
        n = min(BATCH, items - start)
        index.upsert_many([
            (start + i + 1, f"t{(start + i) // per_tenant}", ImageFingerprint(
                int(rng.integers(0, 2**63)),
                Features(rng.uniform(0, 480, (DESCRIPTORS, 2)).astype(np.float32),
                         rng.integers(0, 256, (DESCRIPTORS, 32), dtype=np.uint8))))
            for i in range(n)])
    index.prepare()
    return {"items": len(index), "tenants": -(-items // per_tenant),
            "index_mb": index.nbytes() / 2**20, "added_mb": status_mb("VmRSS") - before,
            "peak_mb": status_mb("VmHWM")}


def child(*args: str) -> dict[str, Any]:
    # -P: not this folder first on the path, where http.py (bench/http.py) hides the stdlib's
    out = subprocess.run([sys.executable, "-P", __file__, *args], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def postgres_schema(url: str, schema: str) -> str:
    with sa.create_engine(url).begin() as conn:
        conn.execute(sa.text(f'create schema if not exists "{schema}"'))
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}"


def drop_postgres(url: str, scoped: str) -> None:
    schema = scoped.rsplit("%3D", 1)[1]
    with sa.create_engine(url).begin() as conn:
        conn.execute(sa.text(f'drop schema "{schema}" cascade'))


def holds(url: str, items: int) -> bool:
    """Whether the catalog at `url` holds `items` rows already (a kept catalog)."""
    try:
        with sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1)
                              ).connect() as conn:
            return conn.execute(sa.text("select count(*) from media")).scalar() == items
    except sa.exc.SQLAlchemyError:
        return False


def catalogs(args: argparse.Namespace, folder: Path, name: str) -> list[tuple[str, str]]:
    """The catalogs of one tier: kept ones (--keep) are named by tier and size."""
    name = f"{name}_{args.items if name == 'global' else args.keypoint_items}" if args.keep \
        else name
    found = [("SQLite", f"sqlite:///{folder / name}.db")]
    if args.postgres:
        schema = f"ml_startup_{name}" if args.keep else f"ml_startup_{uuid.uuid4().hex[:10]}"
        found.append(("PostgreSQL", postgres_schema(args.postgres, schema)))
    return found


def row(tier: str, db: str, m: dict[str, Any]) -> str:
    rate = (f"{m['items'] / m['seconds']:,.0f} | {m['cpu']:.2f} s "
            f"| {m['items'] / m['cpu']:,.0f}") if m["items"] else f"- | {m['cpu']:.2f} s | -"
    db_cpu = "-" if m["db_cpu"] is None else f"{m['db_cpu']:.2f} s"
    return (f"| {tier} | {db} | {m['stage']} | {m['items']:,} | {m['seconds']:.2f} s | {rate} "
            f"| {db_cpu} | {m['load']:.1f} | {m['peak_mb']:,.0f} MB | {m['added_mb']:,.0f} MB "
            f"| {m['index_mb']:,.1f} MB |")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1].startswith("--child-"):
        result = {"--child-start": lambda: measure_start(sys.argv[2], sys.argv[3] == "all"),
                  "--child-tenants": lambda: measure_tenants(int(sys.argv[2]),
                                                             int(sys.argv[3]))}[sys.argv[1]]()
        print(json.dumps(result))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--keypoint-items", type=int, default=20_000)
    ap.add_argument("--tenant-items", type=int, default=100_000)
    ap.add_argument("--postgres", help="a PostgreSQL URL (a fresh schema is made and dropped)")
    ap.add_argument("--tiers", default="global,keypoint", help="catalogs to start from")
    ap.add_argument("--starts", type=int, default=1, help="start-ups measured per catalog")
    ap.add_argument("--no-tenants", action="store_true", help="skip the tenant comparison")
    ap.add_argument("--ready-only", action="store_true",
                    help="global catalog: stop at ready (no keypoint tier behind it)")
    ap.add_argument("--keep", type=Path, help="keep the catalogs (SQLite files here, PostgreSQL "
                    "schemas named by tier and size) and reuse them on the next run")
    args = ap.parse_args()
    print("| catalog | database | stage | items | wall | items/s | CPU | items per CPU-s "
          "| DB server CPU | load | peak RSS | RSS added | index |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for tier, items, keypoints in (("global", args.items, False),
                                       ("keypoint", args.keypoint_items, True)):
            if tier not in args.tiers.split(","):
                continue
            for db, url in catalogs(args, folder, tier):
                if not (args.keep and holds(url, items)):
                    populate(url, items, keypoints)
                for _ in range(args.starts):
                    stages = "ready" if args.ready_only and tier == "global" else "all"
                    for m in child("--child-start", url, stages)["stages"]:
                        print(row(tier, db, m), flush=True)
                if db == "PostgreSQL" and not args.keep:
                    drop_postgres(args.postgres, url)
    if args.no_tenants:
        return
    print("\n| tenants x items | index | RSS added | peak RSS |")
    print("| --- | --- | --- | --- |")
    for per_tenant in (args.tenant_items, 100):
        r = child("--child-tenants", str(args.tenant_items), str(per_tenant))
        print(f"| {r['tenants']:,} x {per_tenant:,} | {r['index_mb']:,.1f} MB "
              f"| {r['added_mb']:,.0f} MB | {r['peak_mb']:,.0f} MB |", flush=True)

if __name__ == "__main__":
    main()
