"""Soak: mixed traffic at a fraction of measured capacity for a long time; errors, p99, RSS.

`medialayer serve --workers 2` runs on PostgreSQL (a fresh schema, dropped afterwards) with a
seeded catalog. A closed-loop probe first measures the capacity of the traffic mix (searches
of a copy and of a novel photo, uploads, deletes of what was uploaded, a small bulk CSV now and
then); the soak then sends the same mix open-loop at `--fraction` of that rate for
`--minutes`, and prints one row per minute: requests, errors (must stay 0), p50/p99 latency,
the catalog size and the resident memory of each HTTP worker (must stay flat after warm-up).

The catalog is held steady: a delete removes an upload or a bulk row alike (bulk rows by their
external id), and once `--added` items are in the catalog beyond the seed, an add turns into a
delete. Otherwise the bulk rows pile up and memory growth cannot be told from catalog growth.

    .venv/bin/python bench/soak.py --minutes 30 --fraction 0.8

The HTTP plumbing (starting the service, multipart bodies, the image fixtures, the bulk origin
server, /proc readings) is bench/http.py's.
"""

from __future__ import annotations

import os
import sys

if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)  # as in bench/http.py: keep the standard library's `http` importable

import argparse
import asyncio
import collections
import importlib.util
import random
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import numpy as np
import sqlalchemy as sa

from medialayer import MediaLayer
from medialayer.keys import create_key

HERE = Path(__file__).resolve().parent
MIX = (("search-copy", 45), ("search-novel", 25), ("upload", 14), ("delete", 14), ("bulk", 2))
"""Request kinds and their weights in the traffic mix."""
BULK_ROWS = 20
KEEPALIVE_SECONDS = 2.0
"""How long the client keeps an idle connection: less than the server's keep-alive timeout
(uvicorn's `timeout_keep_alive`, 5 s). With both at 5 s the client now and then sent a request
on a connection the server was closing that very moment, and lost it (a ReadError or
RemoteProtocolError: a client-side race, reproduced in docs/benchmarks-http.md)."""
MAX_IN_FLIGHT = 64
"""Open-loop requests beyond this many outstanding are counted as shed, not sent: a server
that falls behind shows up as shed requests and latency, not as an unbounded client."""


