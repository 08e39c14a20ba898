"""Matching routes: search by URL and upload, compare, duplicate clusters."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:
    from api_fixtures import Api, Media, Origin

pytest_plugins = ["api_fixtures"]

H = dict[str, str]


@pytest.fixture
def catalog(api: Api, headers: H, media: Media) -> dict[str, str]:
    """The original photo and an unrelated one, indexed; name -> media id."""
    ids = {}
    for name, data in (("original", media.original), ("other", media.other)):
        response = api.client.post("/v1/media/image/upload", headers=headers,
                                   files={"file": (f"{name}.jpg", data)},
                                   data={"external_id": name})
        ids[name] = response.json()["id"]
    return ids


def search_upload(api: Api, headers: H, data: bytes, **fields: str) -> httpx.Response:
    return api.client.post("/v1/search/image/upload", headers=headers,
                           files={"file": ("query.jpg", data)}, data=fields)


def test_edited_copy_is_the_top_result_with_high_confidence(api: Api, headers: H, media: Media,
                                                            catalog: dict[str, str]) -> None:
    response = search_upload(api, headers, media.copy)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["query_media_id"] is None
    top = body["results"][0]
    assert top["media_id"] == catalog["original"]
    assert top["external_id"] == "original" and top["name"] == "original.jpg"
    assert top["confidence"] == "high" and 0.7 <= top["similarity_score"] <= 1.0


def test_search_by_url(api: Api, headers: H, origin: Origin, catalog: dict[str, str]) -> None:
    response = api.client.post("/v1/search/image/url", headers=headers,
                               json={"url": origin.url("/copy.jpg"), "top_k": 1})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["media_id"] for r in results] == [catalog["original"]]
    assert results[0]["confidence"] == "high"


def test_top_k_and_min_score(api: Api, headers: H, media: Media,
                             catalog: dict[str, str]) -> None:
    everything = search_upload(api, headers, media.copy, top_k="5").json()["results"]
    assert 1 <= len(everything) <= 2
    assert search_upload(api, headers, media.copy, top_k="1").json()["results"][0][
        "media_id"] == catalog["original"]
    assert search_upload(api, headers, media.copy, min_score="1.0").json()["results"] == []
    for bad in ({"top_k": "0"}, {"top_k": "101"}, {"min_score": "1.5"}):
        assert search_upload(api, headers, media.copy, **bad).status_code == 422


def test_search_with_index_adds_the_query_after_searching(api: Api, headers: H,
                                                          media: Media) -> None:
    first = search_upload(api, headers, media.original, index="true", external_id="q1").json()
    assert first["results"] == [] and first["query_media_id"]
    second = search_upload(api, headers, media.copy, index="true").json()
    assert [r["media_id"] for r in second["results"]] == [first["query_media_id"]]
    assert second["query_media_id"] not in {first["query_media_id"], None}
    again = search_upload(api, headers, media.other, index="true", external_id="q1")
    assert again.status_code == 409


def test_compare_by_url_and_media_id(api: Api, headers: H, origin: Origin,
                                     catalog: dict[str, str]) -> None:
    body = {"a": {"url": origin.url("/copy.jpg")}, "b": {"media_id": catalog["original"]},
            "media_type": "image"}
    response = api.client.post("/v1/compare", headers=headers, json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["confidence"] == "high" and result["segments"] == []
    different = api.client.post("/v1/compare", headers=headers, json={
        "a": {"media_id": catalog["other"]}, "b": {"url": origin.url("/photo.jpg")}}).json()
    assert different["similarity_score"] < result["similarity_score"]
    assert different["confidence"] == "low"


def test_compare_operands_are_validated(api: Api, headers: H) -> None:
    for operand in ({}, {"url": "http://example.com/a.jpg", "media_id": "x"}):
        response = api.client.post("/v1/compare", headers=headers,
                                   json={"a": operand, "b": {"media_id": "x"}})
        assert response.status_code == 422
    missing = api.client.post("/v1/compare", headers=headers,
                              json={"a": {"media_id": "nope"}, "b": {"media_id": "nope"}})
    assert missing.status_code == 404
    assert api.client.post("/v1/compare", headers=headers, json={
        "a": {"media_id": "x"}, "b": {"media_id": "y"}, "media_type": "smell"}).status_code == 400


def test_compare_uploads(api: Api, headers: H, media: Media) -> None:
    response = api.client.post("/v1/compare/upload", headers=headers,
                               files={"a": ("a.jpg", media.original), "b": ("b.jpg", media.copy)})
    assert response.status_code == 200, response.text
    assert response.json()["confidence"] == "high"
    garbage = api.client.post("/v1/compare/upload", headers=headers,
                              files={"a": ("a.jpg", media.original), "b": ("b.txt", b"hello")})
    assert garbage.status_code == 415


def test_duplicate_clusters(api: Api, headers: H, media: Media,
                            catalog: dict[str, str]) -> None:
    copy_id = api.client.post("/v1/media/image/upload", headers=headers,
                              files={"file": ("copy.jpg", media.copy)}).json()["id"]
    response = api.client.get("/v1/duplicates/clusters", headers=headers,
                              params={"media_type": "image", "min_confidence": "high"})
    assert response.status_code == 200, response.text
    clusters = response.json()["clusters"]
    assert len(clusters) == 1
    assert {m["id"] for m in clusters[0]["members"]} == {catalog["original"], copy_id}
    assert clusters[0]["pairs"][0]["similarity_score"] >= 0.7
    bad = api.client.get("/v1/duplicates/clusters", headers=headers,
                         params={"min_confidence": "certain"})
    assert bad.status_code == 422
