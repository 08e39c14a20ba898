"""The `medialayer` command line: the same use cases as the library and the HTTP service."""

from __future__ import annotations

import csv
import json
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from medialayer.errors import MediaLayerError
from medialayer.service import MediaLayer, SearchResult

app = typer.Typer(help="Find copied and near-duplicate media in a catalog.", no_args_is_help=True)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
console = Console()
err = Console(stderr=True)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic",
                  ".heif", ".avif"}
DataDir = Annotated[Path | None, typer.Option("--data-dir", envvar="MEDIALAYER_DATA_DIR",
                                              help="Catalog directory (embedded SQLite).")]
Tenant = Annotated[str, typer.Option(help="Tenant whose catalog is used.")]
MediaType = Annotated[str, typer.Option("--media-type", "-t", help="image, video or audio.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _open(data_dir: Path | None, tenant: str = "default") -> MediaLayer:
    return MediaLayer(data_dir, tenant=tenant)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), console=err)


def _files(paths: list[Path]) -> list[Path]:
    """Files as given, and the media files found under folders (recursively, sorted)."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
        else:
            out.append(p)
    return out


@app.command()
def index(paths: Annotated[list[Path], typer.Argument(help="Files, folders, or .csv lists.")],
          data_dir: DataDir = None, tenant: Tenant = "default", media_type: MediaType = "image",
          as_json: AsJson = False) -> None:
    """Fingerprint files, folders, or CSV rows (path or url, name, external_id) into the catalog.

    A bad file or row is reported and skipped; the rest is indexed.
    """
    ml = _open(data_dir, tenant)
    rows = []
    for p in paths:
        rows += _csv_rows(p) if p.suffix.lower() == ".csv" else [
            {"path": str(f)} for f in _files([p])]
    done, failed = [], []
    with _progress() as bar:
        task = bar.add_task("indexing", total=len(rows))
        for n, row in enumerate(rows, 1):
            try:
                record = _index_row(ml, row, media_type)
                done.append(record.as_dict())
            except (MediaLayerError, OSError, ValueError) as e:
                failed.append({"row": n, "source": row.get("path") or row.get("url"),
                               "error": str(e)})
            bar.advance(task)
    if as_json:
        console.print_json(json.dumps({"indexed": done, "failed": failed}))
    else:
        console.print(f"indexed {len(done)}, failed {len(failed)}")
        for f in failed:
            err.print(f"[red]row {f['row']}[/red] {f['source']}: {f['error']}")
    ml.close()
    if failed and not done:
        raise typer.Exit(1)


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        rows = [{k.strip().lower(): (v or "").strip() for k, v in r.items() if k}
                for r in csv.DictReader(f)]
    base = path.parent
    for r in rows:
        if r.get("path") and not Path(r["path"]).is_absolute():
            r["path"] = str(base / r["path"])
    return rows


def _index_row(ml: MediaLayer, row: dict[str, str], default_type: str):
    media_type = row.get("media_type") or default_type
    name = row.get("name") or None
    external_id = row.get("external_id") or None
    if row.get("url"):
        from medialayer.config import Settings
        from medialayer.fetch import fetch_sync

        data = fetch_sync(row["url"], Settings())
        return ml.index(data, media_type, name=name, external_id=external_id,
                        source_label=row["url"], if_exists="return")
    if not row.get("path"):
        raise ValueError("row has neither path nor url")
    return ml.index(Path(row["path"]), media_type, name=name, external_id=external_id,
                    if_exists="return")


@app.command()
def search(file: Path, data_dir: DataDir = None, tenant: Tenant = "default",
           media_type: MediaType = "image",
           top_k: Annotated[int, typer.Option("--top-k", "-k")] = 5,
           min_score: Annotated[float, typer.Option("--min-score")] = 0.0,
           as_json: AsJson = False) -> None:
    """What in the catalog is this file? Ranked matches with score and confidence."""
    ml = _open(data_dir, tenant)
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


@app.command()
def compare(a: Path, b: Path, media_type: MediaType = "image", as_json: AsJson = False) -> None:
    """Score two files against each other."""
    with tempfile.TemporaryDirectory() as tmp:
        ml = MediaLayer(tmp)
        c = _run(lambda: ml.compare(a, b, media_type))
        ml.close()
    if as_json:
        console.print_json(json.dumps(c.as_dict()))
    else:
        console.print(f"similarity_score {c.similarity_score:.3f}  confidence {c.confidence}")


@app.command()
def dedupe(folder: Path,
           html: Annotated[Path | None, typer.Option(help="Write an HTML report here.")] = None,
           csv_out: Annotated[Path | None, typer.Option("--csv", help="Write pairs here.")] = None,
           min_confidence: Annotated[str, typer.Option("--min-confidence")] = "medium",
           data_dir: Annotated[Path | None, typer.Option(
               "--data-dir", help="Keep the catalog here (default: a temporary one).")] = None,
           as_json: AsJson = False) -> None:
    """Group a folder's near-duplicates into clusters; optional HTML report and pairs CSV."""
    from medialayer.report import write_html, write_pairs_csv

    files = _files([folder])
    with tempfile.TemporaryDirectory() as tmp:
        ml = MediaLayer(data_dir or tmp)
        with _progress() as bar:
            task = bar.add_task("fingerprinting", total=len(files))
            for f in files:
                try:
                    ml.index(f)
                except MediaLayerError as e:
                    err.print(f"[yellow]skipped[/yellow] {f}: {e}")
                bar.advance(task)
        clusters = _run(lambda: ml.clusters("image", min_confidence))
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
    from medialayer.keys import create_key

    ml = _open(data_dir)
    info, plaintext = _run(lambda: create_key(ml.store, tenant, _split(scopes), name, rate_limit))
    ml.close()
    console.print(f"id {info.id}  tenant {info.tenant}  scopes {','.join(info.scopes)}")
    print(plaintext)


