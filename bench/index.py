"""Benchmark the MIH HammingIndex against faiss IndexBinaryFlat and a numpy scan.

Codes are uniform random 64-bit values; each query is a stored code with 0-8 random bits
flipped, as a re-encoded or lightly edited copy of a catalog image would be. Latency is per
single query, in-process, one thread. Prints a markdown table.

    python bench/index.py [--sizes 1000000,10000000] [--queries 2000] [--radius 8]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable

import numpy as np

try:
    from medialayer.index.hamming import HammingIndex
except ImportError:  # not installed: run from a checkout
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    from medialayer.index.hamming import HammingIndex

BITS = 64


def make_queries(rng: np.random.Generator, codes: np.ndarray, count: int) -> list[int]:
    queries = []
    for i in rng.integers(0, codes.size, count):
        q = int(codes[i])
        for bit in rng.choice(BITS, int(rng.integers(0, 9)), replace=False):
            q ^= 1 << int(bit)
        queries.append(q)
    return queries


def timed(fn: Callable[[int], object], queries: list[int]) -> tuple[np.ndarray, list[object]]:
    for q in queries[:20]:  # warm caches and plan/JIT-like first-call costs
        fn(q)
    lat, out = [], []
    for q in queries:
        t0 = time.perf_counter()
        out.append(fn(q))
        lat.append(time.perf_counter() - t0)
    return np.array(lat) * 1e3, out


def recall(found: list[set[int]], truth: list[set[int]]) -> float:
    total = sum(len(t) for t in truth)
    hit = sum(len(f & t) for f, t in zip(found, truth, strict=False))
    return hit / total if total else 1.0


def numpy_radius(codes: np.ndarray, keys: np.ndarray, q: int, r: int) -> set[int]:
    d = np.bitwise_count(codes ^ np.uint64(q))
    return set(keys[np.flatnonzero(d <= r)].tolist())


def numpy_knn(codes: np.ndarray, keys: np.ndarray, q: int, k: int) -> list[int]:
    d = np.bitwise_count(codes ^ np.uint64(q))
    top = np.argpartition(d, k)[:k]
    return sorted(d[top].tolist())


def row(name: str, n: int, build: float, bpi: float, rad: np.ndarray, knn: np.ndarray, rec):
    p = np.percentile
    return {
        "name": name,
        "n": n,
        "build": build,
        "bpi": bpi,
        "r50": p(rad, 50),
        "r99": p(rad, 99),
        "k50": p(knn, 50),
        "k99": p(knn, 99),
        "recall": rec,
        "nq": (rad.size, knn.size),
    }


def run_size(n: int, args: argparse.Namespace, rng: np.random.Generator) -> list[dict]:
    import faiss

    faiss.omp_set_num_threads(1)
    r, k = args.radius, args.k
    print(f"\n# n = {n:,}", file=sys.stderr)
    codes = rng.integers(0, 2**64, n, dtype=np.uint64)
    keys = rng.permutation(n).astype(np.int64)  # shuffled ids: the slow case for the build
    queries = make_queries(rng, codes, args.queries)
    nb = min(len(queries), args.brute_queries if n >= 5_000_000 else len(queries))
    rows = []

    # numpy first: its answers are the ground truth for recall and the kNN check.
    rad, truth = timed(lambda q: numpy_radius(codes, keys, q, r), queries[:nb])
    knn, exact_knn = timed(lambda q: numpy_knn(codes, keys, q, k), queries[:nb])
    numpy_row = row("numpy brute force", n, 0.0, codes.itemsize + keys.itemsize, rad, knn, None)
    truth += [numpy_radius(codes, keys, q, r) for q in queries[nb:]]  # untimed
    print(
        f"  numpy done; mean matches within r={r}: {np.mean([len(t) for t in truth]):.2f}",
        file=sys.stderr,
    )

    for bands in args.bands:
        t0 = time.perf_counter()
        idx = HammingIndex(bits=BITS, bands=bands)
        idx.add_many(keys, codes)
        build = time.perf_counter() - t0
        rad, res = timed(lambda q, idx=idx: idx.radius(q, r), queries)
        knn, kres = timed(lambda q, idx=idx: idx.knn(q, k), queries)
        rec = recall([{key for key, _ in x} for x in res], truth)
        assert [[d for _, d in x] for x in kres[:nb]] == exact_knn, "knn distances differ"
        name = f"HammingIndex (MIH, bands={bands})"
        rows.append(row(name, n, build, idx.nbytes() / n, rad, knn, rec))
        print(f"  {name}: build {build:.2f} s", file=sys.stderr)
        del idx

    t0 = time.perf_counter()
    index = faiss.IndexBinaryFlat(BITS)
    index.add(codes.view(np.uint8).reshape(n, BITS // 8))
    build = time.perf_counter() - t0
    qbytes = {q: np.array([q], dtype=np.uint64).view(np.uint8).reshape(1, -1) for q in queries}

    def faiss_radius(q: int) -> set[int]:
        _, _, ids = index.range_search(qbytes[q], r + 1)  # faiss keeps distance < radius
        return set(keys[ids].tolist())

    def faiss_knn(q: int) -> list[int]:
        dist, _ = index.search(qbytes[q], k)
        return sorted(int(d) for d in dist[0])

    rad, res = timed(faiss_radius, queries)
    knn, kres = timed(faiss_knn, queries)
    assert kres[:nb] == exact_knn, "faiss knn distances differ"
    bpi = index.code_size + keys.itemsize  # codes + an id per row to map results to keys
    rows.append(row("faiss IndexBinaryFlat", n, build, bpi, rad, knn, recall(res, truth)))
    print("  faiss done", file=sys.stderr)
    return [*rows, numpy_row]


def render(rows: list[dict], r: int, k: int) -> str:
    """One markdown row per method; "x faster" is faiss p50 / this method's p50."""
    faiss_rows = {x["n"]: x for x in rows if x["name"].startswith("faiss")}
    head = (
        f"| n | method | build s | bytes/item | radius {r} p50 ms | p99 ms | knn {k} p50 ms "
        f"| p99 ms | recall@{r} | radius x faster than faiss | knn x faster than faiss "
        f"| queries |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for x in rows:
        f = faiss_rows[x["n"]]
        rec = "(truth)" if x["recall"] is None else f"{x['recall']:.4f}"
        lines.append(
            f"| {x['n']:,} | {x['name']} | {x['build']:.2f} | {x['bpi']:.1f} "
            f"| {x['r50']:.3f} | {x['r99']:.3f} | {x['k50']:.3f} | {x['k99']:.3f} | {rec} "
            f"| {f['r50'] / x['r50']:.2f} | {f['k50'] / x['k50']:.2f} | {x['nq'][0]} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000000,10000000")
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--radius", type=int, default=8)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--bands", default="4", help="comma-separated band counts for HammingIndex")
    ap.add_argument("--brute-queries", type=int, default=200, help="numpy queries at >= 5M")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    args.bands = [int(b) for b in args.bands.split(",")]
    import faiss

    rng = np.random.default_rng(args.seed)
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        rows += run_size(n, args, rng)
    print(
        f"numpy {np.__version__}, faiss {faiss.__version__}, Python {platform.python_version()}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs; "
        f"queries: stored code with 0-8 random bit flips; faiss/numpy single-threaded\n"
    )
    print(render(rows, args.radius, args.k))


if __name__ == "__main__":
    main()