def http_bench() -> ModuleType:
    """bench/http.py as a module (its file name would shadow the standard library's)."""
    spec = importlib.util.spec_from_file_location("medialayer_http_bench", HERE / "http.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@dataclass
class Minute:
    requests: int = 0
    shed: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    rss_mb: list[float] = field(default_factory=list)
    added: int = 0
    """Items the soak had added (uploads and bulk rows) and not yet deleted, at the minute's end."""


class Traffic:
    """The request mix, its bodies built once; media it uploaded are what it deletes."""

    def __init__(self, hb: ModuleType, key: str, origin_port: int, images: list[bytes],
                 cap: int) -> None:
        original, copy, novel = hb.query_images()
        self.hb = hb
        self.headers = {"X-API-Key": key}
        self.searches = {kind: hb.multipart({"top_k": "5"}, "q.jpg", body)
                         for kind, body in (("search-copy", copy), ("search-novel", novel))}
        self.original = original
        self.uploads = [hb.multipart({}, f"u{i}.jpg", img) for i, img in enumerate(images)]
        self.origin_port = origin_port
        self.uploaded: list[str] = []
        """Media ids of uploads, and `ext:`-prefixed external ids of bulk rows, to delete."""
        self.cap = cap
        self.kinds = [k for k, _ in MIX]
        self.weights = [w for _, w in MIX]

    async def one(self, client: httpx.AsyncClient, rng: random.Random) -> str | None:
        """Send one request of the mix; None if it went as expected, else what went wrong."""
        kind = rng.choices(self.kinds, self.weights)[0]
        if kind == "delete" and not self.uploaded:
            kind = "upload"
        elif kind in ("upload", "bulk") and len(self.uploaded) >= self.cap:
            kind = "delete"
        if kind.startswith("search"):
            body, ctype = self.searches[kind]
            r = await client.post("/v1/search/image/upload", content=body,
                                  headers={"Content-Type": ctype})
            ok = r.status_code == 200 and (kind == "search-novel" or bool(r.json()["results"]))
        elif kind == "upload":
            body, ctype = rng.choice(self.uploads)
            r = await client.post("/v1/media/image/upload", content=body,
                                  headers={"Content-Type": ctype})
            ok = r.status_code == 201
            if ok:
                self.uploaded.append(r.json()["id"])
        elif kind == "delete":
            return await self._delete(client, self.uploaded.pop(rng.randrange(len(self.uploaded))))
        else:
            body, ctype, external_ids = self._csv(rng)
            r = await client.post("/v1/media/bulk", content=body, headers={"Content-Type": ctype})
            ok = r.status_code == 202
            if ok:
                self.uploaded += [f"ext:{e}" for e in external_ids]
        return None if ok else f"{kind} {r.status_code}"

    async def _delete(self, client: httpx.AsyncClient, target: str) -> str | None:
        """Delete an upload by id, or a bulk row by external id (kept for later if its job has
        not reached it yet)."""
        media_id = target
        if target.startswith("ext:"):
            r = await client.get("/v1/media", params={"external_id": target[4:]})
            if r.status_code != 200:
                return f"delete-lookup {r.status_code}"
            items = r.json()["items"]
            if not items:
                self.uploaded.append(target)
                return None
            media_id = items[0]["id"]
        r = await client.delete(f"/v1/media/{media_id}")
        return None if r.status_code == 204 else f"delete {r.status_code}"

    def _csv(self, rng: random.Random) -> tuple[bytes, str, list[str]]:
        tag = uuid.uuid4().hex[:8]
        external_ids = [f"soak-{tag}-{i}" for i in range(BULK_ROWS)]
        lines = ["url,external_id"] + [
            f"http://{self.hb.HOST}:{self.origin_port}/img/{rng.randrange(len(self.uploads))}.jpg"
            f"?t={tag}{i},{e}" for i, e in enumerate(external_ids)]
        return (*self.hb.multipart({}, "rows.csv", "\n".join(lines).encode()), external_ids)


async def timed(traffic: Traffic, client: httpx.AsyncClient, rng: random.Random,
                minute: Minute) -> None:
    t0 = time.perf_counter()
    try:
        problem = await traffic.one(client, rng)
    except (httpx.HTTPError, ValueError, KeyError) as e:
        problem = type(e).__name__
    minute.requests += 1
    if problem:
        minute.errors[problem] += 1
    else:
        minute.latencies_ms.append((time.perf_counter() - t0) * 1000)


async def probe(traffic: Traffic, url: str, clients: int, seconds: float) -> float:
    """Closed loop: `clients` connections back to back; the mix's capacity in requests/s."""
    minute = Minute()
    deadline = time.perf_counter() + seconds
    async with httpx.AsyncClient(base_url=url, headers=traffic.headers, timeout=120,
                                 trust_env=False,
                                 limits=httpx.Limits(keepalive_expiry=KEEPALIVE_SECONDS)) as client:
        async def loop(seed: int) -> None:
            rng = random.Random(seed)
            while time.perf_counter() < deadline:
                await timed(traffic, client, rng, minute)

        t0 = time.perf_counter()
        await asyncio.gather(*(loop(i) for i in range(clients)))
        elapsed = time.perf_counter() - t0
    if minute.errors:
        raise SystemExit(f"errors while measuring capacity: {dict(minute.errors)}")
    return minute.requests / elapsed


async def soak(traffic: Traffic, url: str, rate: float, minutes: float,
               workers: Callable[[], list[float]]) -> list[Minute]:
    """Open loop at `rate` requests/s (Poisson arrivals) for `minutes`; one Minute per minute."""
    rng = random.Random(1)
    rows: list[Minute] = []
    in_flight: set[asyncio.Task[None]] = set()
    start = time.perf_counter()
    end = start + minutes * 60
    async with httpx.AsyncClient(base_url=url, headers=traffic.headers, timeout=120,
                                 trust_env=False,
                                 limits=httpx.Limits(max_connections=MAX_IN_FLIGHT,
                                                     keepalive_expiry=KEEPALIVE_SECONDS)
                                 ) as client:
        next_at = start
        while (now := time.perf_counter()) < end:
            index = int((now - start) // 60)
            while len(rows) <= index:
                if rows:
                    rows[-1].rss_mb, rows[-1].added = workers(), len(traffic.uploaded)
                rows.append(Minute())
            if now < next_at:
                await asyncio.sleep(next_at - now)
                continue
            next_at += rng.expovariate(rate)
            if len(in_flight) >= MAX_IN_FLIGHT:
                rows[index].shed += 1
                continue
            task = asyncio.create_task(timed(traffic, client, rng, rows[index]))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        await asyncio.gather(*in_flight)
    rows[-1].rss_mb, rows[-1].added = workers(), len(traffic.uploaded)
    return rows


def worker_rss(hb: ModuleType, server: Any) -> list[float]:
    """Resident MB of each HTTP worker process (their pools and forkservers not included)."""
    workers = [p for p in hb.descendants(server.pid)
               if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]
    return [hb.proc_status(p, "VmRSS") / 1024 for p in sorted(workers)]


def table(rows: list[Minute]) -> list[str]:
    out = ["| minute | requests | shed | errors | p50 ms | p99 ms | added | RSS MB per worker |",
           "|---:|---:|---:|---:|---:|---:|---:|---|"]
    for i, m in enumerate(rows, 1):
        lat = np.array(m.latencies_ms or [float("nan")])
        errors = sum(m.errors.values())
        out.append(f"| {i} | {m.requests} | {m.shed} | {errors} | {np.percentile(lat, 50):.0f} "
                   f"| {np.percentile(lat, 99):.0f} | {m.added} | "
                   f"{' / '.join(f'{r:.0f}' for r in m.rss_mb)} |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--fraction", type=float, default=0.8, help="of the measured capacity")
    ap.add_argument("--workers", type=int, default=2, help="`medialayer serve --workers`")
    ap.add_argument("--database-url", default=os.environ.get(
        "MEDIALAYER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--seed-items", type=int, default=200, help="catalog items before the soak")
    ap.add_argument("--added", type=int, default=200,
                    help="items the soak keeps added beyond the seed (adds turn into deletes)")
    ap.add_argument("--probe-seconds", type=float, default=30.0)
    ap.add_argument("--probe-clients", type=int, default=4)
    args = ap.parse_args()
    hb = http_bench()
    schema = f"ml_soak_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(args.database_url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'create schema "{schema}"'))
    sep = "&" if "?" in args.database_url else "?"
    url = f"{args.database_url}{sep}options=-csearch_path%3D{schema}"
    work = Path(tempfile.mkdtemp(prefix="medialayer-soak-"))
    try:
        run(hb, args, url, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        with admin.begin() as conn:
            conn.execute(sa.text(f'drop schema "{schema}" cascade'))
        admin.dispose()


def run(hb: ModuleType, args: argparse.Namespace, url: str, work: Path) -> None:
    exe = Path(sys.executable)
    command = [exe.relative_to(Path.cwd()).as_posix() if exe.is_relative_to(Path.cwd())
               else str(exe), *sys.argv]
    print("\n".join(f"- {line}" for line in hb.environment(command)), flush=True)
    ml = MediaLayer(work, database_url=url)
    key = create_key(ml.store, hb.TENANT, ["index", "search", "admin"], name="soak",
                     rate_limit=0)[1]
    ml.close()
    images = hb.bulk_images(max(args.seed_items, 50))
    with hb.fixture_server(images) as (port, _served), \
            hb.serve(work / "data", 0, work / "serve.log", args.workers,
                     settings={"MEDIALAYER_DATABASE_URL": url}) as server:
        seeded = hb.bulk_job(server, key, port, args.seed_items, "seed", "soak")
        print(f"- seeded {seeded.done} items ({seeded.failed} failed) in {seeded.wall_s:.0f} s",
              flush=True)
        traffic = Traffic(hb, key, port, images[:50], args.added)
        httpx.post(server.url + "/v1/media/image/upload", headers=traffic.headers,
                   files={"file": ("original.jpg", traffic.original)}, timeout=120)
        time.sleep(2)  # the other worker sees the original within its sync interval (0.5 s)
        capacity = asyncio.run(probe(traffic, server.url, args.probe_clients, args.probe_seconds))
        rate = args.fraction * capacity
        print(f"- capacity of the mix: {capacity:.1f} requests/s ({args.probe_clients} clients, "
              f"{args.probe_seconds:.0f} s); soak at {args.fraction:.0%}: {rate:.1f}/s for "
              f"{args.minutes:g} min", flush=True)
        rows = asyncio.run(soak(traffic, server.url, rate, args.minutes,
                                lambda: worker_rss(hb, server)))
        errors = collections.Counter()
        for m in rows:
            errors.update(m.errors)
        print("\n" + "\n".join(table(rows)))
        print(f"\n- errors: {sum(errors.values())} {dict(errors) if errors else ''}")
        if errors:
            print(first_tracebacks(work / "serve.log") or hb.tail(work / "serve.log"))
            raise SystemExit(1)


def first_tracebacks(log: Path, count: int = 3) -> str:
    """The service log's first few tracebacks (with the line before each): the log's tail is
    only access lines by the time a long soak ends."""
    lines = log.read_text(errors="replace").splitlines()
    found: list[str] = []
    for i, line in enumerate(lines):
        if line.startswith("Traceback") and len(found) < count:
            end = next((j for j in range(i + 1, len(lines))
                        if not lines[j].startswith((" ", "\t"))), len(lines))
            found.append("\n".join(lines[max(0, i - 1):end + 1]))
    return "\n\n".join(found)


if __name__ == "__main__":
    main()
