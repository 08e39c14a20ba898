"""The `medialayer` command line: the same use cases as the library and the HTTP service.

Everything beyond Typer and Rich is imported inside the commands, so `medialayer --help` and a
mistyped command answer at once instead of loading the database and decoder stacks first.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from medialayer.csvfile import write_csv
from medialayer.errors import MediaLayerError
from medialayer.kinds.base import CONFIDENCE_ORDER, Segment

if TYPE_CHECKING:
    from medialayer.catalog.store import MediaRecord
    from medialayer.results import SearchResult
    from medialayer.service import MediaLayer

T = TypeVar("T")

app = typer.Typer(help="Find copied and near-duplicate media in a catalog.", no_args_is_help=True)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
jobs_app = typer.Typer(help="Work and inspect bulk ingestion jobs.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")
console = Console()
err = Console(stderr=True)

DataDir = Annotated[Path | None, typer.Option("--data-dir", envvar="MEDIALAYER_DATA_DIR",
                                              help="Catalog directory (embedded SQLite).")]
Tenant = Annotated[str, typer.Option(help="Tenant whose catalog is used.")]
MediaType = Annotated[str | None, typer.Option(
    "--media-type", "-t", help="A registered kind (image, video, audio, ...); default: sniffed.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
MediaFile = Annotated[Path, typer.Argument(exists=True, dir_okay=False,
                                           help="A media file (not a folder).")]


def _open(data_dir: Path | str | None, tenant: str = "default", *, create: bool = False
          ) -> MediaLayer:
    """The catalog a command works on, named on stderr: a command run from another folder
    must not quietly answer from an empty catalog it has just made. Only commands that add
    (`create`) may make one; the others stop with a clear message instead."""
    from sqlalchemy.engine import make_url

    from medialayer.service import MediaLayer

    database_url = os.environ.get("MEDIALAYER_DATABASE_URL") or None
    folder = Path(data_dir or "data").resolve()
    if database_url:
        where = make_url(database_url).render_as_string(hide_password=True)
    else:
        where = str(folder / "catalog.db")
        if not create and not (folder / "catalog.db").is_file():
            _fail(f"no catalog at {where}: index something first, or name the catalog with "
                  "--data-dir or MEDIALAYER_DATA_DIR")
    err.print(f"catalog: {where}", soft_wrap=True)
    return MediaLayer(folder, database_url=database_url, tenant=tenant)


def _service(data_dir: Path | str | None, database_url: str | None) -> MediaLayer:
    """The service's catalog as its settings name it (serve, workers): no checks, no notes."""
    from medialayer.service import MediaLayer

    return MediaLayer(data_dir, database_url=database_url)


def _fail(message: str) -> NoReturn:
    err.print(f"[red]error:[/red] {message}", soft_wrap=True)
    raise typer.Exit(1)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), console=err)


def _files(paths: list[Path]) -> list[Path]:
    """Files as given, and the files of every registered kind found under folders (by suffix,
    recursively, sorted)."""
    from medialayer.kinds import suffixes

    wanted = suffixes()
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.suffix.lower() in wanted)
        else:
            out.append(p)
    return out


@app.command()
def index(paths: Annotated[list[Path], typer.Argument(help="Files, folders, or .csv lists.")],
          data_dir: DataDir = None, tenant: Tenant = "default", media_type: MediaType = None,
          failed_csv: Annotated[Path | None, typer.Option(
              "--failed-csv", help="Write the failed files and rows here (source, row, error).")]
          = None,
          as_json: AsJson = False) -> None:
    """Fingerprint files, folders, or CSV lists (url or path, media_type, name, external_id).

    A CSV becomes a bulk job in the catalog, worked by the same code as POST /v1/media/bulk:
    resumable, idempotent by external_id. A bad file or row is reported and the rest indexed.
    """
    ml = _open(data_dir, tenant, create=True)
    done: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    files = _files([p for p in paths if p.suffix.lower() != ".csv"])
    if files:
        _index_files(ml, files, media_type, done, failed)
    for listing in (p for p in paths if p.suffix.lower() == ".csv"):
        _index_csv(ml, listing, tenant, done, failed)
    ml.close()
    if failed_csv:
        write_csv(failed_csv, ["source", "row", "error"],
                  ([f.get("source"), f.get("row", ""), f["error"]] for f in failed))
    known = sum(1 for d in done if d.get("already_indexed"))
    if as_json:
        console.print_json(json.dumps({"indexed": done, "failed": failed}))
    else:
        console.print(f"indexed {len(done)} ({known} already in the catalog), "
                      f"failed {len(failed)}")
    for f in failed:
        err.print(f"[red]{f.get('source')}[/red]: {f['error']}")
    if failed:
        _fail(f"{len(failed)} of {len(done) + len(failed)} files or rows failed")


