"""On paper from measured per-shard inputs: what 100M items at 1,000 searches/s would need.

    .venv/bin/python bench/simulate.py [--items 100000000] [--rate 1000]
        [--measure 1000000 --measure 10000000] [--machines 24:2 --machines 128:16]
        [--overhead-ms 0 --overhead-ms 1] [--queries 2000] [--seconds 120]

Issue 15 item 5. Nothing here runs at 100M: the script takes two kinds of measured input and
computes the rest.

* **Service time per shard** (measured by this script, in this process): the in-memory global
  tier (`HammingIndex` + `TenantMap`, bands 4 below 5M items and 3 from there, as deployed)
  built over each `--measure` size of `bench/pg_global.py`'s synthetic codes, and `--queries`
  searches as `bench/scale.py` times them (radius 8 around a stored code with 0-8 bits flipped
  and its mirror, tenant filter); the samples are each query's thread CPU time (the work: the
  queueing model below adds the waiting, which a wall time on this shared machine would count
  twice). A shard of n items between or beyond the measured sizes gets the nearest measured
  size's samples scaled by (n / size) ** alpha, alpha fitted to the measured means (on paper).
* **Memory per item per tier**, from docs/deployment.md "Sizing per million items" (bench/
  scale.py and bench/memory.py): `MEMORY_SCENARIOS` below, and 150 MB per worker process.

The model: items are partitioned by hash of media id over S shards, one shard per machine, a
machine's C cores each running a worker over one mapped copy of the shard; S is the fewest
machines whose memory holds the shard (RAM minus a 2 GB reserve and the workers). Every search
goes to every shard of one replica set (R sets, searches spread evenly), so a machine gets
rate / R shard searches per second. R is the fewest sets that keep each machine's cores at most
`--max-util` busy. The p99 is from a discrete-event simulation of one replica set: Poisson
arrivals at rate / R, each shard an FCFS queue with C servers whose service times are drawn from
the samples (plus `--overhead-ms` per shard search for what else a shard does, the RPC, the
merge and the keypoint tier: an assumption, not a measurement), a search's latency the slowest
of its shards' (the fan-out tail). The API node's own work (decoding and fingerprinting the
upload, verification) is not in the model: it scales with API nodes, not with items.
"""

from __future__ import annotations

import argparse
import heapq
import math
import os
import sys
import time
from dataclasses import dataclass

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pg_global import make_codes, make_queries, memory_search  # noqa: E402

RESERVE_GB = 2.0  # the OS, the page cache's churn, a snapshot refresh's headroom
WORKER_MB = 150.0  # a worker's own memory besides the indexes (docs/deployment.md)
# bytes per item: (label, global tier + keypoint tier), docs/deployment.md "Sizing per million
# items": 38 B global tier (4 bands, 1M); 3,609 B keypoint tier (bench/memory.py at 1M);
# 1,856 B both tiers with 128 keypoints indexed (snapshot at 1M); 2,048 B the target.
MEMORY_SCENARIOS = [
    ("global tier only", 38.0),
    ("both tiers, keypoint tier as measured (3,609 B)", 38.0 + 3609.0),
    ("both tiers, keypoint tier at the 2 KB target", 38.0 + 2048.0),
]


@dataclass
class Samples:
    """Measured service times (ms) of one shard size."""

    items: int
    ms: np.ndarray


def measure(items: int, queries: int) -> Samples:
    codes = make_codes(items)
    search, _ = memory_search(codes, 8)
    cpu = []
    for i, query in enumerate(make_queries(codes, queries + 100)):
        c0 = time.thread_time()
        search(query)
        if i >= 100:  # first touches and probe plans: not counted
            cpu.append(time.thread_time() - c0)
    return Samples(items, np.array(cpu) * 1000)


def fit_alpha(measured: list[Samples]) -> float:
    """Growth of the mean service time with the shard's size, between the smallest and the
    largest measured size (1.0, linear, with a single size)."""
    if len(measured) < 2:
        return 1.0
    lo, hi = measured[0], measured[-1]
    return math.log(float(hi.ms.mean()) / float(lo.ms.mean())) / math.log(hi.items / lo.items)


def shard_samples(measured: list[Samples], alpha: float, items: float
                  ) -> tuple[np.ndarray, str]:
    """Service times of a shard of `items`, and where they come from."""
    nearest = min(measured, key=lambda s: abs(math.log(items / s.items)))
    ratio = items / nearest.items
    if abs(math.log(ratio)) < 0.01:
        return nearest.ms, f"measured at {nearest.items / 1e6:g}M"
    how = "extrapolated" if items > measured[-1].items or items < measured[0].items else "scaled"
    return nearest.ms * ratio ** alpha, f"{how} from {nearest.items / 1e6:g}M"


