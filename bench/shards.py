"""Index nodes: search through HTTP with the image index in 1, 2 and 4 shards, in one run.

    .venv/bin/python bench/shards.py [--catalog-size 100000] [--shards 0,1,2,4]
        [--duration 20] [--concurrency 1,4] [--keep DIR]

The catalog is bench/http.py's (synthetic items with 256 random keypoints each, and real
fingerprints of generated photos, one of them the original of the query), built once under
`--keep` and reused. For each shard count N (0: no index nodes, the API process's own index,
for reference) N `medialayer index-node` processes start on it (each builds its partition
from the catalog, or maps its snapshot from an earlier run and replays the feed) and are
polled until ready; then `medialayer serve` with MEDIALAYER_INDEX_NODES naming them, and
bench/http.py's load: `c` keep-alive clients posting the query (an edited copy, which must come
back top-1 high) back to back for `--duration` s, then a novel query (in no catalog: the
second round, every view, on every node). Every answer is checked for `partial`: none is
expected, so a count above 0 means a node did not answer in time.

Everything runs on this machine: the nodes, the API and the load generator share its cores,
so more shards mean more processes on the same cores, not more hardware; what the table shows
is the cost of the fan-out and how the work splits, not a cluster's speed.
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if sys.path and os.path.abspath(sys.path[0] or ".") == HERE:
    sys.path.pop(0)  # as in bench/http.py: keep the standard library's `http` importable
sys.path.append(HERE)  # after it: bench/soak.py loads bench/http.py under another name

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import httpx  # noqa: E402
from soak import http_bench  # noqa: E402

hb = http_bench()
READY_TIMEOUT = 3600.0


def start_nodes(data_dir: Path, snapshots: Path, shards: int, log_dir: Path
                ) -> tuple[list[subprocess.Popen[bytes]], list[str], float]:
    """`shards` index nodes on the catalog, once every one is ready: processes, URLs, and the
    seconds until the slowest was."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIALAYER_")}
    env.update(MEDIALAYER_DATA_DIR=str(data_dir), MEDIALAYER_SNAPSHOT_DIR=str(snapshots))
    t0 = time.perf_counter()
    procs, urls = [], []
    for shard in range(shards):
        port = hb.free_port()
        with (log_dir / f"node-{shards}-{shard}.log").open("wb") as out:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "medialayer", "index-node", "--shard", str(shard),
                 "--shards", str(shards), "--port", str(port), "--snapshot-every", "0"],
                env=env, stdout=out, stderr=subprocess.STDOUT))
        urls.append(f"http://{hb.HOST}:{port}")
    for proc, url in zip(procs, urls, strict=True):
        wait_ready(proc, url, t0)
    return procs, urls, time.perf_counter() - t0


def wait_ready(proc: subprocess.Popen[bytes], url: str, t0: float) -> dict[str, Any]:
    with httpx.Client(trust_env=False, timeout=10) as client:
        while time.perf_counter() - t0 < READY_TIMEOUT:
            if proc.poll() is not None:
                raise SystemExit(f"index node {url} exited ({proc.returncode})")
            try:
                answer = client.get(url + "/v1/shard/ready")
                if answer.status_code == 200:
                    return dict(answer.json())
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    raise SystemExit(f"index node {url} not ready in {READY_TIMEOUT} s")


def stop_nodes(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def partial_answers(server: Any, key: str, query: bytes, count: int) -> int:
    """How many of `count` searches came back flagged partial."""
    return sum(bool(hb.search_once(server, key, query)[1]["partial"]) for _ in range(count))


def measure(args: argparse.Namespace, work: Path, data_dir: Path, key: str, shards: int
            ) -> list[str]:
    """One shard count's rows of the table."""
    _, query, novel = hb.query_images()
    procs: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    ready = 0.0
    if shards:
        procs, urls, ready = start_nodes(data_dir, work / "snapshots", shards, work)
    rss = sum(hb.proc_status(p.pid, "VmRSS") for p in procs) / 1024
    settings = {"MEDIALAYER_INDEX_NODES": ",".join(urls)} if urls else {}
    rows = []
    try:
        with hb.serve(data_dir, 0, work / f"serve-{shards}.log", settings=settings) as server:
            hb.check_top1(hb.search_once(server, key, query)[1])
            hb.check_novel(hb.search_once(server, key, novel)[1])
            for label, body in (("copy", query), ("novel", novel)):
                for c in args.concurrency:
                    load = hb.search_load(server, key, body, c, args.duration, label)
                    partial = partial_answers(server, key, body, 10) if shards else 0
                    rows.append(hb.row(shards or "in process", label, c,
                                       f"{ready:.1f}" if shards else "-",
                                       f"{rss:.0f}" if shards else "-", hb.ms(load.pct(50)),
                                       hb.ms(load.pct(99)), f"{load.rate:.1f}",
                                       sum(load.statuses.values()) - load.ok, partial))
                    print(rows[-1], flush=True)
    finally:
        stop_nodes(procs)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--catalog-size", type=int, default=100_000)
    ap.add_argument("--real", type=int, default=200)
    ap.add_argument("--shards", default="0,1,2,4")
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--concurrency", default="1,4")
    ap.add_argument("--keep", type=Path, help="keep the catalog (and node snapshots) here")
    args = ap.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    work = args.keep or Path(tempfile.mkdtemp(prefix="medialayer-shards-"))
    work.mkdir(parents=True, exist_ok=True)
    data_dir = work / "data"
    if not hb.catalog_ready(data_dir, args.catalog_size, args.real):
        built = hb.build_catalog(data_dir, args.catalog_size, args.real, hb.query_images()[0])
        print(f"catalog of {args.catalog_size} built in {built['total_s']:.0f} s", flush=True)
    key = hb.new_key(data_dir)
    head = ["shards", "query", "clients", "nodes ready s", "nodes RSS MB", "p50 ms", "p99 ms",
            "searches/s", "non-200", "partial (of 10)"]
    rows = [hb.row(*head), hb.row(*("---" for _ in head))]
    print("\n".join(rows), flush=True)
    for shards in [int(s) for s in args.shards.split(",")]:
        rows += measure(args, work, data_dir, key, shards)
    print("\n" + "\n".join(rows))
    print(json.dumps({"catalog_size": args.catalog_size, "work": str(work)}))


if __name__ == "__main__":
    main()
