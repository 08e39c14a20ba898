"""What a search process's indexes cost in memory: per item, resident, and at their start-up peak.

    .venv/bin/python bench/memory.py [--catalog /tmp/mlbench-100k]

Opens a catalog (by default the one `bench/http.py --keep /tmp/mlbench-100k` builds), builds
every index from it as `medialayer serve` does at start-up (`MediaLayer.warm_up`), and prints one
table: items, the indexes' own count of bytes per item (`index_sizes()`, allocated), the
process's resident memory before and after, its peak (VmHWM, the build's temporaries), and the
build time. The projection per million items is bytes per item × 10^6.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from medialayer.service import MediaLayer


def status_mb(field_name: str) -> float:
    """A kB field of this process's /proc status (VmRSS, VmHWM), in MB."""
    for line in Path(f"/proc/{os.getpid()}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--catalog", type=Path, default=Path("/tmp/mlbench-100k"),
                    help="a data directory holding catalog.db")
    args = ap.parse_args()
    if not (args.catalog / "catalog.db").exists():
        raise SystemExit(f"no catalog.db in {args.catalog}: build one with "
                         f"`bench/http.py --keep {args.catalog}`")
    before = status_mb("VmRSS")
    ml = MediaLayer(args.catalog)
    t0 = time.perf_counter()
    ml.warm_up()
    build_s = time.perf_counter() - t0
    items, index_bytes = ml.index_sizes().get("image", (0, 0))
    rss, peak = status_mb("VmRSS"), status_mb("VmHWM")
    ml.close()
    per_item = index_bytes / max(1, items)
    print("| items | index bytes per item | per million items | RSS added by the indexes "
          "| peak RSS | build |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(f"| {items:,} | {per_item:,.0f} | {per_item / 1000:.2f} GB | {rss - before:,.0f} MB "
          f"| {peak:,.0f} MB | {build_s:.1f} s |")
    print(f"\n(process RSS before opening the catalog, with the libraries loaded: {before:.0f} MB)")


if __name__ == "__main__":
    main()
