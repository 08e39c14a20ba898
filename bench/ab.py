"""Two code states of the service, measured in alternating runs on the same synthetic catalog.

    .venv/bin/python bench/ab.py --before bfed4ea[,05463f4] [--rounds 2]
        [--catalog /tmp/mlbench-100k] [--catalog-size 100000] [--real 300]
        [--clients 4] [--duration 12] [--workers 2] [--bulk-rows 2000]

This machine's speed drifts by ±15 % from one minute to the next, so a before/after comparison
made of two separate `bench/http.py` runs says little. Here each round starts the service from
each `--before` revision (exported into a temporary folder and put first on PYTHONPATH),
then from the working tree, with the same client: the copy and the novel query at `--clients`
keep-alive clients, then a bulk job into an empty catalog. Rounds alternate old/new, and the
table shows every run.

Each code state reads its own copy of the catalog (`--catalog`, suffixed -REV for a before
state), written by its own `bench/http.py` (same seeds, same items) with its own code: the
schema its migrations make, the stored format its image kind encodes, and the fingerprint
version that kind reads (a catalog of another state's format would be refused or skipped).
Keys are made the same way. A catalog directory is reused when its
parameters match, else built.
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


TREE_STEP = """
import importlib.util, sys
from pathlib import Path
spec = importlib.util.spec_from_file_location("tree_http_bench", sys.argv[1])
hb = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = hb
spec.loader.exec_module(hb)
data_dir = Path(sys.argv[3])
if sys.argv[2] == "key":
    print(hb.new_key(data_dir))
elif not hb.catalog_ready(data_dir, int(sys.argv[4]), int(sys.argv[5])):
    hb.build_catalog(data_dir, int(sys.argv[4]), int(sys.argv[5]), hb.query_images()[0])
    try:  # rows carry the version this tree's image kind reads (some trees' bench wrote 1)
        from medialayer.kinds.image_search import ImageKind
    except ImportError:  # before the kind protocol: no version is read
        pass
    else:
        import sqlite3
        with sqlite3.connect(data_dir / "catalog.db") as db:
            db.execute("update media set fingerprint_version = ?", (ImageKind.version,))
"""


def in_tree(tree: Path, step: str, data_dir: Path, *args: str) -> str:
    """A step of `tree`'s own bench/http.py run on `tree`'s code (`key`: an unlimited key of
    all scopes, printed; `catalog`: the bench catalog, built unless already there)."""
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    out = subprocess.run([sys.executable, "-P", "-c", TREE_STEP, str(tree / "bench" / "http.py"),
                          step, str(data_dir), *args], env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    return out[-1] if out else ""


def run_round(hb: ModuleType, label: str, tree: Path, catalog: Path, args: argparse.Namespace,
              images: list[bytes], work: Path) -> list[str]:
    """One code state: search loads on its catalog, then a bulk job into an empty catalog."""
    os.environ["PYTHONPATH"] = str(tree / "src")  # the served code; this process keeps its own
    _, query, novel = hb.query_images()
    key = in_tree(tree, "key", catalog)
    cells = [label]
    with hb.serve(catalog, 0, work / f"{label}-search.log", args.workers) as server:
        for _ in range(10):
            hb.search_once(server, key, query)
        for q in (query, novel):
            load = hb.search_load(server, key, q, args.clients, args.duration)
            cells.append(f"{load.rate:.1f} ({load.pct(99):.0f})")
            cells.append(f"{1000 * load.server_cpu_s / max(1, load.ok):.1f} ms")
    empty = Path(tempfile.mkdtemp(dir=work))
    bulk_key = in_tree(tree, "key", empty)
    with hb.fixture_server(images) as (port, _), \
            hb.serve(empty, 0, work / f"{label}-bulk.log", args.workers) as server:
        bulk = hb.bulk_job(server, bulk_key, port, args.bulk_rows, "ab", "empty")
    cpu = 1000 * (bulk.server_cpu_s + bulk.workers_cpu_s) / bulk.rows
    return [*cells, f"{bulk.wall_rate:.1f}", f"{cpu:.1f} ms", str(bulk.failed)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True,
                    help="git revision(s) to compare against, comma-separated")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--catalog", type=Path, default=Path("/tmp/mlbench-100k"),
                    help="the working tree's catalog (as `bench/http.py --keep DIR` builds it)")
    ap.add_argument("--catalog-size", type=int, default=100_000)
    ap.add_argument("--real", type=int, default=300, help="real fingerprints in each catalog")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--duration", type=float, default=12.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--bulk-rows", type=int, default=2000)
    args = ap.parse_args()
    hb = http_bench()
    work = Path(tempfile.mkdtemp(prefix="medialayer-ab-"))
    states = []
    for rev in args.before.split(","):
        tree = work / rev
        tree.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
        states.append((f"{rev} (before)", tree, Path(f"{args.catalog}-{rev}")))
    states.append(("working tree", ROOT, args.catalog))
    try:
        for _, tree, catalog in states:
            in_tree(tree, "catalog", catalog, str(args.catalog_size), str(args.real))
        images = hb.bulk_images(args.bulk_rows)
        rows = [run_round(hb, label, tree, catalog, args, images, work)
                for _ in range(args.rounds) for label, tree, catalog in states]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    head = ["code", "copy /s (p99 ms)", "CPU per copy search", "novel /s (p99 ms)",
            "CPU per novel search", "bulk rows/s", "CPU per bulk row", "bulk failed"]
    print(f"\n{args.catalog_size:,} items ({args.real} real) in {args.catalog} (-REV for a "
          f"before state), `--workers {args.workers}`, {args.clients} clients, "
          f"{args.duration:.0f} s per load, {args.bulk_rows} bulk rows\n")
    for line in (head, ["---"] * len(head), *rows):
        print("| " + " | ".join(line) + " |")


if __name__ == "__main__":
    main()
