"""medialayer.client against the real service (uvicorn on a loopback port), and its retry rules.

The retry rules are also checked on canned answers (httpx.MockTransport), since a server cannot
be made to drop a connection at a chosen moment; everything else goes over real HTTP.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
import uvicorn

from medialayer.api import create_app
from medialayer.client import ApiError, Client
from medialayer.keys import create_key
from medialayer.service import MediaLayer

if TYPE_CHECKING:
    from medialayer.config import Settings

    from api_fixtures import Media, Origin

pytest_plugins = ["api_fixtures"]


@dataclass
class Service:
    url: str
    ml: MediaLayer

    def key(
        self, rate_limit: int | None = None, scopes: tuple[str, ...] = ("index", "search", "review")
    ) -> str:
        return create_key(self.ml.store, "acme", list(scopes), rate_limit=rate_limit)[1]


@pytest.fixture
def service(tmp_path: Path, make_settings: Callable[..., Settings]) -> Iterator[Service]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ml = MediaLayer(tmp_path / "data")
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(make_settings(), ml), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield Service(f"http://127.0.0.1:{port}", ml)
    server.should_exit = True
    thread.join(timeout=30)
    ml.close()


def test_index_search_page_compare_and_delete(
    service: Service, media: Media, tmp_path: Path
) -> None:
    original = tmp_path / "original.jpg"
    original.write_bytes(media.original)
    with Client(service.url, service.key()) as client:
        added = client.index_file(original, external_id="sku-1", metadata={"seller": "s1"})
        other = client.index_file(media.other, name="other.jpg")
        found = client.search_file(media.copy)
        assert found["results"][0]["media_id"] == added["id"]
        assert found["results"][0]["confidence"] == "high"
        assert client.find_external_id("sku-1")["id"] == added["id"]
        assert client.find_external_id("sku-2") is None
        assert [m["id"] for m in client.iter_media(page_size=1)] == [added["id"], other["id"]]
        assert client.compare(added["id"], other["id"])["confidence"] != "high"
        client.delete_media(other["id"])
        with pytest.raises(ApiError) as gone:
            client.get_media(other["id"])
        assert (gone.value.status, gone.value.code) == (404, "not_found")


def test_bulk_waits_for_the_job_and_lists_its_failed_rows(service: Service, origin: Origin) -> None:
    csv = (
        "url,media_type,external_id\n"
        f"{origin.url('/photo.jpg')},image,sku-a\n"
        f"{origin.url('/missing.jpg')},image,sku-b\n"
    ).encode()
    seen: list[int] = []
    with Client(service.url, service.key()) as client:
        job_id = client.submit_csv(csv)
        final = client.wait_for_job(
            job_id, poll=0.2, timeout=120, progress=lambda state: seen.append(state["pending"])
        )
        assert (final["total"], final["done"], final["failed"]) == (2, 1, 1)
        errors = list(client.job_errors(job_id))
        assert [e["external_id"] for e in errors] == ["sku-b"]
        assert client.find_external_id("sku-a") is not None
    assert seen and seen[-1] == 0


def test_decisions_are_recorded_and_listed(service: Service, media: Media) -> None:
    with Client(service.url, service.key()) as client:
        a = client.index_file(media.original)
        b = client.index_file(media.copy)
        decided = client.decide("dismiss", a["id"], other_media_id=b["id"], note="different")
        again = client.decide("dismiss", a["id"], other_media_id=b["id"], note="different")
        assert again["id"] == decided["id"] and again["created"] is False
        assert [d["id"] for d in client.iter_decisions()] == [decided["id"]]


def test_a_rate_limited_client_waits_as_told_and_carries_on(service: Service) -> None:
    """60 requests a minute: once the burst is spent a request is refused with Retry-After 1;
    the client sleeps that long and its request then goes through."""
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    answers = 0
    with Client(service.url, service.key(rate_limit=60), sleep=sleep) as client:
        while not waits and answers < 500:  # the bucket refills as the requests take time
            assert list(client.iter_media()) == []
            answers += 1
        assert list(client.iter_media()) == []
    assert waits and all(w == 1.0 for w in waits)
    assert answers >= 60


def test_errors_carry_the_api_code(service: Service) -> None:
    with Client(service.url, "ml_not-a-key") as client, pytest.raises(ApiError) as refused:
        client.get_media("x")
    assert (refused.value.status, refused.value.code) == (401, "unauthorized")


# -- the retry rules on canned answers -------------------------------------------------------


def scripted(answers: list[httpx.Response | Exception]) -> tuple[httpx.MockTransport, list[str]]:
    sent: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(request.method)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return httpx.MockTransport(handle), sent


def test_a_refused_request_is_resent_after_retry_after() -> None:
    transport, sent = scripted(
        [httpx.Response(503, headers={"Retry-After": "7"}), httpx.Response(201, json={"id": "m1"})]
    )
    waits: list[float] = []
    with Client("http://ml", "k", transport=transport, sleep=waits.append) as client:
        assert client.index_file(b"bytes")["id"] == "m1"
    assert sent == ["POST", "POST"] and waits == [7.0]


def test_a_dropped_post_is_not_resent_but_a_dropped_get_is() -> None:
    """The POST may have been carried out before the connection broke; the GET is harmless."""
    transport, sent = scripted(
        [httpx.ReadError("reset"), httpx.ReadError("reset"), httpx.Response(200, json={"id": "m1"})]
    )
    with Client("http://ml", "k", transport=transport, sleep=lambda s: None) as client:
        with pytest.raises(httpx.ReadError):
            client.index_file(b"bytes")
        assert client.get_media("m1")["id"] == "m1"
    assert sent == ["POST", "GET", "GET"]


def test_retries_are_bounded() -> None:
    transport, sent = scripted(
        [httpx.Response(429, json={"error": {"code": "rate_limited", "message": "slow down"}})] * 3
    )
    with Client("http://ml", "k", transport=transport, retries=2, sleep=lambda s: None) as client:
        with pytest.raises(ApiError) as refused:
            client.get_media("m1")
    assert refused.value.code == "rate_limited" and len(sent) == 3