def _index_files(ml: MediaLayer, files: list[Path], media_type: str | None,
                 done: list[dict[str, Any]], failed: list[dict[str, Any]]) -> None:
    """Index files under their absolute path as external id: indexing a folder again adds
    only the files not catalogued yet, as a CSV's external ids do."""
    with _progress() as bar:
        task = bar.add_task("indexing", total=len(files))
        for f in files:
            try:
                record, known = _index_file(ml, f, media_type)
                done.append(record.as_dict() | {"already_indexed": known})
            except MediaLayerError as e:
                failed.append({"source": str(f), "error": str(e)})
            bar.advance(task)


def _index_file(ml: MediaLayer, file: Path, media_type: str | None) -> tuple[MediaRecord, bool]:
    """The file's catalog record, and whether it was there already (under its path)."""
    identity = str(file.resolve())
    known = ml.get_by_external_id(identity)
    if known is not None:
        return known, True
    return ml.index(file, media_type, external_id=identity, if_exists="return"), False


def _index_csv(ml: MediaLayer, listing: Path, tenant: str, done: list[dict[str, Any]],
               failed: list[dict[str, Any]]) -> None:
    """Run the listing as a local bulk job in this process, with a progress bar."""
    import asyncio

    from medialayer.config import Settings
    from medialayer.jobs import JobRunner, submit_csv

    settings = Settings()
    text = listing.read_text(encoding="utf-8", errors="replace")
    job_id = _run(lambda: submit_csv(ml, text, tenant, settings, allow_paths=True,
                                     base=listing.parent))
    runner = JobRunner(ml, settings)
    total = ml.job_progress(job_id, tenant).total
    with _progress() as bar:
        task = bar.add_task(f"job {job_id[:8]}", total=total)

        async def work() -> None:
            runner_task = asyncio.create_task(runner.run_until_idle(job_id))
            while not runner_task.done():
                p = ml.job_progress(job_id, tenant)
                bar.update(task, completed=p.done + p.failed)
                await asyncio.sleep(0.2)
            await runner_task

        asyncio.run(work())
    runner.close()
    done += [{"row": n, "media_id": m, "source": str(listing)}
             for n, state, m in ml.job_outcomes(job_id) if state == "done"]
    failed += [{"row": e["row"], "source": e["url"], "error": e["error"]}
               for e in ml.job_errors(job_id, tenant=tenant)]


@app.command()
def search(file: MediaFile, data_dir: DataDir = None, tenant: Tenant = "default",
           media_type: MediaType = None,
           top_k: Annotated[int, typer.Option("--top-k", "-k")] = 5,
           min_score: Annotated[float, typer.Option("--min-score")] = 0.0,
           as_json: AsJson = False) -> None:
    """What in the catalog is this file? Ranked matches with score and confidence."""
    ml = _open(data_dir, tenant)
    if not ml.count(tenant):
        ml.close()
        _fail(f"the catalog has no media of tenant {tenant!r}: index something first")
    result = _run(lambda: ml.search(file, media_type, top_k=top_k, min_score=min_score))
    ml.close()
    if as_json:
        console.print_json(json.dumps(result.as_dict()))
    else:
        _print_results(result)


def _print_results(result: SearchResult) -> None:
    table = Table("media_id", "name", "external_id", "score", "confidence")
    for h in result.results:
        table.add_row(h.media.id, h.media.name or "", h.media.external_id or "",
                      f"{h.similarity_score:.3f}", h.confidence)
    console.print(table if result.results else "no match")
    if result.partial:
        err.print(f"[yellow]partial:[/yellow] shards {result.missing_shards} did not answer; "
                  "their items were not searched")
    for h in result.results:
        for line in _segment_lines(h.segments):
            console.print(f"{h.media.name or h.media.id}  {line}", soft_wrap=True)


def _segment_lines(segments: Sequence[Segment]) -> list[str]:
    """A time-based match's aligned ranges, query seconds -> reference seconds: which part of
    the catalog video or recording the query shows (one line each; none for still images)."""
    return [f"{s.query_start:.2f}-{s.query_end:.2f} s -> {s.reference_start:.2f}-"
            f"{s.reference_end:.2f} s  score {s.score:.3f}" for s in segments]


