"""Scale: the image index's global tier at millions of items, built from the catalog or mapped
from a snapshot by several workers.

    .venv/bin/python bench/scale.py --items 1000000 [--items 10000000] [--workers 2]
        [--bands 4] [--queries 2000] [--keypoints 0] [--dir /tmp/medialayer-scale]

For each `--items` N (synthetic rows: random 64-bit codes in 10 tenants, stored fingerprints
without keypoints, written straight into an SQLite catalog under `--dir`, kept for the next
run), each step in a fresh process of its own:

1. **from the catalog**: open the catalog and build the image index's global tier from the code
   columns, as a worker without snapshots does (`IndexRegistry.prepare`), then search it.
2. **snapshot write**: `MediaLayer.write_snapshots` (what `medialayer snapshot` runs) with no
   snapshot yet (from the catalog), then `--changes` rows are added and a tenth as many deleted
   (the feed a worker replays), then written again (from the first snapshot and that feed).
3. **workers from the snapshot**: one process alone, then `--workers` processes at once, each
   opens the catalog, maps the snapshot and replays the feed since (ready), then searches; with
   all of them alive each reads its RSS and PSS (/proc/self/smaps_rollup) and those of the
   snapshot's mapped files (/proc/self/smaps).

"Ready" is from the process's first line (before importing MediaLayer) to the image index's
global tier answering ("index": from the catalog opened to ready, the part a snapshot
changes): the keypoint tier that loads behind it (the catalog's stored fingerprints, no
keypoints by default) is stopped before searching. With `--keypoints K` each row stores K
random descriptors at random positions (the index keeps at most `INDEXED` of an item's, so
K = INDEXED costs what a real image does), the catalog is a separate one, and "ready" is to
both tiers answering (`IndexRegistry.wait`, then its pending work folded): from the catalog
that loads every row's keypoints, from a snapshot they are mapped. Either way the searches
measure the global tier alone: radius 8 around a stored code with 0-8 bits flipped and its
mirror code, then the tenant filter, one query at a time in-process (`ImageIndex` does this
on every search). Wall times on a shared machine vary; CPU seconds are the process's own
(user + system).
"""

from __future__ import annotations

import argparse
import json
import resource
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

START = time.perf_counter()

import numpy as np  # noqa: E402  (after the clock: imports count towards ready)

TENANTS = 10
BATCH = 100_000


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory(snapshot_dir: str | None = None) -> dict[str, float]:
    """This process's RSS and PSS (MB), and those of the files mapped from `snapshot_dir`."""
    found = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]:
        name, value, *_ = line.split()
        if name in ("Rss:", "Pss:"):
            found[name[:-1].lower() + "_mb"] = int(value) / 1024
    mapped = {"Rss:": 0, "Pss:": 0}
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if "-" in fields[0] and len(fields) >= 5:
            inside = bool(snapshot_dir) and len(fields) >= 6 and fields[5].startswith(
                str(snapshot_dir))
        elif inside and fields[0] in mapped:
            mapped[fields[0]] += int(fields[1])
    found["mapped_rss_mb"] = mapped["Rss:"] / 1024
    found["mapped_pss_mb"] = mapped["Pss:"] / 1024
    return found


def catalog_path(folder: Path, items: int, keypoints: int) -> Path:
    return folder / (f"catalog-{items}-k{keypoints}" if keypoints else f"catalog-{items}"
                     ) / "catalog.db"


