"""What a search process's indexes cost in memory: per item, resident, and at their start-up peak.

    .venv/bin/python bench/memory.py [--catalog /tmp/mlbench-100k]
    .venv/bin/python bench/memory.py --synthetic 1000000 [--votes 200]

With --catalog, opens a catalog (by default the one `bench/http.py --keep /tmp/mlbench-100k`
builds) and builds every index from it as `medialayer serve` does at start-up
(`MediaLayer.warm_up`). With --synthetic N, builds the image index alone from N synthetic
fingerprints (a random code, 256 random descriptors at random positions: what the index holds
costs the same as for real ones, and no catalog of a million images is needed), fed as the
registry feeds a start-up: every code, then the keypoints in batches, then one fold.

Prints one table: items, the indexes' own count of bytes per item (`nbytes()`), the keypoint
tier's alone (synthetic: the image index but its code and
tenant arrays), the process's resident memory added and its peak (VmHWM, the build's
temporaries), and the build's CPU time. With --votes, also the CPU time of a keypoint vote of a
copy of an indexed item (10 % of its descriptors' bits flipped) and of a novel image. The
projection per million items is bytes per item × 10^6.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

# bench/ goes last, not first: its http.py would otherwise shadow the standard library's
# http package, which httpx (imported by medialayer) needs.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE] + [str(HERE)]
from medialayer.index.registry import BATCH  # noqa: E402
from medialayer.kinds.image import Features, ImageFingerprint  # noqa: E402
from medialayer.kinds.image_search import ImageIndex, ImageKind  # noqa: E402
from medialayer.service import MediaLayer  # noqa: E402

FRAME = (480, 360)
"""The work frame of the synthetic fingerprints (width, height)."""
FEATURES = 256


def status_mb(field_name: str) -> float:
    """A kB field of this process's /proc status (VmRSS, VmHWM), in MB."""
    for line in Path(f"/proc/{os.getpid()}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def synthetic(keys: range, rng: np.random.Generator) -> list[tuple[int, str, ImageFingerprint]]:
    descriptors = rng.integers(0, 256, (len(keys), FEATURES, 32), dtype=np.uint8)
    points = (rng.random((len(keys), FEATURES, 2)) * FRAME).astype(np.float32)
    codes = rng.integers(0, 1 << 63, len(keys), dtype=np.int64).tolist()
    return [(key, "shop", ImageFingerprint(code, Features(p, d, FRAME), query_codes=(code,)))
            for key, code, p, d in zip(keys, codes, points, descriptors, strict=True)]


def build_synthetic(items: int) -> tuple[ImageIndex, list[np.ndarray]]:
    """The image index of `items` synthetic fingerprints, and a few items' descriptors."""
    rng = np.random.default_rng(20261202)
    index = ImageKind().new_index(lambda keys: {})
    keys = np.arange(items, dtype=np.int64)
    codes = rng.integers(0, 1 << 63, items, dtype=np.int64).astype(np.uint64)
    index.add_codes(keys, ["shop"] * items, codes)
    index.prepare()
    kept: list[np.ndarray] = []
    for start in range(0, items, BATCH):
        batch = synthetic(range(start, min(items, start + BATCH)), rng)
        if len(kept) < 50:
            kept += [fp.features.descriptors for _, _, fp in batch[:50]]
        index.add_details(batch)
    index.prepare()
    return index, kept


def vote_ms(index: ImageIndex, stored: list[np.ndarray], votes: int) -> tuple[float, float]:
    """CPU ms per keypoint vote of a noisy copy of an indexed item, and of a novel image
    (descriptors of no item): a novel query's collisions are all chance ones."""
    rng = np.random.default_rng(5)
    copies, novel = [], []
    for i in range(votes):
        bits = np.unpackbits(stored[i % len(stored)], axis=1)
        copies.append(np.packbits(bits ^ (rng.random(bits.shape) < 0.1), axis=1))
        novel.append(rng.integers(0, 256, (FEATURES, 32), dtype=np.uint8))
    times = []
    for queries in (copies, novel):
        t0 = time.process_time()
        for q in queries:
            index.local.vote(q)
        times.append(1000 * (time.process_time() - t0) / votes)
    return times[0], times[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--catalog", type=Path, default=Path("/tmp/mlbench-100k"),
                    help="a data directory holding catalog.db")
    ap.add_argument("--synthetic", type=int, default=0,
                    help="build the image index of this many synthetic items instead")
    ap.add_argument("--votes", type=int, default=0,
                    help="synthetic: also time this many keypoint votes")
    args = ap.parse_args()
    before = status_mb("VmRSS")
    t0 = time.process_time()
    keypoints, vote, novel = "-", "-", "-"
    if args.synthetic:
        index, stored = build_synthetic(args.synthetic)
        build_s = time.process_time() - t0
        items, index_bytes = len(index), index.nbytes()
        tier = index_bytes - index.codes.nbytes() - index.tenants.nbytes()
        keypoints = f"{tier / max(1, items):,.0f}"
        if args.votes:
            copy_ms, novel_ms = vote_ms(index, stored, args.votes)
            vote, novel = f"{copy_ms:.2f} ms", f"{novel_ms:.2f} ms"
        rss, peak = status_mb("VmRSS"), status_mb("VmHWM")
    else:
        if not (args.catalog / "catalog.db").exists():
            raise SystemExit(f"no catalog.db in {args.catalog}: build one with "
                             f"`bench/http.py --keep {args.catalog}`, or use --synthetic")
        ml = MediaLayer(args.catalog)
        ml.warm_up()
        build_s = time.process_time() - t0
        items, index_bytes = ml.index_sizes().get("image", (0, 0))
        rss, peak = status_mb("VmRSS"), status_mb("VmHWM")
        ml.close()
    per_item = index_bytes / max(1, items)
    print("| items | index bytes per item | keypoint tier bytes per item | per million items "
          "| RSS added by the indexes | peak RSS | build CPU | vote CPU, copy / novel |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    print(f"| {items:,} | {per_item:,.0f} | {keypoints} | {per_item / 1000:.2f} GB "
          f"| {rss - before:,.0f} MB | {peak:,.0f} MB | {build_s:.1f} s | {vote} / {novel} |")
    print(f"\n(process RSS before building, with the libraries loaded: {before:.0f} MB)")


if __name__ == "__main__":
    main()