@app.command()
def compare(a: MediaFile, b: MediaFile, media_type: MediaType = None,
            as_json: AsJson = False) -> None:
    """Score two files against each other."""
    with tempfile.TemporaryDirectory() as tmp:
        ml = _open(tmp, create=True)
        c = _run(lambda: ml.compare(a, b, media_type))
        ml.close()
    if as_json:
        console.print_json(json.dumps(c.as_dict()))
    else:
        console.print(f"similarity_score {c.similarity_score:.3f}  confidence {c.confidence}")
        for line in _segment_lines(c.segments):
            console.print(line, soft_wrap=True)


@app.command()
def dedupe(folder: Annotated[Path, typer.Argument(exists=True, file_okay=False,
                                                   help="The folder to look through.")],
           html: Annotated[Path | None, typer.Option(help="Write an HTML report here.")] = None,
           csv_out: Annotated[Path | None, typer.Option("--csv", help="Write pairs here.")] = None,
           min_confidence: Annotated[str, typer.Option(
               "--min-confidence", callback=lambda v: _one_of(v, CONFIDENCE_ORDER),
               help="low, medium or high.")] = "medium",
           data_dir: Annotated[Path | None, typer.Option(
               "--data-dir", help="Keep the catalog here (default: a temporary one).")] = None,
           as_json: AsJson = False) -> None:
    """Group a folder's near-duplicates into clusters; optional HTML report and pairs CSV."""
    from medialayer.report import write_html, write_pairs_csv

    files = _files([folder])
    with tempfile.TemporaryDirectory() as tmp:
        ml = _open(data_dir or tmp, create=True)
        with _progress() as bar:
            task = bar.add_task("fingerprinting", total=len(files))
            for f in files:
                try:
                    _index_file(ml, f, None)
                except MediaLayerError as e:
                    err.print(f"[yellow]skipped[/yellow] {f}: {e}")
                bar.advance(task)
        clusters = _run(lambda: ml.clusters(None, min_confidence))
        ml.close()
    if html:
        write_html(clusters, html, f"Near-duplicates in {folder}")
    if csv_out:
        write_pairs_csv(clusters, csv_out)
    if as_json:
        console.print_json(json.dumps([c.as_dict() for c in clusters]))
        return
    console.print(f"{len(files)} files, {len(clusters)} clusters")
    for i, c in enumerate(clusters, 1):
        console.print(f"cluster {i}: " + ", ".join(m.name or m.id for m in c.members))


@keys_app.command("create")
def keys_create(tenant: Annotated[str, typer.Option()] = "default",
                scopes: Annotated[str, typer.Option(help="Comma list: index,search,admin")] = (
                    "index,search"),
                name: Annotated[str | None, typer.Option()] = None,
                rate_limit: Annotated[int | None, typer.Option(
                    help="Requests per minute (default: the service's).")] = None,
                data_dir: DataDir = None) -> None:
    """Create a key; it is printed once and stored only as a hash."""
    from medialayer.config import comma_list

    ml = _open(data_dir, create=True)
    info, plaintext = _run(lambda: ml.create_key(tenant, comma_list(scopes), name, rate_limit))
    ml.close()
    console.print(f"id {info.id}  tenant {info.tenant}  scopes {','.join(info.scopes)}")
    print(plaintext)


@keys_app.command("list")
def keys_list(tenant: Annotated[str | None, typer.Option()] = None,
              data_dir: DataDir = None) -> None:
    """List keys (prefix only; the key itself is never stored)."""
    ml = _open(data_dir)
    table = Table("id", "prefix", "tenant", "scopes", "rate limit", "created", "revoked")
    for k in ml.list_keys(tenant):
        table.add_row(k.id, k.prefix + "…", k.tenant, ",".join(k.scopes), str(k.rate_limit or ""),
                      f"{k.created_at:%Y-%m-%d %H:%M}" if k.created_at else "",
                      f"{k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "")
    ml.close()
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: str, data_dir: DataDir = None) -> None:
    """Revoke a key by id or prefix; requests with it get 401 from now on."""
    ml = _open(data_dir)
    info = _run(lambda: ml.revoke_key(key_id))
    ml.close()
    console.print(f"revoked {info.id} ({info.prefix}…)")
    from medialayer.config import Settings

    settings = Settings()
    if settings.redis_url:
        from medialayer.api.shared import forget_key

        if not forget_key(settings.redis_url, settings.redis_prefix, info.id):
            err.print(f"could not reach Redis: servers may trust this key for up to "
                      f"{settings.key_cache_seconds:g} s more")


def _one_of(value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(allowed)}")
    return value


