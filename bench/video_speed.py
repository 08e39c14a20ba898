"""Video fingerprinting speed and size, and search latency against 1,000 hours of video.

    python bench/video_speed.py --corpus eval-data/video-dev [--hours 1000]

1. Catalog fingerprints (what indexing stores) and query fingerprints of the corpus's files:
   seconds of video per CPU second (decoding included) and stored bytes per minute.
2. Search: an index holding `--hours` of synthetic videos (random frame codes at the catalog's
   measured frames per second, random thumbnails) plus the real catalog, searched with the
   first `--queries` real queries (fingerprints computed beforehand): p50/p95 milliseconds
   of `VideoIndex.search`, candidate voting and verification included.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy: see docs/benchmarks-video.md

import argparse
import time
from pathlib import Path

import numpy as np

from medialayer.kinds.video import frames, search
from medialayer.kinds.video.frames import THUMB, VideoFingerprint
from medialayer.kinds.video.search import STORED_CODES

SYNTHETIC_SECONDS = 15.0
"""Length of each synthetic video."""


def fingerprint_speed(corpus: Path) -> tuple[dict[str, VideoFingerprint], float]:
    """Catalog fingerprints by id; prints speed and size; returns frames per second stored."""
    paths = sorted((corpus / "catalog").glob("*.mp4"))
    stored: dict[str, VideoFingerprint] = {}
    t = time.process_time()
    for path in paths:
        stored[path.stem] = frames.fingerprint(path)
    cpu = time.process_time() - t
    seconds = sum(fp.duration for fp in stored.values())
    size = sum(len(frames.encode(fp)) for fp in stored.values())
    count = sum(len(fp) for fp in stored.values())
    t = time.process_time()
    for path in paths:
        frames.fingerprint(path, query=True)
    query_cpu = time.process_time() - t
    print("| fingerprint | x real time per core | bytes per minute | frames per minute |")
    print("|---|---|---|---|")
    print(f"| catalog (stored) | {seconds / cpu:.0f} | {60 * size / seconds:,.0f} | "
          f"{60 * count / seconds:.1f} |")
    print(f"| query | {seconds / query_cpu:.0f} | | |")
    return stored, count / seconds


def synthetic(rng: np.random.Generator, n: int) -> VideoFingerprint:
    times = np.sort(rng.uniform(0, SYNTHETIC_SECONDS, n)).astype(np.float32)
    codes = rng.integers(0, 2**63, (n, 3), dtype=np.int64).astype(np.uint64)
    thumbs = rng.integers(0, 256, (n, THUMB, THUMB), dtype=np.uint8)
    return VideoFingerprint(times, codes, thumbs, SYNTHETIC_SECONDS)


def search_latency(corpus: Path, stored: dict[str, VideoFingerprint], rate: float,
                   hours: float, limit: int) -> None:
    rng = np.random.default_rng(1000)
    videos = int(hours * 3600 / SYNTHETIC_SECONDS)
    per_video = max(1, round(rate * SYNTHETIC_SECONDS))
    real = {10**9 + k: fp for k, fp in enumerate(stored.values())}
    index = search.VideoIndex(lambda keys: {k: real.get(k) or synthetic(rng, per_video)
                                           for k in keys})
    t = time.perf_counter()
    times = np.sort(rng.uniform(0, SYNTHETIC_SECONDS, (videos, per_video)), axis=1)
    codes = rng.integers(0, 2**63, (videos, per_video, len(STORED_CODES)), dtype=np.int64)
    index.codes.add_many(list(range(videos)), list(times.astype(np.float32)),
                         list(codes.astype(np.uint64)))
    for key, fp in real.items():
        index.add(key, fp)
    built = time.perf_counter() - t
    queries = [frames.fingerprint(path, query=True)
               for path in sorted((corpus / "queries").glob("*.mp4"))[:limit]]
    wall, cpu = [], []
    for query in queries:
        t, c = time.perf_counter(), time.process_time()
        index.search(query, top_k=5)
        wall.append(1000 * (time.perf_counter() - t))
        cpu.append(1000 * (time.process_time() - c))
    print(f"\nsearch: {hours:,.0f} h = {videos:,} videos, {index.codes.rows():,} frame codes "
          f"(built in {built:.0f} s, {index.nbytes() / 2**20:,.0f} MiB); {len(queries)} "
          f"queries: p50 {np.median(wall):.1f} ms (p95 {np.percentile(wall, 95):.1f} ms), "
          f"CPU p50 {np.median(cpu):.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--hours", type=float, default=1000.0)
    ap.add_argument("--queries", type=int, default=40, help="queries searched (the first N)")
    args = ap.parse_args()
    stored, rate = fingerprint_speed(args.corpus)
    search_latency(args.corpus, stored, rate, args.hours, args.queries)


if __name__ == "__main__":
    main()
