"""Rate limits and the key cache shared by several server processes through a real Redis.

The server at MEDIALAYER_TEST_REDIS_URL (default: the local one) is used with a fresh key prefix
per test. Without a reachable server these tests skip with the reason, unless
MEDIALAYER_REQUIRE_REDIS=1 (CI sets it), where that is a failure.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
import redis
from fastapi.testclient import TestClient
from test_serve import curl_lines, start_serve

from medialayer.api import create_app
from medialayer.api.shared import decode_key, encode_key
from medialayer.keys import KeyInfo, create_key
from medialayer.service import MediaLayer

if TYPE_CHECKING:
    from medialayer.config import Settings

pytest_plugins = ["api_fixtures"]
URL = os.environ.get("MEDIALAYER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _reachable() -> str | None:
    try:
        redis.Redis.from_url(URL, socket_connect_timeout=2).ping()
        return None
    except (redis.RedisError, OSError) as e:
        return f"Redis not reachable at {URL}: {e.__class__.__name__}"


_WHY_NOT = _reachable()
if _WHY_NOT and os.environ.get("MEDIALAYER_REQUIRE_REDIS") == "1":
    raise RuntimeError(_WHY_NOT)
pytestmark = pytest.mark.skipif(_WHY_NOT is not None, reason=_WHY_NOT or "")


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    name = f"mltest:{uuid.uuid4().hex[:12]}:"
    yield name
    client = redis.Redis.from_url(URL)
    stale = list(client.scan_iter(f"{name}*"))
    if stale:
        client.delete(*stale)
    client.close()


@pytest.fixture
def processes(
    tmp_path: Path, make_settings: Callable[..., Settings]
) -> Iterator[Callable[..., list[TestClient]]]:
    """`processes(n, **settings)`: n apps on one catalog, each with its own limiter and key
    cache, as n server processes have."""
    opened: list[tuple[TestClient, MediaLayer]] = []

    def start(n: int, **overrides: object) -> list[TestClient]:
        for _ in range(n):
            ml = MediaLayer(tmp_path / "data")
            client = TestClient(
                create_app(make_settings(**overrides), ml), raise_server_exceptions=False
            )
            client.__enter__()
            opened.append((client, ml))
        return [client for client, _ in opened[-n:]]

    yield start
    for client, ml in opened:
        client.__exit__(None, None, None)
        ml.close()


def new_key(tmp_path: Path, rate_limit: int | None = None) -> tuple[KeyInfo, dict[str, str]]:
    ml = MediaLayer(tmp_path / "data")
    try:
        info, plaintext = create_key(ml.store, "acme", ["index", "search"], rate_limit=rate_limit)
    finally:
        ml.close()
    return info, {"X-API-Key": plaintext}


def test_processes_share_one_token_bucket_per_key(
    processes: Callable[..., list[TestClient]], prefix: str, tmp_path: Path
) -> None:
    a, b = processes(2, redis_url=URL, redis_prefix=prefix)
    _, headers = new_key(tmp_path, rate_limit=4)
    codes = [(a if i % 2 else b).get("/v1/media", headers=headers).status_code for i in range(8)]
    assert codes == [200] * 4 + [429] * 4
    refused = a.get("/v1/media", headers=headers)
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 15
    _, other = new_key(tmp_path, rate_limit=4)
    assert b.get("/v1/media", headers=other).status_code == 200  # one bucket per key


def test_without_redis_each_process_has_its_own_bucket(
    processes: Callable[..., list[TestClient]], tmp_path: Path
) -> None:
    """The per-process default, for contrast: two processes give a key twice its limit."""
    a, b = processes(2)
    _, headers = new_key(tmp_path, rate_limit=4)
    codes = [(a if i % 2 else b).get("/v1/media", headers=headers).status_code for i in range(8)]
    assert codes == [200] * 8


def test_a_revocation_reaches_every_process_at_once(
    processes: Callable[..., list[TestClient]], prefix: str, tmp_path: Path
) -> None:
    """Keys are cached for a minute, in Redis; `keys revoke` removes the entry, so no process
    trusts the key after it returns."""
    a, b = processes(2, redis_url=URL, redis_prefix=prefix, key_cache_seconds=60)
    info, headers = new_key(tmp_path)
    assert a.get("/v1/media", headers=headers).status_code == 200
    assert b.get("/v1/media", headers=headers).status_code == 200
    assert redis.Redis.from_url(URL).exists(f"{prefix}keyid:{info.id}") == 1
    revoked = subprocess.run(
        [sys.executable, "-m", "medialayer", "keys", "revoke", info.id],
        env={
            **os.environ,
            "MEDIALAYER_DATA_DIR": str(tmp_path / "data"),
            "MEDIALAYER_REDIS_URL": URL,
            "MEDIALAYER_REDIS_PREFIX": prefix,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert revoked.returncode == 0, revoked.stderr
    assert a.get("/v1/media", headers=headers).status_code == 401
    assert b.get("/v1/media", headers=headers).status_code == 401


def test_an_unreachable_redis_falls_back_to_per_process_limits(
    processes: Callable[..., list[TestClient]], tmp_path: Path
) -> None:
    """A Redis outage costs the limits' precision, never a request: every answer is the one a
    process without Redis gives."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"redis://127.0.0.1:{s.getsockname()[1]}/0"
    (a,) = processes(1, redis_url=closed)
    _, headers = new_key(tmp_path, rate_limit=2)
    assert [a.get("/v1/media", headers=headers).status_code for _ in range(3)] == [200, 200, 429]


def test_keys_survive_the_trip_through_redis() -> None:
    key = KeyInfo(
        "id-1",
        "acme",
        None,
        "ml_abcdefg",
        ("index", "search"),
        30,
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        None,
    )
    assert decode_key(encode_key(key)) == key


def test_serve_with_two_workers_gives_a_key_its_limit_once(
    tmp_path: Path, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real thing: `serve --workers 2` and fresh connections, which the kernel spreads over
    both workers; a key limited to 6 a minute gets exactly 6 answers."""
    monkeypatch.setenv("MEDIALAYER_REDIS_URL", URL)
    monkeypatch.setenv("MEDIALAYER_REDIS_PREFIX", prefix)
    monkeypatch.setenv("MEDIALAYER_DEFAULT_RATE_LIMIT", "6")
    server, lines = start_serve(tmp_path / "data", "--workers", "2")
    try:
        key = re.search(r"(ml_\S+)", next(x for x in lines if "First API key" in x)).group(1)
        url = re.search(r"(http://[^/\s]+)", curl_lines(lines)[1]).group(1)
        # generous: a worker still building its indexes holds a new connection until it is ready
        codes = [
            httpx.get(f"{url}/v1/media", headers={"X-API-Key": key}, timeout=180).status_code
            for _ in range(16)
        ]
    finally:
        server.terminate()
        server.communicate(timeout=30)
    assert codes.count(200) == 6 and codes.count(429) == 10, codes
