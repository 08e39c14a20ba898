"""Faults: the catalog database goes away or fills up under a running service.

PostgreSQL is reached through a loopback TCP proxy the test controls: `cut()` drops every
connection and refuses new ones, as a restarted or unreachable server does, without touching
the shared server. Requests must then fail cleanly (503, JSON, Retry-After) and work again once
the database is back, with no restart; a bulk job ends with every row exactly once.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from pg_fixtures import URL, needs_postgres, schema_url
from sqlalchemy import func, select, text

from medialayer import MediaLayer
from medialayer.api.app import create_app
from medialayer.catalog import jobs as job_rows
from medialayer.catalog.models import Media
from medialayer.keys import create_key

import synth

if TYPE_CHECKING:
    from api_fixtures import Api, Origin

pytest_plugins = ["api_fixtures", "pg_fixtures"]


class Proxy:
    """Forwards loopback connections to a server, until cut."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = threading.Event()
        self.up.set()
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        """Drop every connection; new ones are accepted and closed at once."""
        self.up.clear()
        with self.lock:
            for conn in self.open:
                _close(conn)
            self.open.clear()

    def restore(self) -> None:
        self.up.set()

    def close(self) -> None:
        self.cut()
        _close(self.listener)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up.is_set():
                _close(client)
                continue
            try:
                server = socket.create_connection(self.target)
            except OSError:
                _close(client)
                continue
            with self.lock:
                self.open |= {client, server}
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        _close(src)
        _close(dst)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    parts = urlsplit(URL)
    found = Proxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    yield found
    found.close()


def through(proxy: Proxy, schema: str) -> str:
    """The test schema's URL, by way of the proxy."""
    parts = urlsplit(URL)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{proxy.port}"
    return schema_url(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2
                                     else host).geturl(), schema)


def assert_unavailable(response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "service_unavailable"
    assert int(response.headers["Retry-After"]) > 0


@needs_postgres
def test_searches_and_uploads_fail_cleanly_while_postgres_is_gone_and_recover(
        proxy: Proxy, pg_schema: str, tmp_path, make_settings) -> None:
    url = through(proxy, pg_schema)
    ml = MediaLayer(tmp_path, database_url=url)
    settings = make_settings(database_url=url, key_cache_seconds=0, run_jobs=False)
    _, key = create_key(ml.store, "acme", ["index", "search"])
    headers = {"X-API-Key": key}
    photo, copy = synth.jpeg(synth.photo(1)), synth.jpeg(synth.crop_center(synth.photo(1), 0.8))
    with TestClient(create_app(settings, ml), raise_server_exceptions=False) as client:
        def search():
            return client.post("/v1/search/image/upload", headers=headers,
                               files={"file": ("q.jpg", copy)})

        media_id = client.post("/v1/media/image/upload", headers=headers,
                               files={"file": ("a.jpg", photo)}).json()["id"]
        proxy.cut()
        assert_unavailable(search())
        assert_unavailable(client.post("/v1/media/image/upload", headers=headers,
                                       files={"file": ("b.jpg", synth.jpeg(synth.photo(2)))}))
        assert_unavailable(client.get(f"/v1/media/{media_id}", headers=headers))
        assert client.get("/readyz").status_code == 503
        proxy.restore()
        assert search().json()["results"][0]["media_id"] == media_id
        assert client.get("/readyz").status_code == 200
    assert ml.store.count() == 1  # the upload refused while the database was gone left nothing
    ml.close()


@needs_postgres
def test_a_bulk_job_survives_postgres_going_away(proxy: Proxy, pg_schema: str, tmp_path,
                                                 origin: Origin, make_settings) -> None:
    """Cut twice mid-job: the runner keeps going, and every row ends done exactly once."""
    url = through(proxy, pg_schema)
    ml = MediaLayer(tmp_path, database_url=url)
    settings = make_settings(database_url=url, bulk_claim_timeout=2.0, bulk_concurrency=8,
                             bulk_workers=1, fetch_read_timeout=30.0, fetch_connect_timeout=30.0,
                             fetch_total_timeout=60.0)  # fetches are not what is tested here
    _, key = create_key(ml.store, "acme", ["index", "search"])
    rows = 60
    listing = "url,external_id\n" + "".join(f"{origin.url('/photo.jpg')}?n={i},e{i}\n"
                                            for i in range(rows))
    with TestClient(create_app(settings, ml), raise_server_exceptions=False) as client:
        job = client.post("/v1/media/bulk", headers={"X-API-Key": key},
                          files={"file": ("l.csv", listing)}).json()["job_id"]
        direct = MediaLayer(tmp_path / "direct", database_url=schema_url(URL, pg_schema))

        def outcomes() -> Counter:
            return Counter(s for _, s, _ in job_rows.row_outcomes(direct.store, job))

        deadline = time.monotonic() + 240
        for threshold in (10, 30):  # cut once early, once later in the job
            while outcomes()["done"] < threshold and time.monotonic() < deadline:
                time.sleep(0.1)
            proxy.cut()
            time.sleep(1.0)  # the runner meets the outage: claims and writes fail meanwhile
            proxy.restore()
        while outcomes()["done"] < rows and time.monotonic() < deadline:
            time.sleep(0.2)
    assert outcomes() == {"done": rows}, job_rows.row_errors(direct.store, "acme", job)
    with direct.store.session() as s:
        assert s.scalar(select(func.count()).select_from(Media)) == rows
        assert len(set(s.scalars(select(Media.external_id)))) == rows
    direct.close()
    ml.close()


def test_a_full_sqlite_catalog_refuses_writes_with_507_and_still_reads(
        api: Api, headers: dict[str, str]) -> None:
    """Disk full, simulated by capping the database's pages: uploads get 507 and leave no
    trace, in the catalog or in the index; searches and listings still work."""
    first = api.client.post("/v1/media/image/upload", headers=headers,
                            files={"file": ("a.jpg", synth.jpeg(synth.photo(1)))}).json()["id"]
    with api.ml.store.engine.connect() as conn:  # the one pooled connection every request uses
        pages = conn.execute(text("PRAGMA page_count")).scalar()
        conn.execute(text(f"PRAGMA max_page_count = {pages}"))
    refused = 0
    for seed in range(2, 8):
        r = api.client.post("/v1/media/image/upload", headers=headers,
                            files={"file": ("b.jpg", synth.jpeg(synth.photo(seed)))})
        if r.status_code == 507:
            refused += 1
            assert r.json()["error"]["code"] == "insufficient_storage"
            assert "Retry-After" in r.headers
        else:
            assert r.status_code == 201, r.text
    assert refused >= 1
    listed = api.client.get("/v1/media", headers=headers).json()
    assert api.ml.store.count() == 1 + 6 - refused == len(listed["items"])
    assert api.ml.index_sizes()["image"][0] == api.ml.store.count()  # no index entry either
    found = api.client.post("/v1/search/image/upload", headers=headers, files={
        "file": ("q.jpg", synth.jpeg(synth.crop_center(synth.photo(1), 0.8)))}).json()
    assert found["results"][0]["media_id"] == first