@keys_app.command("list")
def keys_list(tenant: Annotated[str | None, typer.Option()] = None,
              data_dir: DataDir = None) -> None:
    """List keys (prefix only; the key itself is never stored)."""
    from medialayer.keys import list_keys

    ml = _open(data_dir)
    table = Table("id", "prefix", "tenant", "scopes", "rate limit", "created", "revoked")
    for k in list_keys(ml.store, tenant):
        table.add_row(k.id, k.prefix + "…", k.tenant, ",".join(k.scopes), str(k.rate_limit or ""),
                      f"{k.created_at:%Y-%m-%d %H:%M}" if k.created_at else "",
                      f"{k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "")
    ml.close()
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: str, data_dir: DataDir = None) -> None:
    """Revoke a key by id or prefix; requests with it get 401 from now on."""
    from medialayer.keys import revoke_key

    ml = _open(data_dir)
    info = _run(lambda: revoke_key(ml.store, key_id))
    ml.close()
    console.print(f"revoked {info.id} ({info.prefix}…)")


def _split(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def _run(call):
    """Run a use case; a MediaLayerError becomes one red line and exit code 1, not a traceback."""
    try:
        return call()
    except MediaLayerError as e:
        err.print(f"[red]error:[/red] {e}")
        raise typer.Exit(1) from None


@app.command()
def serve(host: Annotated[str | None, typer.Option(help="Default: MEDIALAYER_HOST or 127.0.0.1")]
          = None,
          port: Annotated[int | None, typer.Option(help="Default: MEDIALAYER_PORT or 8080")] = None,
          data_dir: DataDir = None) -> None:
    """Run the HTTP service. On an empty catalog it first creates an admin key and prints it."""
    import uvicorn

    from medialayer.api.app import create_app
    from medialayer.config import Settings
    from medialayer.keys import create_key, list_keys

    settings = Settings()
    if data_dir is not None:
        settings.data_dir = str(data_dir)
    host, port = host or settings.host, port or settings.port
    ml = MediaLayer(settings.data_dir, database_url=settings.database_url)
    if not list_keys(ml.store):
        _, key = create_key(ml.store, "default", ["index", "search", "admin"], "first key")
        _print_welcome(key, host, port)
    uvicorn.run(create_app(settings, ml), host=host, port=port,
                log_level=settings.log_level, access_log=False)


def _print_welcome(key: str, host: str, port: int) -> None:
    base = f"http://{host}:{port}"
    console.print(f"[bold]First API key[/bold] (shown once, stored hashed): [green]{key}[/green]")
    console.print("Index an image, then search with an edited copy of it:")
    print(f"  curl -s -H 'X-API-Key: {key}' -F file=@photo.jpg -F name=photo.jpg "
          f"{base}/v1/media/image/upload")
    print(f"  curl -s -H 'X-API-Key: {key}' -F file=@photo-copy.jpg -F top_k=5 "
          f"{base}/v1/search/image/upload")
    console.print(f"API docs: {base}/docs")