def _run(call: Callable[[], T]) -> T:
    """Run a use case; a MediaLayerError becomes one red line and exit code 1, not a traceback."""
    try:
        return call()
    except MediaLayerError as e:
        _fail(str(e))


@app.command()
def serve(host: Annotated[str | None, typer.Option(help="Default: MEDIALAYER_HOST or 127.0.0.1")]
          = None,
          port: Annotated[int | None, typer.Option(help="Default: MEDIALAYER_PORT or 8080")] = None,
          workers: Annotated[int | None, typer.Option(
              help="HTTP processes, each with its own indexes. Default: MEDIALAYER_WORKERS or 1")]
          = None,
          data_dir: DataDir = None) -> None:
    """Run the HTTP service. On an empty catalog it first creates an admin key and prints it."""
    import uvicorn

    from medialayer.api.app import create_app
    from medialayer.api.supervisor import serve_workers
    from medialayer.config import Settings

    settings = Settings()
    if data_dir is not None:
        settings.data_dir = str(data_dir)
    host, port = host or settings.host, port or settings.port
    workers = workers or settings.workers
    ml = _service(settings.data_dir, database_url=settings.database_url)
    if not ml.list_keys():
        _, key = ml.create_key("default", ["index", "search", "admin"], "first key")
        _print_welcome(key, host, port, Path(settings.data_dir) / "examples")
    if settings.snapshot_dir and workers > 1:  # the workers map it instead of each building
        _print_snapshots(ml.write_snapshots())
        if settings.snapshot_every > 0:
            _refresh_snapshots(settings.snapshot_every)
    if workers <= 1:
        uvicorn.run(create_app(settings, ml), host=host, port=port,
                    log_level=settings.log_level, access_log=False)
        return
    ml.close()  # each worker process opens the catalog itself, from the same settings
    os.environ["MEDIALAYER_DATA_DIR"] = settings.data_dir
    os.environ["MEDIALAYER_WORKERS"] = str(workers)  # each worker sizes its bulk pool by it
    serve_workers(host, port, workers, settings.log_level)


@app.command("index-node")
def index_node(shard: Annotated[int, typer.Option(help="The partition this node owns: rows "
                                                  "with seq % shards == shard.")],
               shards: Annotated[int, typer.Option(help="How many index nodes there are.")],
               port: Annotated[int, typer.Option(help="Its HTTP port.")],
               host: Annotated[str, typer.Option(
                   help="Loopback or a private address only: the node has no API keys.")]
               = "127.0.0.1",
               snapshot_every: Annotated[float | None, typer.Option(
                   help="Seconds between its snapshot refreshes (0: none). Default: "
                        "MEDIALAYER_SNAPSHOT_EVERY")] = None,
               data_dir: DataDir = None) -> None:
    """Run an index node: one partition of the image index, built from its snapshot (under
    MEDIALAYER_SNAPSHOT_DIR) and the catalog's change feed, answering API processes that list
    it in MEDIALAYER_INDEX_NODES. It listens once its index is loaded."""
    import uvicorn

    from medialayer.api.node import create_node_app
    from medialayer.config import Settings
    from medialayer.index.shards import Partition
    from medialayer.kinds.wire import WIRES
    from medialayer.service import MediaLayer

    settings = Settings()
    try:
        partition = Partition(shard, shards)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e
    ml = MediaLayer(data_dir or settings.data_dir, database_url=settings.database_url,
                    shard=partition)
    every = settings.snapshot_every if snapshot_every is None else snapshot_every
    ml.warm_up(only=WIRES)  # a restart maps the node's last snapshot and replays the feed since
    for name in WIRES:
        if ml.indexes.get(name).mapped is None and settings.snapshot_dir:
            written = ml.indexes.write_served_snapshot(name)  # the first start writes one
            _print_snapshots({name: written} if written else {})
    if settings.snapshot_dir and every > 0:
        _refresh_node_snapshots(ml, every)
    err.print(f"index node {partition} ready on {host}:{port}")
    uvicorn.run(create_node_app(ml, partition), host=host, port=port,
                log_level=settings.log_level, access_log=False)


def _refresh_node_snapshots(ml: MediaLayer, every: float) -> None:
    """Write the node's snapshots every `every` seconds, in a thread (a build over the last
    snapshot and the feed since: a restart then replays little)."""
    import threading
    import time

    from medialayer.kinds.wire import WIRES

    def refresh() -> None:
        while True:
            time.sleep(every)
            for name in WIRES:
                ml.write_snapshots(name)

    threading.Thread(target=refresh, name="snapshots", daemon=True).start()


