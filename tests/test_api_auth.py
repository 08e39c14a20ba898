"""API keys: 401 without a live key, 403 without the scope, 429 past the rate, tenants apart."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx
import pytest

from medialayer.api.auth import KeyCache, RateLimiter
from medialayer.keys import create_key, revoke_key

if TYPE_CHECKING:
    from api_fixtures import Api, Media, Origin

pytest_plugins = ["api_fixtures"]


def status_and_code(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def index(api: Api, headers: dict[str, str], data: bytes) -> httpx.Response:
    return api.client.post("/v1/media/image/upload", headers=headers,
                           files={"file": ("a.jpg", data)})


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": ""}, {"X-API-Key": "ml_not-a-key"},
                                     {"Authorization": "Bearer whatever"}])
def test_missing_or_unknown_key_is_401(api: Api, headers: dict[str, str]) -> None:
    for method, path in (("GET", "/v1/media"), ("POST", "/v1/search/image/url"),
                         ("GET", "/v1/decisions"), ("DELETE", "/v1/media/x")):
        response = api.client.request(method, path, headers=headers)
        assert status_and_code(response) == (401, "unauthorized")


def test_revoked_key_is_401(make_api: Callable[..., Api], media: Media) -> None:
    api = make_api(key_cache_seconds=0)
    info, plaintext = create_key(api.ml.store, "acme", ["index"])
    headers = {"X-API-Key": plaintext}
    assert index(api, headers, media.original).status_code == 201
    revoke_key(api.ml.store, info.id)
    assert status_and_code(index(api, headers, media.original)) == (401, "unauthorized")


def test_revoked_key_is_401_once_the_cache_expires(api: Api, media: Media) -> None:
    """A live key is trusted for `key_cache_seconds` (no look-up); a revocation made meanwhile
    (here, as from the CLI: straight into the catalog) is seen once that time is up."""
    now = [0.0]
    api.client.app.state.key_cache = KeyCache(5.0, clock=lambda: now[0])
    info, plaintext = create_key(api.ml.store, "acme", ["index", "search"])
    headers = {"X-API-Key": plaintext}
    assert api.client.get("/v1/media", headers=headers).status_code == 200
    revoke_key(api.ml.store, info.id)
    now[0] = 4.9
    assert api.client.get("/v1/media", headers=headers).status_code == 200
    now[0] = 5.0
    assert status_and_code(api.client.get("/v1/media", headers=headers)) == \
        (401, "unauthorized")
    now[0] = 60.0  # a revoked key is never cached: it stays refused
    assert status_and_code(api.client.get("/v1/media", headers=headers)) == \
        (401, "unauthorized")


def test_key_cache_is_bounded_and_skips_unknown_keys(api: Api) -> None:
    cache = KeyCache(60.0, max_keys=2)
    keys = [create_key(api.ml.store, "acme", ["search"])[1] for _ in range(3)]
    for plaintext in keys:
        assert asyncio.run(cache.authenticate(api.ml.store, plaintext)) is not None
        assert cache.get(plaintext) is not None
        assert len(cache._keys) <= 2
    assert asyncio.run(cache.authenticate(api.ml.store, "ml_unknown")) is None
    assert cache.get("ml_unknown") is None


def test_scopes(api: Api, media: Media) -> None:
    searcher = api.key(scopes=("search",))
    indexer = api.key(scopes=("index",))
    admin = api.key(scopes=("admin",))
    assert status_and_code(index(api, searcher, media.original)) == (403, "forbidden")
    media_id = index(api, indexer, media.original).json()["id"]
    search = api.client.post("/v1/search/image/upload", headers=indexer,
                             files={"file": ("q.jpg", media.copy)})
    assert status_and_code(search) == (403, "forbidden")
    assert api.client.get(f"/v1/media/{media_id}", headers=searcher).status_code == 200
    assert api.client.get(f"/v1/media/{media_id}", headers=indexer).status_code == 200
    assert api.client.get("/v1/duplicates/clusters", headers=indexer).status_code == 403
    assert api.client.delete(f"/v1/media/{media_id}", headers=searcher).status_code == 403
    decision = {"media_id": media_id, "action": "flag"}
    assert api.client.post("/v1/decisions", headers=searcher, json=decision).status_code == 403
    assert api.client.post("/v1/decisions", headers=indexer, json=decision).status_code == 201
    assert api.client.get("/v1/decisions", headers=admin).status_code == 200
    assert api.client.post("/v1/search/image/upload", headers=admin,
                           files={"file": ("q.jpg", media.copy)}).status_code == 200


def test_tenants_never_see_each_other(api: Api, media: Media) -> None:
    a, b = api.key(tenant="a"), api.key(tenant="b")
    media_id = index(api, a, media.original).json()["id"]
    assert api.client.get(f"/v1/media/{media_id}", headers=b).status_code == 404
    assert api.client.get("/v1/media", headers=b).json()["items"] == []
    assert api.client.delete(f"/v1/media/{media_id}", headers=b).status_code == 404
    search = api.client.post("/v1/search/image/upload", headers=b,
                             files={"file": ("q.jpg", media.copy)})
    assert search.json()["results"] == []
    compare = api.client.post("/v1/compare", headers=b, json={
        "a": {"media_id": media_id}, "b": {"media_id": media_id}})
    assert compare.status_code == 404
    decision = api.client.post("/v1/decisions", headers=b,
                               json={"media_id": media_id, "action": "reject"})
    assert decision.status_code == 404
    assert api.client.get("/v1/duplicates/clusters", headers=b).json()["clusters"] == []
    # and tenant a still has it, found by its copy
    mine = api.client.post("/v1/search/image/upload", headers=a,
                           files={"file": ("q.jpg", media.copy)}).json()["results"]
    assert [r["media_id"] for r in mine] == [media_id]
    # external ids are per tenant
    assert api.client.post("/v1/media/image/upload", headers=b, data={"external_id": "x"},
                           files={"file": ("a.jpg", media.original)}).status_code == 201
    assert api.client.post("/v1/media/image/upload", headers=a, data={"external_id": "x"},
                           files={"file": ("a.jpg", media.original)}).status_code == 201


def test_rate_limit_is_429_with_retry_after(make_api: Callable[..., Api]) -> None:
    api = make_api(default_rate_limit=1000)
    limited = api.key(rate_limit=3)
    for _ in range(3):
        assert api.client.get("/v1/media", headers=limited).status_code == 200
    response = api.client.get("/v1/media", headers=limited)
    assert status_and_code(response) == (429, "rate_limited")
    assert 1 <= int(response.headers["Retry-After"]) <= 20
    assert api.client.get("/v1/media", headers=api.key()).status_code == 200  # per key


def test_default_rate_limit_applies_to_keys_without_one(make_api: Callable[..., Api]) -> None:
    api = make_api(default_rate_limit=2)
    headers = api.key()
    codes = [api.client.get("/v1/media", headers=headers).status_code for _ in range(3)]
    assert codes == [200, 200, 429]


def test_token_bucket_refills() -> None:
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    assert [limiter.acquire("k", 2) for _ in range(2)] == [0.0, 0.0]
    assert limiter.acquire("k", 2) == pytest.approx(30.0)
    now[0] = 15.0
    assert limiter.acquire("k", 2) == pytest.approx(15.0)
    now[0] = 30.0
    assert limiter.acquire("k", 2) == 0.0
    assert limiter.acquire("other", 2) == 0.0
    assert limiter.acquire("k", 0) == 0.0  # 0 means unlimited


def test_search_with_index_true_needs_the_index_scope(api: Api, media: Media,
                                                      origin: Origin) -> None:
    """index=true writes to the catalog: a search-only key gets 403 and adds nothing, by upload
    and by URL; the same key may still search without writing."""
    search_only = api.key(scopes=("search",))
    upload = api.client.post("/v1/search/image/upload", headers=search_only,
                             files={"file": ("q.jpg", media.original)}, data={"index": "true"})
    by_url = api.client.post("/v1/search/image/url", headers=search_only,
                             json={"url": origin.url("/photo.jpg"), "index": True})
    for response in (upload, by_url):
        assert status_and_code(response) == (403, "forbidden")
        assert "index scope" in response.json()["error"]["message"]
    assert api.ml.store.count() == 0
    plain = api.client.post("/v1/search/image/upload", headers=search_only,
                            files={"file": ("q.jpg", media.original)})
    assert plain.status_code == 200 and plain.json()["query_media_id"] is None
    both = api.client.post("/v1/search/image/upload", headers=api.key(),
                           files={"file": ("q.jpg", media.original)}, data={"index": "true"})
    assert both.status_code == 200 and both.json()["query_media_id"] is not None
