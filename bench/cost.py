"""Query time and bytes per item of two code states, measured in one run on the same files.

    python bench/cost.py --before 1add3de --corpus /work/main/eval-data/image-dev \
        [--corpus /tmp/hard] [--queries 300] [--rounds 2]

Each state (`--before`, a git revision with the kind protocol of issue 10, exported to a temporary
directory and put first on PYTHONPATH; then the working tree) runs in its own process: it indexes
every corpus's catalog, then searches a fixed sample of its queries and negatives (copies and novel
images alike, the mix a marketplace sees) with top_k=5. Rounds alternate the states, because this
machine's speed drifts from minute to minute. Printed per run: search time per query (mean and
median CPU time of the searching process, since wall time on a shared machine measures the
neighbours too; and the wall-clock mean), the bytes per item held in memory by the indexes
(`index_sizes()`), and the bytes per item stored in the catalog (the fingerprint blobs).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def measure(corpora: list[Path], queries: int) -> dict[str, float]:
    """In this process: index, search, and report (the code is whatever `medialayer` is)."""
    from medialayer import MediaLayer

    catalog = [p for c in corpora for p in sorted((c / "catalog").iterdir())]
    rows = [c / row["query"] for c in corpora
            for row in csv.DictReader(open(c / "ground_truth.csv", newline=""))]
    sample = random.Random(11).sample(rows, min(queries, len(rows)))
    with tempfile.TemporaryDirectory() as data_dir:
        ml = MediaLayer(data_dir)
        for path in catalog:
            ml.index(path)
        ml.search(sample[0])  # index build and warm-up are not what is timed
        times, cpu = [], []
        for path in sample:
            data = path.read_bytes()
            t0, c0 = time.perf_counter(), time.process_time()
            ml.search(data, top_k=5)
            cpu.append(time.process_time() - c0)
            times.append(time.perf_counter() - t0)
        items, held = ml.index_sizes()["image"]
        stored = [len(row.encoded.blob) for row in ml.store.rows_since("image", 0)]
        ml.close()
    return {"ms_mean": 1000 * statistics.fmean(times), "ms_median": 1000 * statistics.median(times),
            "cpu_ms_mean": 1000 * statistics.fmean(cpu),
            "cpu_ms_median": 1000 * statistics.median(cpu),
            "held_per_item": held / items, "stored_per_item": statistics.fmean(stored),
            "items": items, "queries": len(times)}


def export(revision: str, into: Path) -> Path:
    """The `src` tree of a git revision, written under `into`."""
    archive = into / "src.tar"
    with open(archive, "wb") as f:
        subprocess.run(["git", "-C", str(ROOT), "archive", revision, "src"], stdout=f,
                       check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def run_state(src: Path, corpora: list[Path], queries: int) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(src))
    # -P: bench/ is not put first on sys.path, where its http.py would shadow the standard
    # library's http package (httpx, imported by medialayer, needs it).
    args = [sys.executable, "-P", __file__, "--inner", "--queries", str(queries)]
    for c in corpora:
        args += ["--corpus", str(c)]
    out = subprocess.run(args, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default="HEAD")
    ap.add_argument("--corpus", type=Path, action="append", required=True)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inner:
        print(json.dumps(measure(args.corpus, args.queries)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        states = {f"before ({args.before})": export(args.before, Path(tmp)),
                  "after (working tree)": ROOT / "src"}
        print("| run | state | search CPU ms/query mean | median | wall ms mean "
              "| index bytes/item in memory | stored bytes/item |")
        print("|---|---|---|---|---|---|---|")
        for r in range(args.rounds):
            for name, src in states.items():
                m = run_state(src, args.corpus, args.queries)
                print(f"| {r + 1} | {name} | {m['cpu_ms_mean']:.1f} | {m['cpu_ms_median']:.1f} "
                      f"| {m['ms_mean']:.1f} "
                      f"| {m['held_per_item']:,.0f} | {m['stored_per_item']:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
