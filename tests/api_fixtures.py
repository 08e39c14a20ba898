"""Shared fixtures for the API and fetch tests.

Test modules load it with `pytest_plugins = ["api_fixtures"]` and import from it only under
TYPE_CHECKING, so pytest imports it once, as a plugin. It provides:

- synthetic media (from `synth`): a textured photo as JPEG, an edited copy (80 % crop, JPEG q40),
  an unrelated photo, and a decompression-bomb PNG that is tiny on disk;
- `origin`: a real HTTP server on 127.0.0.1 serving those plus hostile responses (slow drip,
  endless body, huge declared/undeclared bodies, redirects to private addresses);
- `api`: the app over a MediaLayer in tmp_path, with a key factory; the origin is reachable
  because its address is allow-listed.
"""

from __future__ import annotations

import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from medialayer.api import create_app
from medialayer.config import Settings
from medialayer.keys import create_key
from medialayer.service import MediaLayer

import synth
from deadlines import DRIP_SECONDS, FETCH_TIMEOUT

ORIGIN_NETWORK = "127.0.0.1/32"
FETCH_MAX_BYTES = 2 * 1024 * 1024


# -- synthetic media ------------------------------------------------------------------------


def bomb_png(side: int = 30_000) -> bytes:
    """A 1-bit `side` x `side` PNG of zeros: ~100 KB on disk, ~900 Mpx if decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    row = b"\x00" * (1 + (side + 7) // 8)
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat)
            + chunk(b"IEND", b""))


@dataclass(frozen=True)
class Media:
    original: bytes
    copy: bytes
    other: bytes
    bomb: bytes


@pytest.fixture(scope="session")
def media() -> Media:
    original = synth.photo(1, (1024, 768))
    copy = synth.jpeg(synth.crop_center(original, 0.8), quality=40)  # what a copycat uploads
    return Media(original=synth.jpeg(original), copy=copy, other=synth.jpeg(synth.photo(2)),
                 bomb=bomb_png())


# -- the origin server ----------------------------------------------------------------------


@dataclass
class Origin:
    """The fixture HTTP server: `url(path)` for its resources, `hosts` the Host headers seen."""

    port: int
    hosts: list[str] = field(default_factory=list)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


def _handler(files: dict[str, tuple[str, bytes]], origin: Origin) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep test output quiet
            pass

        def do_GET(self) -> None:  # noqa: N802 - the http.server protocol
            origin.hosts.append(self.headers.get("Host", ""))
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            try:
                self._serve(parts.path, query)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the fetcher hung up on purpose (cap, timeout)

        def _serve(self, path: str, query: dict[str, str]) -> None:
            if path in files:
                content_type, body = files[path]
                self._send(200, body, content_type)
            elif path == "/redirect":
                self._send(302, b"", headers={"Location": query["to"]})
            elif path == "/loop":
                self._send(302, b"", headers={"Location": "/loop"})
            elif path == "/drip":
                self._drip(float(query.get("every", "0.2")))
            elif path == "/endless":
                self._endless()
            elif path == "/huge-declared":
                self._send_head(200, {"Content-Length": str(10**12)})
                self.wfile.write(b"\xff\xd8\xff" + b"\0" * 1024)
            else:
                self._send(404, b"not found", "text/plain")

        def _send(self, status: int, body: bytes, content_type: str = "application/octet-stream",
                  headers: dict[str, str] | None = None) -> None:
            self._send_head(status, {"Content-Type": content_type,
                                     "Content-Length": str(len(body)), **(headers or {})})
            self.wfile.write(body)

        def _send_head(self, status: int, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()

        def _drip(self, every: float) -> None:
            """A byte at a time, forever (well, DRIP_SECONDS): only a total deadline stops it."""
            self._send_head(200, {"Content-Type": "image/jpeg"})
            deadline = time.monotonic() + DRIP_SECONDS
            while time.monotonic() < deadline:
                self.wfile.write(b"\xff")
                self.wfile.flush()
                time.sleep(every)

        def _endless(self) -> None:
            """An undeclared body that never ends (until 1 GB): only a byte cap stops it."""
            self._send_head(200, {"Content-Type": "image/jpeg"})
            block = b"\xff\xd8\xff" + b"\0" * 65533
            for _ in range(2**14):
                self.wfile.write(block)

    return Handler


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # bulk jobs open many connections at once; 5 drops SYNs


@pytest.fixture(scope="session")
def origin(media: Media) -> Iterator[Origin]:
    files = {"/photo.jpg": ("image/jpeg", media.original),
             "/copy.jpg": ("image/jpeg", media.copy),
             "/other.jpg": ("image/jpeg", media.other),
             "/bomb.png": ("image/png", media.bomb),
             "/page.html": ("text/html", b"<!doctype html><html><body>a listing</body></html>"),
             "/fake.jpg": ("image/jpeg", b"<html>not really a jpeg</html>")}
    server = _Server(("127.0.0.1", 0), BaseHTTPRequestHandler)
    found = Origin(port=server.server_address[1])
    server.RequestHandlerClass = _handler(files, found)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield found
    server.shutdown()
    server.server_close()


# -- the app --------------------------------------------------------------------------------


def settings_for(data_dir: Path, allow: list[str] | None = None, **overrides: object
                 ) -> Settings:
    """Test settings: small caps so hostile cases end fast, and deadlines no loaded machine hits."""
    values: dict[str, object] = {
        "data_dir": str(data_dir),
        "fetch_allow_networks": [ORIGIN_NETWORK] if allow is None else allow,
        "fetch_max_bytes": FETCH_MAX_BYTES, "fetch_total_timeout": FETCH_TIMEOUT,
        "fetch_read_timeout": FETCH_TIMEOUT, "fetch_connect_timeout": FETCH_TIMEOUT,
        "upload_max_bytes": FETCH_MAX_BYTES, **overrides}
    return Settings(**values)


@dataclass
class Api:
    """A test client on a fresh catalog, and a way to mint keys for it."""

    client: TestClient
    ml: MediaLayer
    settings: Settings

    def key(self, tenant: str = "acme", scopes: tuple[str, ...] = ("index", "search"),
            rate_limit: int | None = None) -> dict[str, str]:
        """Headers carrying a new key for `tenant` with `scopes`."""
        _info, plaintext = create_key(self.ml.store, tenant, list(scopes), rate_limit=rate_limit)
        return {"X-API-Key": plaintext}


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """`make_settings(allow=None, **overrides)`: test settings on this test's data dir."""
    return lambda allow=None, **overrides: settings_for(tmp_path / "data", allow, **overrides)


@pytest.fixture
def make_api(tmp_path: Path) -> Iterator[Callable[..., Api]]:
    """`make_api(**settings)`: an app on a fresh catalog, closed after the test."""
    opened: list[tuple[TestClient, MediaLayer]] = []

    def build(**overrides: object) -> Api:
        data_dir = tmp_path / f"data{len(opened)}"
        ml = MediaLayer(data_dir)
        config = settings_for(data_dir, **overrides)
        client = TestClient(create_app(config, ml), raise_server_exceptions=False)
        client.__enter__()
        opened.append((client, ml))
        return Api(client, ml, config)

    yield build
    for client, ml in opened:
        client.__exit__(None, None, None)
        ml.close()


@pytest.fixture
def api(make_api: Callable[..., Api]) -> Api:
    return make_api()


@pytest.fixture
def headers(api: Api) -> dict[str, str]:
    """An index+search key of tenant `acme`."""
    return api.key()