def populate(path: Path, items: int, keypoints: int, tenant: str | None = None) -> None:
    """`items` image rows with random codes, written once (kept for the next run); their
    codes saved beside the catalog for the searching processes. The rows spread over
    `TENANTS` tenants, or all go into `tenant` (distractors for a corpus indexed there)."""
    codes_file = path.parent / "codes.npy"
    if path.exists() and codes_file.exists():
        return
    from medialayer.catalog.store import SqlCatalogStore
    from medialayer.kinds.image import Features, ImageFingerprint, encode
    from medialayer.kinds.image_search import ImageKind

    path.parent.mkdir(parents=True, exist_ok=True)
    SqlCatalogStore(f"sqlite:///{path}").engine.dispose()  # the schema
    rng = np.random.default_rng(7)
    codes = rng.integers(0, 2**64, size=(items, 2), dtype=np.uint64)
    empty = Features(np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8))

    def features() -> Features:
        if not keypoints:
            return empty
        return Features((rng.random((keypoints, 2)) * (480, 360)).astype(np.float32),
                        rng.integers(0, 256, (keypoints, 32), dtype=np.uint8), (480, 360))

    now = "2026-12-02 00:00:00.000000"
    db = sqlite3.connect(path)
    db.execute("PRAGMA synchronous=OFF")
    for start in range(0, items, BATCH):
        block = codes[start:start + BATCH]
        seqs = range(start + 1, start + 1 + len(block))
        db.executemany(
            "insert into media (seq, id, tenant, media_type, metadata, created_at, "
            "fingerprint, fingerprint_version) values (?, ?, ?, 'image', '{}', ?, ?, ?)",
            ((seq, str(uuid.UUID(int=seq)), tenant or f"t{seq % TENANTS}", now,
              encode(ImageFingerprint(int(c), features(), (int(m),))), ImageKind.version)
             for seq, (c, m) in zip(seqs, block.tolist(), strict=True)))
        signed = block.view(np.int64)
        db.executemany("insert into media_codes (media_seq, position, code) values (?, ?, ?)",
                       ((seq, p, int(signed[i, p])) for i, seq in enumerate(seqs)
                        for p in (0, 1)))
        db.commit()
    db.close()
    np.save(codes_file, codes)


def change_feed(path: Path, added: int, deleted: int) -> None:
    """Rows added and deleted after the first snapshot, through the catalog (as writers do)."""
    from medialayer.catalog.store import NewMedia
    from medialayer.kinds.image import Features, ImageFingerprint
    from medialayer.kinds.image_search import ImageKind
    from medialayer.service import MediaLayer

    kind = ImageKind()
    ml = MediaLayer(path.parent)
    rng = np.random.default_rng(13)
    empty = Features(np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8))
    for start in range(0, added, 5000):
        ml.store.add_many([NewMedia(
            tenant=f"t{i % TENANTS}", media_type="image", fingerprint_version=kind.version,
            fingerprint=kind.encode(ImageFingerprint(int(c), empty, (int(c) ^ 1,))))
            for i, c in enumerate(rng.integers(0, 2**63, min(5000, added - start)))])
    present = ml.store.records(rng.choice(np.arange(1, 10 * deleted + 1000), 2 * deleted + 100,
                                          replace=False).tolist())  # a rerun finds some gone
    for record in list(present.values())[:deleted]:
        ml.store.delete(record.tenant, record.id)
    ml.close()


def searches(index: Any, codes: np.ndarray, queries: int) -> dict[str, float]:
    """p50/p99 (ms) of the global tier, wall and this thread's CPU time (the machine is shared:
    a query that waits for a core shows in the wall p99 only): radius 8 around a stored code
    with 0-8 bits flipped and its mirror code, then the tenant filter. The first 100 queries
    (probe plans, first touches) are not counted."""
    rng = np.random.default_rng(21)
    picks = rng.integers(0, len(codes), queries + 100)
    flips = [rng.choice(64, int(k), replace=False) for k in rng.integers(0, 9, queries + 100)]
    walls, cpus, found = [], [], 0
    for i, bits in zip(picks.tolist(), flips, strict=True):
        q = int(codes[i, 0]) ^ sum(1 << int(b) for b in bits)
        t0, c0 = time.perf_counter(), time.thread_time()
        hits = index.codes.radius_many([q, int(codes[i, 1])], 8)
        keys = np.fromiter((k for k, _ in hits), np.int64, len(hits))
        mine = index.tenants.mask(keys, f"t{(i + 1) % TENANTS}")  # row i has seq i + 1
        walls.append(time.perf_counter() - t0)
        cpus.append(time.thread_time() - c0)
        found += int(mine.sum())
    wall, cpu = np.array(walls[100:]) * 1000, np.array(cpus[100:]) * 1000
    return {"p50_ms": float(np.percentile(wall, 50)), "p99_ms": float(np.percentile(wall, 99)),
            "cpu_p50_ms": float(np.percentile(cpu, 50)),
            "cpu_p99_ms": float(np.percentile(cpu, 99)), "found": found / (queries + 100)}