def simulate(rate: float, shards: int, cores: int, samples: np.ndarray, overhead_ms: float,
             seconds: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per-search latency (ms, the slowest shard) and every shard search's response (ms) of
    one replica set: FCFS queues of `cores` servers, the same Poisson arrivals at each."""
    count = max(1000, int(rate * seconds))
    arrivals = np.cumsum(rng.exponential(1000.0 / rate, count))
    slowest = np.zeros(count)
    responses = []
    for _ in range(shards):
        service = rng.choice(samples, count) + overhead_ms
        free = [0.0] * cores
        done = np.empty(count)
        for i, (arrive, work) in enumerate(zip(arrivals.tolist(), service.tolist(),
                                               strict=True)):
            start = max(arrive, free[0])
            heapq.heapreplace(free, start + work)
            done[i] = start + work
        response = done - arrivals
        responses.append(response)
        np.maximum(slowest, response, out=slowest)
    warm = count // 10  # the queues start empty
    return slowest[warm:], np.concatenate([r[warm:] for r in responses])


def plan(args: argparse.Namespace, measured: list[Samples], alpha: float) -> None:
    rng = np.random.default_rng(5)
    print("| memory per item | machine | overhead per shard search | shards (machines per set) "
          "| items per shard | service times | replica sets | machines | busy per core "
          "| shard search mean ms | shard p99 ms | search p50 / p99 ms (slowest shard) |")
    print("| --- " * 12 + "|")
    for label, per_item in MEMORY_SCENARIOS:
        for spec in args.machines:
            ram_gb, cores = (float(x) for x in spec.split(":"))
            usable = (ram_gb - RESERVE_GB) * 2**30 - cores * WORKER_MB * 2**20
            shards = max(1, math.ceil(args.items * per_item / usable))
            items = args.items / shards
            for overhead in args.overhead_ms:
                samples, source = shard_samples(measured, alpha, items)
                mean = float(samples.mean()) + overhead
                sets = max(1, math.ceil(args.rate * mean / 1000 / (int(cores) * args.max_util)))
                rate = args.rate / sets
                slowest, each = simulate(rate, shards, int(cores), samples, overhead,
                                         args.seconds, rng)
                print(f"| {label} | {ram_gb:.0f} GB / {cores:.0f} cores | {overhead:g} ms "
                      f"| {shards} | {items / 1e6:,.1f}M | {source} | {sets} | {shards * sets} "
                      f"| {rate * mean / 1000 / cores:.0%} | {mean:.2f} "
                      f"| {np.percentile(each, 99):.2f} | {np.percentile(slowest, 50):.2f} / "
                      f"{np.percentile(slowest, 99):.2f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=float, default=100e6)
    ap.add_argument("--rate", type=float, default=1000.0, help="searches per second")
    ap.add_argument("--measure", type=int, action="append",
                    help="shard sizes whose service times are measured (default 1M and 10M)")
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--machines", action="append", help="RAM_GB:CORES (default 24:2, 128:16)")
    ap.add_argument("--overhead-ms", type=float, action="append",
                    help="assumed cost per shard search besides the global tier's (RPC, merge, "
                    "keypoint tier; not measured here; default 0, 1 and 5)")
    ap.add_argument("--max-util", type=float, default=0.7)
    ap.add_argument("--seconds", type=float, default=120.0, help="simulated time per row")
    args = ap.parse_args()
    args.machines = args.machines or ["24:2", "128:16"]
    args.overhead_ms = args.overhead_ms or [0.0, 1.0, 5.0]
    measured = [measure(n, args.queries) for n in sorted(args.measure or [1_000_000, 10_000_000])]
    alpha = fit_alpha(measured)
    print("ON PAPER: a queueing simulation from measured per-shard inputs; nothing ran at "
          f"{args.items:,.0f} items.")
    for s in measured:
        print(f"<!-- measured: global tier at {s.items:,} items, {len(s.ms)} searches, CPU "
              f"p50 {np.percentile(s.ms, 50):.3f} ms, p99 {np.percentile(s.ms, 99):.3f} ms, "
              f"mean {s.ms.mean():.3f} ms -->")
    print(f"<!-- service time grows as items ** {alpha:.2f} between the measured sizes -->")
    plan(args, measured, alpha)


if __name__ == "__main__":
    main()
