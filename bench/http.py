"""The HTTP service on loopback: search-by-upload at a large catalog, and bulk ingest from URLs.

    .venv/bin/python bench/http.py [--catalog-size 100000] [--duration 20] [--concurrency 8,16]
        [--bulk-rows 2000] [--port 0] [--workers 1] [--keep DIR] [--profile DIR]
        [--no-bulk-catalog]

1. Search. A SQLite catalog of `--catalog-size` items is written straight through the store's
   session: synthetic, unrelated fingerprints (random code, 256 random keypoints and
   descriptors) plus `--real` real fingerprints of generated photos, one of them the original
   of the query. The real service (`medialayer serve`, on `--port`) is started on it as a
   subprocess; `POST /v1/search/image/upload` with a ~100 KB JPEG (an edited copy of that
   original, which must come back top-1 with confidence high) is sent by `c` concurrent
   keep-alive clients for `--duration` seconds, for each `c` in `--concurrency`; then the same
   with a novel query (a photo in no catalog), which pays for every query view.
2. Bulk ingest. A fixture HTTP server on 127.0.0.1 serves `--bulk-rows` distinct generated
   JPEGs (800x600, 30-100 KB); a CSV naming them is posted to `/v1/media/bulk` and the job is
   polled until done: into the large catalog (the same server, which then runs on a copy so the
   catalog stays as built; skip with `--no-bulk-catalog`) and into an empty one.
3. In-process. The same search, `ml.search(bytes)` against the same catalog, on a worker thread
   (as the server's threadpool runs it) and on the main thread, so the HTTP overhead shows as a
   ratio; and the fingerprint alone, for the query and for the bulk images.

Nothing leaves 127.0.0.1. `--keep DIR` keeps the built catalog and reuses it on the next run.
`--profile DIR` adds one more search run and bulk job under `py-spy record` (not counted in the
results table) and prints where the server's time goes.
"""

from __future__ import annotations

import os
import sys

# As a script this file's folder leads sys.path, and this file (http.py) would shadow the standard
# library's `http` package that http.server, httpx and uvicorn import.
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

import argparse
import asyncio
import collections
import hashlib
import io
import json
import platform
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path

import httpx
import numpy as np
import uvloop
from PIL import Image
from sqlalchemy import insert

from medialayer.catalog.models import Media
from medialayer.examples import draw_shapes
from medialayer.keys import create_key
from medialayer.kinds import get_kind
from medialayer.kinds.image import Features, ImageFingerprint, encode, fingerprint_bytes
from medialayer.kinds.image_search import ImageKind
from medialayer.service import MediaLayer

HOST = "127.0.0.1"
TENANT = "default"
QUERY_SEED = 7
NOVEL_SEED = 7_000_007
QUERY_ORIGINAL = "real-query-original"
CATALOG_MARKER = "bench-catalog.json"
CATALOG_FORMAT = 1
INSERT_BATCH = 5000
BIN = Path(sys.executable).parent
TARGET_SEARCH_RATE, TARGET_P99_MS, TARGET_INGEST_RATE = 150.0, 100.0, 150.0


# -- synthetic images -----------------------------------------------------------------------