def measure_worker(path: Path, snapshot_dir: str | None, bands: int, queries: int,
                   together: bool, keypoints: bool) -> None:
    """In this fresh process: ready (with `keypoints`, both tiers), then searches, then
    memory; with `together`, memory is read only once the parent says every worker is
    searching done (all mapped at once)."""
    from medialayer.service import MediaLayer

    ml = MediaLayer(path.parent, bands=bands, snapshot_dir=snapshot_dir)
    opened = time.perf_counter(), cpu_seconds()
    ml.indexes.prepare("image")
    if keypoints:
        ml.indexes.wait("image")
        ml.indexes.prepare("image")
    ready = {"ready_s": time.perf_counter() - START, "ready_cpu": cpu_seconds(),
             "index_s": time.perf_counter() - opened[0], "index_cpu": cpu_seconds() - opened[1]}
    entry = ml.indexes.get("image")
    ml.indexes.close()  # the keypoint tier behind it: not measured here
    result = {**ready, "items": len(entry.index), "index_mb": entry.index.nbytes() / 2**20,
              **searches(entry.index, np.load(path.parent / "codes.npy"), queries)}
    if together:
        print(json.dumps({"searched": True}), flush=True)
        sys.stdin.readline()
    result |= memory(snapshot_dir) | {"peak_mb": peak_mb()}
    print(json.dumps(result), flush=True)
    if together:
        sys.stdin.readline()


def measure_write(path: Path, snapshot_dir: str, bands: int) -> None:
    from medialayer.service import MediaLayer

    ml = MediaLayer(path.parent, bands=bands, snapshot_dir=snapshot_dir)
    t0, c0 = time.perf_counter(), cpu_seconds()
    data = ml.write_snapshots("image")["image"]
    ml.close()
    size = sum(f.stat().st_size for f in data.iterdir())
    print(json.dumps({"write_s": time.perf_counter() - t0, "write_cpu": cpu_seconds() - c0,
                      "disk_mb": size / 2**20, "peak_mb": peak_mb()}), flush=True)


def measure_map(snapshot_dir: str, path: Path) -> None:
    """Mapping and checking the files alone (the page cache warm, as after a write)."""
    from sqlalchemy.engine import make_url

    from medialayer.index.snapshot import Snapshots
    from medialayer.kinds.image_search import ImageKind
    from medialayer.service import _catalog_name

    catalog = _catalog_name(make_url(f"sqlite:///{path}"))
    t0, c0 = time.perf_counter(), cpu_seconds()
    found = Snapshots(snapshot_dir, catalog, 86400).read("image", ImageKind.version)
    print(json.dumps({"map_s": time.perf_counter() - t0, "map_cpu": cpu_seconds() - c0,
                      "mapped": found is not None}), flush=True)


