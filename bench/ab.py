"""Two code states of the service, measured in alternating runs on one catalog.

    .venv/bin/python bench/ab.py --before 368e4cf [--after WORKTREE|HEAD] [--rounds 2]
        [--catalog /tmp/mlbench-100k] [--clients 4] [--duration 12] [--workers 2]
        [--bulk-rows 2000]

This machine's speed drifts by ±15 % from one minute to the next, so a before/after comparison
made of two separate `bench/http.py` runs says little. Here each round starts the service from
`--before` (a git revision, checked out into a temporary worktree and put first on PYTHONPATH),
then from the working tree, on the same catalog (built by `bench/http.py --keep DIR`), with
the same client: the copy and the novel query at `--clients` keep-alive clients, then a bulk job
into an empty catalog. Rounds alternate old/new, and the table shows every run.
"""

from __future__ import annotations

import os
import sys

if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)  # as in bench/http.py: keep the standard library's `http` importable

import argparse
import importlib.util
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def http_bench() -> ModuleType:
    """bench/http.py as a module (its file name would shadow the standard library's)."""
    spec = importlib.util.spec_from_file_location("medialayer_http_bench", HERE / "http.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def run_round(hb: ModuleType, label: str, src: Path, catalog: Path, args: argparse.Namespace,
              images: list[bytes], work: Path) -> list[str]:
    """One code state: search loads on the catalog, then a bulk job into an empty catalog."""
    os.environ["PYTHONPATH"] = str(src)  # the served code; this process keeps its own
    _, query, novel = hb.query_images()
    key = hb.new_key(catalog)
    cells = [label]
    with hb.serve(catalog, 0, work / f"{label}-search.log", args.workers) as server:
        for _ in range(10):
            hb.search_once(server, key, query)
        for q in (query, novel):
            load = hb.search_load(server, key, q, args.clients, args.duration)
            cells.append(f"{load.rate:.1f} ({load.pct(99):.0f})")
            cells.append(f"{1000 * load.server_cpu_s / max(1, load.ok):.1f} ms")
    empty = Path(tempfile.mkdtemp(dir=work))
    bulk_key = hb.new_key(empty)
    with hb.fixture_server(images) as (port, _), \
            hb.serve(empty, 0, work / f"{label}-bulk.log", args.workers) as server:
        bulk = hb.bulk_job(server, bulk_key, port, args.bulk_rows, "ab", "empty")
    cpu = 1000 * (bulk.server_cpu_s + bulk.workers_cpu_s) / bulk.rows
    return [*cells, f"{bulk.wall_rate:.1f}", f"{cpu:.1f} ms", str(bulk.failed)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="git revision to compare against")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--catalog", type=Path, default=Path("/tmp/mlbench-100k"),
                    help="a catalog built by `bench/http.py --keep DIR`")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--duration", type=float, default=12.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--bulk-rows", type=int, default=2000)
    args = ap.parse_args()
    if not (args.catalog / "bench-catalog.json").exists():
        raise SystemExit(f"{args.catalog} holds no bench catalog: run bench/http.py --keep first")
    hb = http_bench()
    work = Path(tempfile.mkdtemp(prefix="medialayer-ab-"))
    before = work / "before"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(before),
                    args.before], check=True, capture_output=True)
    try:
        images = hb.bulk_images(args.bulk_rows)
        states = [(f"{args.before} (before)", before / "src"), ("working tree", ROOT / "src")]
        rows = [run_round(hb, label, src, args.catalog, args, images, work)
                for _ in range(args.rounds) for label, src in states]
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)],
                       check=False, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    head = ["code", "copy /s (p99 ms)", "CPU per copy search", "novel /s (p99 ms)",
            "CPU per novel search", "bulk rows/s", "CPU per bulk row", "bulk failed"]
    print(f"\n{args.catalog}, `--workers {args.workers}`, {args.clients} clients, "
          f"{args.duration:.0f} s per load, {args.bulk_rows} bulk rows\n")
    for line in (head, ["---"] * len(head), *rows):
        print("| " + " | ".join(line) + " |")


if __name__ == "__main__":
    main()