def texture(seed: int, size: tuple[int, int]) -> Image.Image:
    """Multi-scale smooth colour noise: a photo-like background with keypoints at every scale."""
    rng = np.random.default_rng(seed)
    w, h = size
    base = np.zeros((h, w, 3), np.float32)
    for cells in (4, 12, 40):
        noise = (rng.random((cells * h // w + 1, cells, 3)) * 255).astype(np.uint8)
        base += np.asarray(Image.fromarray(noise).resize((w, h), Image.BICUBIC), np.float32) / 3
    return Image.fromarray(base.clip(0, 255).astype(np.uint8))


def shapes(im: Image.Image, seed: int, count: int = 30) -> Image.Image:
    """A copy of `im` with `count` random filled ellipses, boxes and thick lines on it."""
    return draw_shapes(im.copy(), np.random.default_rng(seed), count)


def photo(seed: int, size: tuple[int, int] = (800, 600)) -> Image.Image:
    return shapes(texture(seed, size), seed + 1_000_003)


def jpeg(im: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    im.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def query_images() -> tuple[bytes, bytes, bytes]:
    """(original as catalogued, the query, a novel query): the queries are 90 % centre crops
    re-encoded to about 100 KB; the novel one's original is in no catalog."""
    original = photo(QUERY_SEED, (1024, 768))
    return jpeg(original, 90), centre_crop_jpeg(original), centre_crop_jpeg(
        photo(NOVEL_SEED, (1024, 768)))


def centre_crop_jpeg(original: Image.Image) -> bytes:
    w, h = round(original.width * 0.9), round(original.height * 0.9)
    x, y = (original.width - w) // 2, (original.height - h) // 2
    crop = original.crop((x, y, x + w, y + h))
    return min((jpeg(crop, q) for q in range(80, 99, 2)), key=lambda b: abs(len(b) - 100_000))


def bulk_images(count: int, bases: int = 200) -> list[bytes]:
    """`count` distinct 800x600 JPEGs: `bases` textures, each row its own shapes and quality."""
    textures = [texture(10_000 + b, (800, 600)) for b in range(min(bases, count))]
    rng = np.random.default_rng(5)
    return [jpeg(shapes(textures[i % len(textures)], 20_000 + i), int(rng.integers(75, 93)))
            for i in range(count)]


# -- the catalog ----------------------------------------------------------------------------


def synthetic_blobs(rng: np.random.Generator, count: int) -> list[bytes]:
    """Stored fingerprints of unrelated items: random codes, keypoints and descriptors."""
    codes = rng.integers(0, 2**64 - 1, (count, 2), dtype=np.uint64, endpoint=True)
    points = (rng.random((count, 256, 2)) * 480).astype(np.float32)
    descriptors = rng.integers(0, 256, (count, 256, 32), dtype=np.uint8)
    return [encode(ImageFingerprint(code=int(codes[i, 0]),
                                     features=Features(points[i], descriptors[i]),
                                     query_codes=(int(codes[i, 1]),)))
            for i in range(count)]


def build_catalog(data_dir: Path, size: int, real: int, original: bytes) -> dict[str, float]:
    """Write `size` items (`real` of them real fingerprints) into a fresh SQLite catalog."""
    t0 = time.perf_counter()
    real = max(1, min(real, size))
    real_blobs = [encode(fingerprint_bytes(original))]
    real_blobs += [encode(fingerprint_bytes(jpeg(photo(100 + i)))) for i in range(real - 1)]
    t_real = time.perf_counter() - t0
    positions = {int(p): n for n, p in enumerate(np.linspace(0, size - 1, real).astype(int))}
    middle = sorted(positions)[real // 2]  # the query's original sits mid-catalog
    positions[middle], positions[sorted(positions)[0]] = 0, positions[middle]
    ml = MediaLayer(data_dir)
    rng = np.random.default_rng(2026)
    created = datetime.now(UTC)
    for start in range(0, size, INSERT_BATCH):
        count = min(INSERT_BATCH, size - start)
        blobs = synthetic_blobs(rng, count)
        rows = []
        for i in range(count):
            n = positions.get(start + i)
            if n is None:
                name, external_id, blob = f"synthetic {start + i}", f"syn-{start + i}", blobs[i]
            else:
                name = external_id = QUERY_ORIGINAL if n == 0 else f"real-{n}"
                blob = real_blobs[n]
            rows.append({"id": str(uuid.uuid4()), "tenant": TENANT, "media_type": "image",
                         "name": name, "external_id": external_id, "source": None,
                         "metadata_": {}, "created_at": created, "fingerprint": blob,
                         "fingerprint_version": ImageKind.version})
        with ml.store.session.begin() as s:
            s.execute(insert(Media), rows)
    count = ml.store.count()
    ml.close()
    if count != size:
        raise SystemExit(f"catalog build wrote {count} items, expected {size}")
    (data_dir / CATALOG_MARKER).write_text(json.dumps(
        {"format": CATALOG_FORMAT, "catalog_size": size, "real": real,
         "query_seed": QUERY_SEED}))
    return {"real_s": t_real, "total_s": time.perf_counter() - t0}


def catalog_ready(data_dir: Path, size: int, real: int) -> bool:
    """Whether `data_dir` holds a catalog this bench built with the same parameters."""
    marker = data_dir / CATALOG_MARKER
    if marker.exists():
        meta = json.loads(marker.read_text())
        return meta == {"format": CATALOG_FORMAT, "catalog_size": size,
                        "real": max(1, min(real, size)), "query_seed": QUERY_SEED}
    if data_dir.exists() and any(data_dir.iterdir()):
        raise SystemExit(f"{data_dir} is not empty and was not built by this bench")
    return False


def copy_catalog(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True)
    for path in src.glob("catalog.db*"):
        shutil.copyfile(path, dst / path.name)


def new_key(data_dir: Path) -> str:
    """An all-scopes key with no rate limit (0 = unlimited, see api/auth.py)."""
    ml = MediaLayer(data_dir)
    try:
        return create_key(ml.store, TENANT, ["index", "search", "admin"], name="bench",
                          rate_limit=0)[1]
    finally:
        ml.close()


# -- the service as a subprocess ------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def proc_status(pid: int, field_name: str) -> int:
    """A kB field of /proc/PID/status (VmRSS, VmHWM), or 0 if the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (0 if gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    """Child processes of `pid`, recursively (the bulk job's forkserver and its workers)."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children[ppid].append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    ready_s: float
    log: Path
    seen: set[int] = field(default_factory=set)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def family(self) -> list[int]:
        kids = descendants(self.pid)
        self.seen.update(kids)
        return kids

    def rss_mb(self, with_children: bool = False, field_name: str = "VmRSS") -> float:
        """Resident memory (or, with VmHWM, its peak) of the server, summed over its children."""
        pids = [self.pid, *(self.family() if with_children else [])]
        return sum(proc_status(p, field_name) for p in pids) / 1024

    def cpu(self) -> tuple[float, float]:
        """CPU seconds of (the server process, its children)."""
        return cpu_seconds(self.pid), sum(cpu_seconds(p) for p in self.family())


@contextmanager
def serve(data_dir: Path, port: int, log: Path, workers: int = 1, ready_timeout: float = 3600,
          settings: dict[str, str] | None = None) -> Iterator[Server]:
    """`medialayer serve` on `data_dir`, every worker ready on entry, stopped on exit.

    One worker is ready when /readyz answers 200; with several, when each has logged that its
    start-up (which builds its indexes) is complete.
    """
    port = port or free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIALAYER_")}
    env.update(MEDIALAYER_DATA_DIR=str(data_dir), MEDIALAYER_DEFAULT_RATE_LIMIT="0",
               MEDIALAYER_FETCH_ALLOW_NETWORKS=f'["{HOST}/32"]', **(settings or {}))
    url = f"http://{HOST}:{port}"
    t0 = time.perf_counter()
    with log.open("wb") as out:
        proc = subprocess.Popen([str(BIN / "medialayer"), "serve", "--host", HOST,
                                 "--port", str(port), "--workers", str(workers)], env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    server = Server(proc, url, 0.0, log)
    try:
        with httpx.Client(trust_env=False, timeout=5) as client:
            while True:
                if proc.poll() is not None:
                    raise SystemExit(f"the server exited ({proc.returncode}):\n{tail(log)}")
                try:
                    started = log.read_bytes().count(b"Application startup complete")
                    if client.get(url + "/readyz").status_code == 200 and \
                            (workers == 1 or started >= workers):
                        break
                except httpx.TransportError:
                    pass
                if time.perf_counter() - t0 > ready_timeout:
                    raise SystemExit(f"the server was not ready in {ready_timeout} s")
                time.sleep(0.1)
        server.ready_s = time.perf_counter() - t0
        server.family()
        yield server
    finally:
        stop(server)


def stop(server: Server) -> None:
    """SIGTERM (uvicorn shuts down gracefully), then SIGKILL; then any leftover child of it."""
    server.family()
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(30)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()
    for pid in server.seen:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# -- search load ----------------------------------------------------------------------------


def multipart(fields: dict[str, str], filename: str, data: bytes) -> tuple[bytes, str]:
    """A multipart body built once, so the clients spend no CPU re-encoding it per request."""
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                 f'filename="{filename}"\r\nContent-Type: image/jpeg\r\n\r\n'.encode() + data
                 + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


@dataclass
class Load:
    concurrency: int
    seconds: float
    latencies_ms: list[float]
    statuses: collections.Counter[int]
    errors: collections.Counter[str]
    client_cpu_s: float
    server_cpu_s: float
    query: str = "copy"

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    request: bytes) -> tuple[int, bytes]:
    """One request on a keep-alive connection: (status, body). Only what uvicorn answers with
    (Content-Length bodies) is understood; anything else is an error."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = next((int(line.split(b":", 1)[1]) for line in lines[1:]
                   if line[:15].lower() == b"content-length:"), None)
    if length is None:
        raise ValueError("response without Content-Length")
    return status, await reader.readexactly(length)


async def _load(url: str, headers: dict[str, str], body: bytes, concurrency: int,
                duration: float) -> tuple[float, list[float], collections.Counter[int],
                                          collections.Counter[str]]:
    """`concurrency` keep-alive connections, each sending the same pre-built request back to
    back: a load generator that spends a few tens of microseconds per request, so the
    machine's two cores go to the server (httpx spent about 2.5 ms of CPU per request)."""
    latencies: list[float] = []
    statuses: collections.Counter[int] = collections.Counter()
    errors: collections.Counter[str] = collections.Counter()
    target = httpx.URL(url)
    head = [f"POST {target.raw_path.decode()} HTTP/1.1", f"Host: {target.host}:{target.port}",
            f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in headers.items())]
    request = ("\r\n".join(head) + "\r\n\r\n").encode() + body
    start = time.perf_counter()
    deadline = start + duration

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(target.host, target.port)
        try:
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                try:
                    status, answer = await _exchange(reader, writer, request)
                except (OSError, ValueError, asyncio.IncompleteReadError) as e:
                    errors[type(e).__name__] += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(target.host, target.port)
                    continue
                statuses[status] += 1
                if status == 200:
                    latencies.append((time.perf_counter() - t0) * 1000)
                elif len(errors) < 5:
                    errors[answer[:120].decode(errors="replace")] += 1
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start, latencies, statuses, errors


def search_load(server: Server, key: str, query: bytes, concurrency: int,
                duration: float, label: str = "copy") -> Load:
    """`concurrency` keep-alive clients posting the query back to back for `duration` s."""
    body, content_type = multipart({"top_k": "5"}, "query.jpg", query)
    headers = {"X-API-Key": key, "Content-Type": content_type}
    cpu0, server0 = time.process_time(), sum(server.cpu())
    seconds, latencies, statuses, errors = uvloop.run(_load(
        server.url + "/v1/search/image/upload", headers, body, concurrency, duration))
    return Load(concurrency, seconds, latencies, statuses, errors,
                time.process_time() - cpu0, sum(server.cpu()) - server0, label)


def search_once(server: Server, key: str, query: bytes) -> tuple[float, dict]:
    body, content_type = multipart({"top_k": "5"}, "query.jpg", query)
    t0 = time.perf_counter()
    response = httpx.post(server.url + "/v1/search/image/upload", content=body, timeout=1800,
                          headers={"X-API-Key": key, "Content-Type": content_type},
                          trust_env=False)
    seconds = time.perf_counter() - t0
    if response.status_code != 200:
        raise SystemExit(f"search answered {response.status_code}: {response.text[:300]}")
    return seconds, response.json()


def check_novel(answer: dict) -> None:
    if any(r["confidence"] == "high" for r in answer["results"]):
        raise SystemExit(f"the novel query matched something with high confidence: {answer}")


def check_top1(answer: dict) -> None:
    results = answer["results"]
    if not results or results[0]["external_id"] != QUERY_ORIGINAL or \
            results[0]["confidence"] != "high":
        raise SystemExit(f"the query's original is not the top-1 high-confidence hit: {answer}")


# -- in-process -----------------------------------------------------------------------------


def timed_loop(fn: Callable[[], object], seconds: float, max_calls: int = 100_000
               ) -> list[float]:
    """Latencies (ms) of calling `fn()` back to back for about `seconds`."""
    out: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline and len(out) < max_calls:
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def in_process(data_dir: Path, query: bytes, novel: bytes, duration: float
               ) -> dict[str, object]:
    """The same search with no HTTP: index build (first search), then back-to-back searches on
    a worker thread (as the server runs them, in its threadpool) and on the main thread (as the
    CLI and most library callers do); then the novel query on a worker thread."""
    ml = MediaLayer(data_dir)
    try:
        t0 = time.perf_counter()
        first = ml.search(query)
        load_s = time.perf_counter() - t0
        hit = first.results[0] if first.results else None
        if hit is None or hit.media.external_id != QUERY_ORIGINAL or hit.confidence != "high":
            raise SystemExit(f"in-process: the query's original is not the top-1 hit: {first}")
        with ThreadPoolExecutor(1) as pool:
            worker = pool.submit(timed_loop, lambda: ml.search(query), duration).result()
            unmatched = pool.submit(timed_loop, lambda: ml.search(novel), duration).result()
        main_thread = timed_loop(lambda: ml.search(query), duration)
        rss = proc_status(os.getpid(), "VmRSS") / 1024
        items, index_bytes = ml.index_sizes()["image"]
    finally:
        ml.close()
    return {"load_s": load_s, "worker": worker, "main": main_thread, "novel": unmatched,
            "rss_mb": rss, "index_bytes_per_item": index_bytes / max(1, items)}


def fingerprint_rate(images: list[bytes], limit: int = 200) -> float:
    """Images/s on one core for the bulk path's fingerprint (`kind.stored(data)`)."""
    sample = images[:limit]
    best = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        for data in sample:
            fingerprint_bytes(data)
        best = min(best, time.perf_counter() - t0)
    return len(sample) / best


# -- bulk ingest ----------------------------------------------------------------------------


class FixtureServer(ThreadingHTTPServer):
    request_queue_size = 256  # the job runner opens many connections at once
    daemon_threads = True


@contextmanager
def fixture_server(images: list[bytes]) -> Iterator[tuple[int, list[int]]]:
    """Serves `/img/{i}.jpg` -> images[i] on 127.0.0.1; yields (port, [requests served])."""
    served = [0]
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 - the http.server protocol
            name = self.path.split("?", 1)[0].rsplit("/", 1)[-1]
            try:
                body = images[int(name.removesuffix(".jpg"))]
            except (ValueError, IndexError):
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                return
            with lock:
                served[0] += 1

    server = FixtureServer((HOST, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], served
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Bulk:
    catalog: str
    rows: int
    done: int
    failed: int
    job_rate: float
    wall_s: float
    server_cpu_s: float
    workers_cpu_s: float
    bench_cpu_s: float
    """This process: the fixture server's threads and the job polling."""
    rss_mb: float
    errors: list[dict] = field(default_factory=list)

    @property
    def wall_rate(self) -> float:
        return self.rows / self.wall_s


def bulk_job(server: Server, key: str, port: int, rows: int, prefix: str, catalog: str,
             timeout: float = 1800) -> Bulk:
    """POST a `rows`-row CSV to /v1/media/bulk, poll the job until done."""
    lines = ["url,name,external_id"]
    lines += [f"http://{HOST}:{port}/img/{i}.jpg?n={i},bulk {i},{prefix}-{i}" for i in range(rows)]
    csv_body, content_type = multipart({}, "rows.csv", "\n".join(lines).encode() + b"\n")
    headers = {"X-API-Key": key}
    cpu0, kids0, own0 = *server.cpu(), time.process_time()
    with httpx.Client(trust_env=False, timeout=60, base_url=server.url, headers=headers) as client:
        t0 = time.perf_counter()
        response = client.post("/v1/media/bulk", content=csv_body,
                               headers={"Content-Type": content_type})
        if response.status_code != 202:
            raise SystemExit(f"bulk answered {response.status_code}: {response.text[:300]}")
        job_id = response.json()["job_id"]
        while True:
            job = client.get(f"/v1/jobs/{job_id}").json()
            if job["state"] == "done":
                break
            if time.perf_counter() - t0 > timeout:
                raise SystemExit(f"bulk job not done after {timeout} s: {job}")
            time.sleep(0.2)
        wall = time.perf_counter() - t0
        cpu1, kids1, own1 = *server.cpu(), time.process_time()
        errors = client.get(f"/v1/jobs/{job_id}/errors").json()["errors"] if job["failed"] else []
    return Bulk(catalog, rows, job["done"], job["failed"], job["rate_per_second"] or 0.0, wall,
                cpu1 - cpu0, kids1 - kids0, own1 - own0, server.rss_mb(with_children=True),
                errors[:5])


# -- profiling ------------------------------------------------------------------------------


def py_spy() -> Path | None:
    found = BIN / "py-spy"
    return found if found.exists() else (Path(p) if (p := shutil.which("py-spy")) else None)


@contextmanager
def profiled(server: Server, out: Path, seconds: float, subprocesses: bool = False
             ) -> Iterator[None]:
    """`py-spy record` (raw collapsed stacks, GIL-holding and idle-free samples) on the server."""
    spy = py_spy()
    if spy is None:
        print("py-spy not found (pip install py-spy): no profile", file=sys.stderr)
        yield
        return
    cmd = [str(spy), "record", "--pid", str(server.pid), "--rate", "100", "--format", "raw",
           "--output", str(out), "--duration", str(int(seconds) + 1), "--nonblocking"]
    if subprocesses:
        cmd.append("--subprocesses")
    spy_proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.5)
    try:
        yield
    finally:
        if spy_proc.poll() is None:
            spy_proc.send_signal(signal.SIGINT)  # py-spy writes its output and exits
        try:
            spy_proc.wait(60)
        except subprocess.TimeoutExpired:
            spy_proc.kill()
            spy_proc.wait()


def summarize_profile(path: Path, top: int = 12) -> str:
    """Where a py-spy raw profile's samples are: functions by self share, medialayer functions
    by inclusive share, and the library calls medialayer makes, by inclusive share."""
    if not path.exists():
        return f"(no profile at {path})"
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    calls: collections.Counter[str] = collections.Counter()
    total = children = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = [f for f in stack.split(";") if f]
        if sum(f.startswith("process ") for f in frames) > 1:
            children += n  # --subprocesses nests each child's stacks under its parent's
        frames = [_short(f) for f in frames if not f.startswith("process ")]
        if not frames:
            continue
        total += n
        own[frames[-1]] += n
        ours = [i for i, f in enumerate(frames) if _ours(f)]
        for frame in {frames[i] for i in ours}:
            inclusive[frame] += n
        if ours and ours[-1] + 1 < len(frames):
            calls[frames[ours[-1] + 1]] += n
    if not total:
        return "(empty profile)"
    head = f"{total} samples of busy threads"
    if children:
        head += f" ({100 * children / total:.0f} % in child processes: the fingerprint workers)"
    out = [head, "", "| self % | function |", "|---|---|"]
    out += [f"| {100 * n / total:.1f} | `{f}` |" for f, n in own.most_common(top)]
    out += ["", "| inclusive % | medialayer function |", "|---|---|"]
    out += [f"| {100 * n / total:.1f} | `{f}` |" for f, n in inclusive.most_common(2 * top)]
    out += ["", "| inclusive % | library call made by medialayer |", "|---|---|"]
    out += [f"| {100 * n / total:.1f} | `{f}` |" for f, n in calls.most_common(top)]
    return "\n".join(out)


def _ours(frame: str) -> bool:
    return "(medialayer/" in frame and "(medialayer/cli.py)" not in frame


def _short(frame: str) -> str:
    """`fn (pkg/mod.py:12)` -> `fn (pkg/mod.py)`: lines of one function count together."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({where})" if where else name


# -- report ---------------------------------------------------------------------------------


def environment(argv: list[str]) -> list[str]:
    versions = ", ".join(f"{p} {_version(p)}" for p in (
        "medialayer", "fastapi", "starlette", "uvicorn", "httpx", "numpy",
        "opencv-python-headless", "pillow", "sqlalchemy", "uvloop", "httptools"))
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    mem = proc_meminfo("MemTotal") / 1024 / 1024
    return [f"command: `{' '.join(argv)}`",
            f"machine: {os.cpu_count()} cores ({model}), {mem:.0f} GB RAM, "
            f"{platform.system()} {platform.release()}, load avg {os.getloadavg()[0]:.2f}",
            f"python {platform.python_version()}; {versions}",
            f"medialayer source digest {source_digest()} (sha256 of src/medialayer/**/*.py), "
            f"run started {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"]


def source_digest() -> str:
    """A short hash of the medialayer package's .py files: which code state a run measured."""
    import medialayer

    root = Path(medialayer.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def proc_meminfo(name: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return 0


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def bulk_cpu(bulk: Bulk, workers: int) -> str:
    """Cores the server used during a bulk job: with one worker, its own and its fingerprint
    pool's; with several, the supervisor (idle) has the workers and their pools as children."""
    server, children = bulk.server_cpu_s / bulk.wall_s, bulk.workers_cpu_s / bulk.wall_s
    if workers == 1:
        return f"server {server:.2f} cores, fingerprint workers {children:.2f}"
    return f"{workers} server workers and their fingerprint pools {server + children:.2f} cores"


def row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def ms(x: float) -> str:
    return f"{x:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--catalog-size", type=int, default=100_000)
    ap.add_argument("--real", type=int, default=300, help="real fingerprints in the catalog")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per search run")
    ap.add_argument("--concurrency", default="8,16", help="comma-separated client counts")
    ap.add_argument("--warmup", type=int, default=30, help="sequential searches before the runs")
    ap.add_argument("--bulk-rows", type=int, default=2000)
    ap.add_argument("--no-bulk-catalog", action="store_true",
                    help="skip the bulk run against (a copy of) the large catalog")
    ap.add_argument("--port", type=int, default=0, help="server port (0: a free one)")
    ap.add_argument("--workers", type=int, default=1, help="`medialayer serve --workers`")
    ap.add_argument("--cpu-threads", type=int, help="the servers' MEDIALAYER_CPU_THREADS")
    ap.add_argument("--keep", type=Path, help="build the catalog here and reuse it next time")
    ap.add_argument("--profile", type=Path, help="also run under py-spy, raw profiles here")
    args = ap.parse_args()
    concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    exe = Path(sys.executable)
    command = [exe.relative_to(Path.cwd()).as_posix() if exe.is_relative_to(Path.cwd())
               else str(exe), *sys.argv]
    print("\n".join(f"- {line}" for line in environment(command)), flush=True)
    started_digest = source_digest()
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="medialayer-http-bench-"))
    try:
        table, facts = run(args, concurrency, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n" + "\n".join(table))
    print("\n" + "\n".join(f"- {f}" for f in facts))
    print(f"- targets: >= {TARGET_SEARCH_RATE:.0f} searches/s with p99 <= {TARGET_P99_MS:.0f} ms;"
          f" >= {TARGET_INGEST_RATE:.0f} ingested images/s")
    if source_digest() != started_digest:
        print(f"- WARNING: the medialayer source changed during the run ({started_digest} -> "
              f"{source_digest()}): the servers started at different times may have run "
              "different code")
    if args.profile:
        for name in ("search", "bulk"):
            print(f"\n### py-spy: {name}\n\n{summarize_profile(args.profile / f'{name}.txt')}")


def note(facts: list[str], text: str) -> None:
    facts.append(text)
    print(f"- {text}", flush=True)


def run(args: argparse.Namespace, concurrency: list[int], work: Path
        ) -> tuple[list[str], list[str]]:
    facts: list[str] = []
    catalog = args.keep or work / "catalog"
    original, query, novel = query_images()
    note(facts, f"query: {len(query) / 1000:.0f} KB JPEG, a 90 % centre crop of a 1024x768 "
                "photo whose original is in the catalog; `top_k=5`")
    note(facts, f"novel query: {len(novel) / 1000:.0f} KB JPEG, made the same way from a photo "
                "in no catalog: nothing settles it, so every query view is computed and voted")
    if catalog_ready(catalog, args.catalog_size, args.real):
        note(facts, f"catalog: reused {catalog} ({args.catalog_size:,} items)")
    else:
        built = build_catalog(catalog, args.catalog_size, args.real, original)
        size_mb = sum(p.stat().st_size for p in catalog.glob("catalog.db*")) / 1e6
        note(facts, f"catalog: built {args.catalog_size:,} items ({args.real} real) in "
                    f"{built['total_s']:.1f} s ({built['real_s']:.1f} s of it generating and "
                    f"fingerprinting the real photos), {size_mb:.0f} MB of SQLite")

    # Before any server runs: the inputs, and the one-core fingerprint rates on a quiet machine.
    images = bulk_images(args.bulk_rows)
    sizes = [len(b) / 1000 for b in images]
    per_core = fingerprint_rate(images)
    kind = get_kind("image")
    fp_ms = timed_loop(lambda: kind.query(io.BytesIO(query)), min(args.duration, 10))
    note(facts, f"bulk images: {len(images)} distinct 800x600 JPEGs, {min(sizes):.0f}-"
                f"{max(sizes):.0f} KB (mean {np.mean(sizes):.0f})")

    # 1. Search over HTTP, then (same server, so one index build) bulk ingest into the big
    # catalog. The server runs on a copy when it will ingest, so the catalog stays as built.
    served_dir = catalog
    if not args.no_bulk_catalog:
        served_dir = work / "catalog-copy"
        copy_catalog(catalog, served_dir)
    key = new_key(served_dir)
    settings = {} if args.cpu_threads is None else {"MEDIALAYER_CPU_THREADS": str(args.cpu_threads)}
    loads: list[Load] = []
    bulks: list[Bulk] = []
    with fixture_server(images) as (fixture_port, served), \
            serve(served_dir, args.port, work / "server-search.log", args.workers,
                  settings=settings) as server:
        first_s, answer = search_once(server, key, query)
        check_top1(answer)
        top = answer["results"][0]
        rss_warm = server.rss_mb(with_children=args.workers > 1)
        note(facts, f"server: `medialayer serve --workers {args.workers}`"
                    f"{''.join(f' {k}={v}' for k, v in settings.items())}; start to ready in "
                    f"{server.ready_s:.1f} s (the service builds "
                    f"its in-memory index from the catalog before it is ready), then the first "
                    f"search in {first_s:.2f} s: top-1 {top['external_id']} "
                    f"({top['confidence']}, {top['similarity_score']:.3f}); "
                    f"RSS {rss_warm:.0f} MB")
        warm = [search_once(server, key, query)[0] * 1000 for _ in range(args.warmup)]
        for c in concurrency:
            loads.append(search_load(server, key, query, c, args.duration))
            print(f"- searched with {c} clients: {loads[-1].rate:.1f}/s", flush=True)
        check_novel(search_once(server, key, novel)[1])
        for c in concurrency:
            loads.append(search_load(server, key, novel, c, args.duration, "novel"))
            print(f"- searched the novel query with {c} clients: {loads[-1].rate:.1f}/s",
                  flush=True)
        note(facts, f"server RSS after the search runs: "
                    f"{server.rss_mb(with_children=args.workers > 1):.0f} MB "
                    f"(peaks summed {server.rss_mb(args.workers > 1, 'VmHWM'):.0f} MB)")
        if args.profile:
            with profiled(server, args.profile / "search.txt", args.duration):
                spied = search_load(server, key, query, max(concurrency), args.duration)
            note(facts, f"search under py-spy ({max(concurrency)} clients, not in the table): "
                        f"{spied.rate:.1f}/s")
        if not args.no_bulk_catalog:
            bulks.append(bulk_job(server, key, fixture_port, args.bulk_rows, "bulk-big",
                                  f"{args.catalog_size:,}-item"))
            print(f"- bulk into {bulks[-1].catalog}: {bulks[-1].wall_rate:.1f}/s", flush=True)

        # 2. Bulk ingest into an empty catalog, on a second server.
        empty = work / "empty"
        empty.mkdir()
        empty_key = new_key(empty)
        with serve(empty, 0, work / "server-bulk.log", args.workers,
                   settings=settings) as bulk_server:
            bulks.insert(0, bulk_job(bulk_server, empty_key, fixture_port, args.bulk_rows,
                                     "bulk-empty", "empty"))
            print(f"- bulk into an empty catalog: {bulks[0].wall_rate:.1f}/s", flush=True)
            if args.profile:
                with profiled(bulk_server, args.profile / "bulk.txt", 900, subprocesses=True):
                    again = bulk_job(bulk_server, empty_key, fixture_port, args.bulk_rows,
                                     "spied", "empty")
                note(facts, f"bulk under py-spy (second job into the same catalog, not in the "
                            f"table): {again.wall_rate:.1f}/s")
        note(facts, f"fixture server answered {served[0]} image requests")
    if served_dir != catalog:
        shutil.rmtree(served_dir, ignore_errors=True)

    # 3. The same search in this process, on the catalog as built.
    local = in_process(catalog, query, novel, args.duration)
    search_ms, main_ms, novel_ms = local["worker"], local["main"], local["novel"]
    assert isinstance(search_ms, list) and isinstance(main_ms, list)
    assert isinstance(novel_ms, list)
    in_rate = len(search_ms) / (sum(search_ms) / 1000)
    novel_rate = len(novel_ms) / (sum(novel_ms) / 1000)
    main_rate = len(main_ms) / (sum(main_ms) / 1000)
    fp_rate = len(fp_ms) / (sum(fp_ms) / 1000)
    note(facts, f"in-process: index build + first search {local['load_s']:.1f} s, "
                f"RSS {local['rss_mb']:.0f} MB, index {local['index_bytes_per_item']:,.0f} "
                "bytes per item (`index_sizes()`, allocated)")

    table = [row("measurement", "clients", "requests", "per s", "p50 ms", "p99 ms", "notes"),
             row(*["---"] * 7)]
    table.append(row("HTTP search (warm-up, sequential)", 1, len(warm),
                     f"{1000 / np.mean(warm):.1f}", ms(np.percentile(warm, 50)),
                     ms(np.percentile(warm, 99)), "one client, back to back"))
    for load in loads:
        bad = sum(n for s, n in load.statuses.items() if s != 200) + sum(load.errors.values())
        verdict = "meets" if load.rate >= TARGET_SEARCH_RATE and \
            load.pct(99) <= TARGET_P99_MS else "misses"
        same = in_rate if load.query == "copy" else novel_rate
        table.append(row(
            f"HTTP search, {load.query} query", load.concurrency, load.ok, f"{load.rate:.1f}",
            ms(load.pct(50)), ms(load.pct(99)),
            f"{verdict} target; {bad} non-200; server CPU {load.server_cpu_s / load.seconds:.2f}"
            f" cores, client {load.client_cpu_s / load.seconds:.2f}; "
            f"{load.rate / same:.2f}x in-process (worker thread)"))
    table.append(row("in-process `ml.search(bytes)`, worker thread", 1, len(search_ms),
                     f"{in_rate:.1f}", ms(np.percentile(search_ms, 50)),
                     ms(np.percentile(search_ms, 99)),
                     "same catalog and query, one thread of a pool (as the server calls it)"))
    table.append(row("in-process `ml.search(bytes)`, main thread", 1, len(main_ms),
                     f"{main_rate:.1f}", ms(np.percentile(main_ms, 50)),
                     ms(np.percentile(main_ms, 99)), "the same on the main thread (as the CLI)"))
    table.append(row("in-process `ml.search(bytes)`, novel query", 1, len(novel_ms),
                     f"{novel_rate:.1f}", ms(np.percentile(novel_ms, 50)),
                     ms(np.percentile(novel_ms, 99)), "worker thread; every query view"))
    table.append(row("in-process query fingerprint only", 1, len(fp_ms), f"{fp_rate:.1f}",
                     ms(np.percentile(fp_ms, 50)), ms(np.percentile(fp_ms, 99)),
                     "`kind.query(query)`, one thread"))
    for bulk in bulks:
        verdict = "meets" if bulk.wall_rate >= TARGET_INGEST_RATE else "misses"
        table.append(row(
            f"HTTP bulk ingest, {bulk.catalog} catalog", "job", bulk.rows,
            f"{bulk.wall_rate:.1f}", "", "",
            f"{verdict} target; job's own rate {bulk.job_rate:.1f}/s; {bulk.failed} failed; "
            f"{bulk.wall_rate / (2 * per_core):.0%} of 2 x the one-core fingerprint rate; "
            f"CPU: {bulk_cpu(bulk, args.workers)}, fixture server "
            f"{bulk.bench_cpu_s / bulk.wall_s:.2f}; RSS incl. workers {bulk.rss_mb:.0f} MB"))
        facts += [f"bulk failure: {error}" for error in bulk.errors]
    table.append(row("in-process fingerprint, bulk path", 1, min(200, len(images)),
                     f"{per_core:.1f}", "", "", "`fingerprint_bytes(data)`, one core, best of 2"))
    return table, facts


if __name__ == "__main__":
    main()
