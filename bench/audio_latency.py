"""Search latency of the audio index at catalog scale, with synthetic postings.

    python bench/audio_latency.py --corpus /work/main/eval-data/audio-dev --hours 1000

The postings of `--hours` of audio are drawn at the landmark rate the corpus's catalog shows,
each hash field (anchor bin, bin step, frame step) from its own distribution in that catalog, so
common hashes are as common as in real audio. The real catalog's postings are added too, and the
queries are 10 s excerpts of catalog clips (some under noise), so every search has a true match
to align. Prints the index size and the p50/p95 search time (wall clock, one thread).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from pathlib import Path

import numpy as np

from medialayer.index.postings import MergePlan, PostingsIndex, Segment
from medialayer.kinds.audio import match
from medialayer.kinds.audio.decode import decode_path
from medialayer.kinds.audio.fingerprint import fingerprint_samples
from medialayer.kinds.audio.landmarks import (
    DF_BITS,
    DT_BITS,
    FRAME_SECONDS,
    HASH_BITS,
    reference_landmarks,
)

CLIP_SECONDS = 180.0
"""Length of the synthetic catalog items."""


def catalog_landmarks(corpus: Path) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(samples, hashes, times) of every catalog clip."""
    with open(corpus / "catalog.csv", newline="") as f:
        paths = [corpus / r["path"] for r in csv.DictReader(f) if "NEGATIVE" not in r["kind"]]
    out = []
    for path in paths:
        samples = decode_path(path).samples
        lm = reference_landmarks(fingerprint_samples(samples).peaks)
        out.append((samples, lm.hashes, np.rint(lm.times)))
    return out


def synthetic_segment(real: list[tuple[np.ndarray, np.ndarray, np.ndarray]], hours: float,
                      rng: np.random.Generator) -> Segment:
    """Drawn in chunks into one preallocated array, sorted in place: the peak memory is the
    index's own plus one chunk."""
    hashes = np.concatenate([h for _, h, _ in real]).astype(np.int64)
    seconds = sum(len(s) for s, _, _ in real) / 8000
    n = int(len(hashes) / seconds * hours * 3600)
    fields = [hashes >> (DF_BITS + DT_BITS), (hashes >> DT_BITS) & ((1 << DF_BITS) - 1),
              hashes & ((1 << DT_BITS) - 1)]
    synthetic = np.empty(n, np.uint32)
    chunk = 1 << 23
    for at in range(0, n, chunk):
        m = min(chunk, n - at)
        f1, df, dt = (rng.choice(f, m) for f in fields)
        synthetic[at: at + m] = (f1 << (DF_BITS + DT_BITS)) | (df << DT_BITS) | dt
    synthetic.sort()
    items = int(hours * 3600 / CLIP_SECONDS)
    keys = rng.integers(len(real), len(real) + items, n, dtype=np.int32)
    times = rng.integers(0, int(CLIP_SECONDS / FRAME_SECONDS), n, dtype=np.int32)
    return Segment.of_sorted(synthetic, keys, times, HASH_BITS)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--hours", type=float, default=1000.0)
    ap.add_argument("--queries", type=int, default=60)
    args = ap.parse_args()
    rng = np.random.default_rng(7)
    real = catalog_landmarks(args.corpus)
    t0 = time.perf_counter()
    index = PostingsIndex(HASH_BITS)
    index.install(MergePlan(synthetic_segment(real, args.hours, rng), 0, frozenset()))
    for key, (_, h, t) in enumerate(real):
        index.add(key, h, t)  # into the append buffer, searched beside the main segment
    index.prepare()
    lengths = {key: len(samples) / 8000 for key, (samples, _, _) in enumerate(real)}
    items = int(args.hours * 3600 / CLIP_SECONDS)
    lengths.update((key, CLIP_SECONDS) for key in range(len(real), len(real) + items))
    built = time.perf_counter() - t0
    print(f"{args.hours:,.0f} h: {index.postings():,} postings, {index.nbytes() / 1e9:.2f} GB, "
          f"built in {built:.0f} s")
    times, right = [], 0
    for i in range(args.queries):
        key = int(rng.integers(len(real)))
        samples = real[key][0]
        start = int(rng.integers(0, max(1, len(samples) - 80_000)))
        query = samples[start: start + 80_000]
        if i % 2:
            query = query + rng.normal(0, 0.05, len(query)).astype(np.float32)
        peaks = fingerprint_samples(query).peaks
        t = time.perf_counter()
        found = match.search(index, peaks, lengths, top_k=5)
        times.append(time.perf_counter() - t)
        right += bool(found) and found[0].key == key
    times.sort()
    print(f"10 s queries: {len(times)}, right at top-1: {right}; search p50 "
          f"{1000 * statistics.median(times):.1f} ms, p95 "
          f"{1000 * times[int(0.95 * (len(times) - 1))]:.1f} ms")


if __name__ == "__main__":
    main()