@app.command()
def snapshot(snapshot_dir: Annotated[Path, typer.Option(
                 "--snapshot-dir", envvar="MEDIALAYER_SNAPSHOT_DIR",
                 help="Where the service's processes map snapshots from.")],
             media_type: MediaType = None, data_dir: DataDir = None) -> None:
    """Write the index snapshots that the service's processes map at start (run it
    periodically: a process replays the catalog's changes since its snapshot)."""
    os.environ["MEDIALAYER_SNAPSHOT_DIR"] = str(snapshot_dir)
    ml = _open(data_dir)
    written = _run(lambda: ml.write_snapshots(media_type))
    ml.close()
    _print_snapshots(written)


def _refresh_snapshots(every: float) -> None:
    """Run `medialayer snapshot` every `every` seconds, in a process of its own (the index it
    builds is gone with it), with this process's settings."""
    import subprocess
    import sys
    import threading
    import time

    def refresh() -> None:
        while True:
            time.sleep(every)
            subprocess.run([sys.executable, "-m", "medialayer", "snapshot"], check=False)

    threading.Thread(target=refresh, name="snapshots", daemon=True).start()


def _print_snapshots(written: dict[str, Path]) -> None:
    for name, path in written.items():
        err.print(f"{name} snapshot: {path}", soft_wrap=True)
    if not written:
        err.print("no index with a snapshot form")


def _print_welcome(key: str, host: str, port: int, examples: Path) -> None:
    """The first key, and two curl lines on example photos that work as printed."""
    from medialayer.examples import write_examples

    original, copy = write_examples(examples)
    base = f"http://{host}:{port}"
    print(f"First API key (shown once, stored hashed): {key}")
    print("Index a brand's photo, then search with a seller's cropped, watermarked copy:")
    print(f"  curl -s -H 'X-API-Key: {key}' -F file=@{original.resolve()} "
          f"-F external_id=sku-10042 {base}/v1/media/image/upload")
    print(f"  curl -s -H 'X-API-Key: {key}' -F file=@{copy.resolve()} -F top_k=5 "
          f"{base}/v1/search/image/upload")
    print(f"API docs: {base}/docs", flush=True)


@jobs_app.command("worker")
def jobs_worker(data_dir: DataDir = None) -> None:
    """Work bulk jobs from the catalog until stopped; run as many as you like, anywhere."""
    import asyncio

    from medialayer.config import Settings
    from medialayer.jobs import JobRunner

    settings = Settings()
    ml = _service(data_dir or settings.data_dir, database_url=settings.database_url)
    runner = JobRunner(ml, settings)

    async def work() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await runner.run_forever(stop)

    err.print("working bulk jobs; Ctrl-C to stop")
    try:
        asyncio.run(work())
    finally:
        runner.close()
        ml.close()


@jobs_app.command("status")
def jobs_status(job_id: str, tenant: Tenant = "default", data_dir: DataDir = None,
                errors: Annotated[bool, typer.Option("--errors", help="List failed rows.")] = False
                ) -> None:
    """A job's progress as JSON (and its failed rows with --errors)."""
    ml = _open(data_dir, tenant)
    out = _run(lambda: ml.job_progress(job_id, tenant)).as_dict()
    if errors:
        out["errors"] = ml.job_errors(job_id, tenant=tenant)
    ml.close()
    console.print_json(json.dumps(out))


@jobs_app.command("list")
def jobs_list(tenant: Tenant = "default", data_dir: DataDir = None,
              limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
              as_json: AsJson = False) -> None:
    """The tenant's jobs, newest first, with their progress."""
    ml = _open(data_dir, tenant)
    found = [j.as_dict() for j in _run(lambda: ml.jobs(None, limit, tenant))]
    ml.close()
    if as_json:
        console.print_json(json.dumps(found))
        return
    table = Table("job", "state", "done", "failed", "pending", "total", "created")
    for j in found:
        table.add_row(j["job_id"], j["state"], str(j["done"]), str(j["failed"]),
                      str(j["pending"]), str(j["total"]), j["created_at"] or "")
    console.print(table)


@app.command("rebuild-edges")
def rebuild_edges(tenant: Tenant = "default", media_type: MediaType = None,
                  data_dir: DataDir = None) -> None:
    """Search every item again and keep the matches as edges (clusters): for a catalog indexed
    before match edges were kept (every kind unless --media-type names one)."""
    ml = _open(data_dir, tenant)
    searched = _run(lambda: ml.rebuild_edges(media_type, tenant))
    ml.close()
    console.print(f"{searched} items searched; clusters kept")