def child(*args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-P", __file__, *args], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def workers_together(args: list[str], count: int) -> list[dict[str, Any]]:
    """`count` workers at once; memory read when all have searched, so all are mapped."""
    log = open(Path(args[1]).parent / "workers.log", "a")  # noqa: SIM115 (closed below)
    procs = [subprocess.Popen([sys.executable, "-P", __file__, *args, "--together"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                              text=True)
             for _ in range(count)]
    try:
        for p in procs:
            json.loads(p.stdout.readline())  # type: ignore[union-attr]
        results = []
        for p in procs:
            p.stdin.write("go\n")  # type: ignore[union-attr]
            p.stdin.flush()  # type: ignore[union-attr]
            results.append(json.loads(p.stdout.readline()))  # type: ignore[union-attr]
        for p in procs:
            p.communicate("done\n", timeout=600)
        return results
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        log.close()


def row(items: int, stage: str, r: dict[str, Any], keys: tuple[str, str], note: str = "") -> str:
    times = " | ".join(f"{r[k]:.2f} s" if k in r else "-"
                       for k in (*keys, "index_s", "index_cpu"))
    mem = " | ".join(f"{r[k]:,.0f}" if k in r else "-" for k in
                     ("rss_mb", "pss_mb", "mapped_rss_mb", "mapped_pss_mb", "peak_mb"))
    search = " | ".join(f"{r[a]:.3f} / {r[b]:.3f}" if a in r else "-"
                        for a, b in (("p50_ms", "p99_ms"), ("cpu_p50_ms", "cpu_p99_ms")))
    return f"| {items:,} | {stage} | {times} | {mem} | {search} | {note} |"


def run(args: argparse.Namespace, items: int) -> None:
    path = catalog_path(Path(args.dir), items, args.keypoints)
    t0 = time.perf_counter()
    child("--child-populate", str(path), str(items), str(args.keypoints))
    print(f"<!-- catalog of {items:,} rows ready after {time.perf_counter() - t0:.0f} s: "
          f"{path.stat().st_size / 2**20:,.0f} MB -->", flush=True)
    snapshot_dir = str(path.parent / "snapshots")
    subprocess.run(["rm", "-rf", snapshot_dir], check=True)
    bands = str(args.bands)
    common = [str(path), bands, str(args.queries), str(args.keypoints)]
    built = child("--child-worker", *common, "")
    print(row(items, "worker from the catalog: ready, search", built, ("ready_s", "ready_cpu"),
              f"{built['index_mb']:,.0f} MB index"), flush=True)
    first = child("--child-write", str(path), snapshot_dir, bands)
    print(row(items, "snapshot write, from the catalog", first, ("write_s", "write_cpu"),
              f"{first['disk_mb']:,.0f} MB on disk"), flush=True)
    mapped = child("--child-map", snapshot_dir, str(path))
    print(row(items, "map and check the files", mapped, ("map_s", "map_cpu")), flush=True)
    changes = max(1, items * args.changes_per_mille // 1000)
    child("--child-feed", str(path), str(changes), str(max(1, changes // 10)))
    feed = f"replayed {changes:,} added, {max(1, changes // 10):,} deleted"
    alone = child("--child-worker", *common, snapshot_dir)
    print(row(items, "worker from the snapshot: ready, search", alone, ("ready_s", "ready_cpu"),
              feed), flush=True)
    for i, w in enumerate(workers_together(["--child-worker", *common, snapshot_dir],
                                           args.workers)):
        print(row(items, f"worker {i + 1} of {args.workers} at once from the snapshot", w,
                  ("ready_s", "ready_cpu"), feed), flush=True)
    again = child("--child-write", str(path), snapshot_dir, bands)
    print(row(items, "snapshot write, from the snapshot and feed", again,
              ("write_s", "write_cpu")), flush=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1].startswith("--child-"):
        role, rest = sys.argv[1], sys.argv[2:]
        if role == "--child-worker":
            measure_worker(Path(rest[0]), rest[4] or None, int(rest[1]), int(rest[2]),
                           together="--together" in rest, keypoints=int(rest[3]) > 0)
        elif role == "--child-write":
            measure_write(Path(rest[0]), rest[1], int(rest[2]))
        elif role == "--child-map":
            measure_map(rest[0], Path(rest[1]))
        elif role == "--child-populate":
            populate(Path(rest[0]), int(rest[1]), int(rest[2]))
            print(json.dumps({}))  # every child's last line is JSON
        else:
            change_feed(Path(rest[0]), int(rest[1]), int(rest[2]))
            print(json.dumps({}))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, action="append")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--bands", type=int, default=4)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--changes-per-mille", type=int, default=1,
                    help="rows added after the first snapshot, per thousand items")
    ap.add_argument("--keypoints", type=int, default=0,
                    help="random descriptors per row (0: global tier only)")
    ap.add_argument("--dir", default="/tmp/medialayer-scale")
    args = ap.parse_args()
    print("| items | stage | wall | CPU | index wall | index CPU | RSS MB | PSS MB "
          "| mapped RSS MB | mapped PSS MB | peak RSS MB | search p50 / p99 ms "
          "| search CPU p50 / p99 ms | note |")
    print("| --- " * 14 + "|")
    for items in args.items or [1_000_000]:
        run(args, items)


if __name__ == "__main__":
    main()
