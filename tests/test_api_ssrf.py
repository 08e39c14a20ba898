"""URL routes refuse every way to reach inside the network, and bound what they fetch."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from deadlines import DRIP_SECONDS, SHORT_DEADLINE

if TYPE_CHECKING:
    from deadlines import Api, Origin

pytest_plugins = ["api_fixtures"]

URL_ROUTES = ("/v1/media/image/url", "/v1/search/image/url")


@pytest.fixture
def strict_api(make_api: Callable[..., Api]) -> Api:
    """Production-like: no private network allowed, not even the test origin."""
    return make_api(allow=[])


@pytest.mark.parametrize(("url", "reason"), [
    ("http://10.0.0.1/a.jpg", "address 10.0.0.1 is private"),
    ("http://169.254.169.254/latest/meta-data/", "address 169.254.169.254 is link-local"),
    ("http://localhost:{port}/photo.jpg", "address 127.0.0.1 is loopback"),
    ("http://127.0.0.1:{port}/photo.jpg", "address 127.0.0.1 is loopback"),
    ("http://[::1]:{port}/photo.jpg", "address ::1 is loopback"),
    ("http://[::ffff:127.0.0.1]:{port}/photo.jpg", "loopback (IPv4 127.0.0.1)"),
    ("http://2130706433:{port}/photo.jpg", "address 127.0.0.1 is loopback"),
    ("http://0x7f000001:{port}/photo.jpg", "address 127.0.0.1 is loopback"),
])
def test_private_targets_are_502_with_the_reason(strict_api: Api, origin: Origin, url: str,
                                                 reason: str) -> None:
    headers = strict_api.key()
    for route in URL_ROUTES:
        response = strict_api.client.post(route, headers=headers,
                                          json={"url": url.format(port=origin.port)})
        assert response.status_code == 502, response.text
        error = response.json()["error"]
        assert error["code"] == "fetch_failed" and reason in error["message"]


@pytest.mark.parametrize("target", ["http://10.0.0.1/a.jpg", "http://169.254.169.254/latest",
                                    "http://127.0.0.2:{port}/photo.jpg"])
def test_redirects_into_the_network_are_502(api: Api, headers: dict[str, str], origin: Origin,
                                            target: str) -> None:
    url = origin.url("/redirect?to=" + target.format(port=origin.port))
    response = api.client.post("/v1/media/image/url", headers=headers, json={"url": url})
    assert response.status_code == 502
    assert "refused" in response.json()["error"]["message"]


def test_compare_urls_are_guarded_too(strict_api: Api) -> None:
    response = strict_api.client.post("/v1/compare", headers=strict_api.key(), json={
        "a": {"url": "http://169.254.169.254/"}, "b": {"url": "http://10.0.0.1/"}})
    assert response.status_code == 502


@pytest.mark.parametrize("path", ["/endless", "/huge-declared"])
def test_oversized_sources_are_413(api: Api, headers: dict[str, str], origin: Origin,
                                   path: str) -> None:
    response = api.client.post("/v1/media/image/url", headers=headers,
                               json={"url": origin.url(path)})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"


def test_slow_sources_are_cut_off(make_api, origin: Origin) -> None:
    """The drip would go on for DRIP_SECONDS; the deadline ends the request long before."""
    api = make_api(fetch_total_timeout=SHORT_DEADLINE)
    started = time.monotonic()
    response = api.client.post("/v1/search/image/url", headers=api.key(),
                               json={"url": origin.url("/drip?every=0.1")})
    assert response.status_code == 502
    assert "longer than" in response.json()["error"]["message"]
    assert time.monotonic() - started < DRIP_SECONDS / 2


def test_failing_sources_are_502(api: Api, headers: dict[str, str], origin: Origin) -> None:
    response = api.client.post("/v1/media/image/url", headers=headers,
                               json={"url": origin.url("/missing.jpg")})
    assert response.status_code == 502
    assert "answered HTTP 404" in response.json()["error"]["message"]
