"""Operations: health, readiness, metrics, request ids, logs, the 500 guard, and real HTTP."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import httpx
import numpy as np
import pytest
import uvicorn
from PIL import Image

import synth
from deadlines import SHORT_DEADLINE

if TYPE_CHECKING:
    from deadlines import Api, Media, Origin

pytest_plugins = ["api_fixtures"]


def test_health_and_readiness(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    assert api.client.get("/readyz").json() == {"status": "ready"}

    def down() -> None:
        raise OSError("database is gone")

    monkeypatch.setattr(api.ml.store.engine, "connect", down)
    response = api.client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "service_unavailable"


def test_metrics_by_route_template(api: Api, headers: dict[str, str], media: Media) -> None:
    media_id = api.client.post("/v1/media/image/upload", headers=headers,
                               files={"file": ("a.jpg", media.original)}).json()["id"]
    api.client.get(f"/v1/media/{media_id}", headers=headers)
    api.client.get("/v1/media/does-not-exist", headers=headers)
    api.client.get("/nowhere")
    text = api.client.get("/metrics").text
    assert ('medialayer_http_requests_total{method="GET",route="/v1/media/{media_id}",'
            'status="200"} 1.0') in text
    assert 'route="/v1/media/{media_id}",status="404"} 1.0' in text
    assert 'route="unmatched",status="404"' in text
    assert "medialayer_http_request_duration_seconds_bucket" in text
    assert "medialayer_catalog_media 1.0" in text
    assert media_id not in text


def test_request_ids_are_echoed_or_made(api: Api) -> None:
    assert api.client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers[
        "X-Request-ID"] == "abc-123"
    made = api.client.get("/healthz").headers["X-Request-ID"]
    assert len(made) == 32
    hostile = api.client.get("/healthz", headers={"X-Request-ID": "x\" injected=1"})
    assert hostile.headers["X-Request-ID"] != "x\" injected=1"
    assert api.client.get("/v1/media").headers["X-Request-ID"]  # errors carry it too


def test_json_logs_carry_request_ids_and_never_keys(make_api: Callable[..., Api],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    api = make_api(log_json=True)
    headers = api.key()
    api.client.get("/v1/media", headers=headers | {"X-Request-ID": "req-42"})
    api.client.get("/v1/media", headers={"X-API-Key": "ml_wrong-key-value"})
    err = capsys.readouterr().err
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    access = [r for r in lines if r.get("request_id") == "req-42"]
    assert access and access[0]["status"] == 200 and access[0]["route"] == "/v1/media"
    assert access[0]["key_id"]
    assert headers["X-API-Key"] not in err and "ml_wrong-key-value" not in err


def test_unexpected_errors_are_500_in_the_error_shape(api: Api, headers: dict[str, str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("internal detail that must not leak")

    monkeypatch.setattr(api.ml, "get", broken)
    response = api.client.get("/v1/media/anything", headers=headers)
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert "internal detail" not in response.text
    assert response.headers["X-Request-ID"]


def test_openapi_docs(api: Api) -> None:
    assert api.client.get("/docs").status_code == 200
    spec = api.client.get("/openapi.json").json()
    assert "/v1/search/{media_type}/upload" in spec["paths"]
    assert "APIKeyHeader" in spec["components"]["securitySchemes"]


# -- through a real server ------------------------------------------------------------------


@pytest.fixture
def served(api: Api) -> Iterator[str]:
    """The app behind uvicorn on a random 127.0.0.1 port, as a base URL."""
    yield from _serve(api)


def _serve(api: Api) -> Iterator[str]:
    server = uvicorn.Server(uvicorn.Config(api.client.app, host="127.0.0.1", port=0,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_over_real_http(served: str, api: Api, headers: dict[str, str], origin: Origin,
                        media: Media) -> None:
    with httpx.Client(base_url=served, timeout=30) as http:
        indexed = http.post("/v1/media/image/url", headers=headers,
                            json={"url": origin.url("/photo.jpg"), "external_id": "lamp"})
        assert indexed.status_code == 201, indexed.text
        found = http.post("/v1/search/image/upload", headers=headers,
                          files={"file": ("q.jpg", media.copy)}, data={"top_k": "3"})
        assert found.status_code == 200
        top = found.json()["results"][0]
        assert top["media_id"] == indexed.json()["id"] and top["confidence"] == "high"
        assert http.get("/v1/media", headers={"X-API-Key": "nope"}).status_code == 401
        too_big = http.post("/v1/media/image/upload", headers=headers,
                            files={"file": ("big.jpg", b"\xff" * (5 * 1024 * 1024))})
        assert too_big.status_code == 413
        assert too_big.json()["error"]["code"] == "too_large"
        assert http.get("/healthz").headers["X-Request-ID"]
        assert "medialayer_http_requests_total" in http.get("/metrics").text


def test_concurrent_requests_do_not_block_each_other(make_api: Callable[..., Api],
                                                     origin: Origin) -> None:
    """A slow source occupies its own request only: health checks keep answering."""
    api = make_api(fetch_total_timeout=4 * SHORT_DEADLINE)
    served = _serve(api)
    with httpx.Client(base_url=next(served), timeout=30) as http:
        slow = threading.Thread(target=http.post, args=("/v1/media/image/url",),
                                kwargs={"headers": api.key(),
                                        "json": {"url": origin.url("/drip?every=0.1")}})
        slow.start()
        time.sleep(0.2)
        assert http.get("/healthz").status_code == 200
        assert slow.is_alive()  # answered while the slow source still held its request
        slow.join()
    served.close()


def _multipart(fields: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body (and its Content-Type) of file fields, for http.client."""
    boundary = "medialayer-test-boundary"
    parts = [f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; "
             f"filename=\"{filename}\"\r\n\r\n".encode() + data + b"\r\n"
             for name, (filename, data) in fields.items()]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), \
        f"multipart/form-data; boundary={boundary}"


def test_thin_images_are_answered_on_a_kept_alive_connection(served: str,
                                                             headers: dict[str, str]) -> None:
    """Thin images used to end in an OpenCV assertion: a 500, after which the server dropped
    the keep-alive connection. Now they are indexed and found, all on one connection (by their
    global code alone: a code that repeats one row or column is featureless, so medium at best,
    and it ties with the other thin items' codes)."""
    host, port = served.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    rng = np.random.default_rng(7)
    for width, height in ((1000, 2), (1, 1), (3, 5000)):
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        body, content_type = _multipart({"file": ("thin.png", synth.png(Image.fromarray(pixels)))})
        answers = []
        for path in ("/v1/media/image/upload", "/v1/search/image/upload"):
            conn.request("POST", path, body, {**headers, "Content-Type": content_type})
            response = conn.getresponse()
            answers.append(json.loads(response.read()))
            assert response.status in (200, 201), answers[-1]
        added, results = answers[0], answers[1]["results"]
        found = next(r for r in results if r["media_id"] == added["id"])
        assert found["similarity_score"] == results[0]["similarity_score"]
        assert found["confidence"] != "low" and found["explanation"]["tier"] == "global_code"
    sock = conn.sock
    conn.request("GET", "/healthz")
    assert conn.getresponse().status == 200 and conn.sock is sock
    conn.close()
