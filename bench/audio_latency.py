"""Search latency of the audio index at catalog scale, with synthetic postings.

    python bench/audio_latency.py --corpus /work/main/eval-data/audio-dev --hours 1000

The postings of `--hours` of audio are drawn at the landmark rate the corpus's catalog shows,
each hash field (anchor bin, bin step, frame step) from its own distribution in that catalog, so
common hashes are as common as in real audio. The real catalog's postings are merged into the
same sorted arrays (so the cap on common hashes bites them as it would in a real index), and the
queries are 10 s excerpts of catalog clips: a third as they are, a third under noise, a third
played 3 % faster or slower (resampled), so every search has a true match to align. Prints the
index size and the p50/p95 search time (CPU time of this process, one thread) of the queries at
their own speed and of the sped-up or slowed-down ones; then of 10 s of each recording in the
corpus's negatives_src, which the catalog does not hold (a search that finds no copy).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from pathlib import Path

import numpy as np
from scipy import signal

from medialayer.index.postings import MergePlan, PostingsIndex, Segment
from medialayer.kinds.audio import calibration, match
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
    index's own plus one chunk. The real catalog's postings (keys 0, 1, ...) are then inserted
    at their places in the order."""
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
    real_keys = np.concatenate([np.full(len(h), key, np.int32)
                                for key, (_, h, _) in enumerate(real)])
    real_times = np.concatenate([t for _, _, t in real]).astype(np.int32)
    order = np.argsort(hashes, kind="stable")
    at = np.searchsorted(synthetic, hashes[order])
    return Segment.of_sorted(np.insert(synthetic, at, hashes[order]),
                             np.insert(keys, at, real_keys[order]),
                             np.insert(times, at, real_times[order]), HASH_BITS)


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
    lengths = {key: len(samples) / 8000 for key, (samples, _, _) in enumerate(real)}
    items = int(args.hours * 3600 / CLIP_SECONDS)
    lengths.update((key, CLIP_SECONDS) for key in range(len(real), len(real) + items))
    built = time.perf_counter() - t0
    print(f"{args.hours:,.0f} h: {index.postings():,} postings, {index.nbytes() / 1e9:.2f} GB, "
          f"built in {built:.0f} s")
    times: dict[str, list[float]] = {"same speed": [], "speed +-3 %": []}
    right = dict.fromkeys(times, 0)
    for i in range(args.queries):
        key = int(rng.integers(len(real)))
        samples = real[key][0]
        start = int(rng.integers(0, max(1, len(samples) - 80_000)))
        query = samples[start: start + 80_000]
        kind = "speed +-3 %" if i % 3 == 2 else "same speed"
        if i % 3 == 1:
            query = query + rng.normal(0, 0.05, len(query)).astype(np.float32)
        elif i % 3 == 2:  # played 3 % faster or slower: pitch and tempo together
            query = signal.resample_poly(query, 100, 97 if i % 2 else 103).astype(np.float32)
        peaks = fingerprint_samples(query).peaks
        t = time.process_time()
        found = match.search(index, peaks, lengths, top_k=5)
        times[kind].append(time.process_time() - t)
        right[kind] += bool(found) and found[0].key == key
    for kind, spent in times.items():
        print(f"10 s queries, {kind}: {len(spent)}, right at top-1: {right[kind]}; "
              f"{_percentiles(spent)}")
    spent, high = [], 0
    for path in sorted((args.corpus / "negatives_src").glob("*.wav")):
        peaks = fingerprint_samples(decode_path(path).samples[:80_000]).peaks
        t = time.process_time()
        found = match.search(index, peaks, lengths, top_k=5)
        spent.append(time.process_time() - t)
        high += bool(found) and calibration.confidence(found[0].score) == "high"
    print(f"10 s queries of audio not in the catalog: {len(spent)}, a high match: {high}; "
          f"{_percentiles(spent)}")


def _percentiles(spent: list[float]) -> str:
    spent = sorted(spent)
    return (f"search p50 {1000 * statistics.median(spent):.1f} ms, p95 "
            f"{1000 * spent[int(0.95 * (len(spent) - 1))]:.1f} ms (CPU)")


if __name__ == "__main__":
    main()
