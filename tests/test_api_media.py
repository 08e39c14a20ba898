"""Catalog routes: index by URL and upload, read, list with cursors, delete, decisions."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from api_fixtures import Api, Media, Origin

pytest_plugins = ["api_fixtures"]

H = dict[str, str]


def error_of(response: httpx.Response, status: int) -> dict[str, str]:
    """The error body, after checking the status and the one error shape."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"])
    return body["error"]


def upload(api: Api, headers: H, data: bytes, name: str = "a.jpg", **fields: str
           ) -> httpx.Response:
    return api.client.post("/v1/media/image/upload", headers=headers,
                           files={"file": (name, data, "image/jpeg")}, data=fields)


def test_index_by_url(api: Api, headers: H, origin: Origin) -> None:
    body = {"url": origin.url("/photo.jpg"), "name": "red lamp", "external_id": "sku-1",
            "metadata": {"seller": "s1"}}
    response = api.client.post("/v1/media/image/url", headers=headers, json=body)
    assert response.status_code == 201, response.text
    record = response.json()
    assert record["media_type"] == "image"
    assert (record["name"], record["external_id"]) == ("red lamp", "sku-1")
    assert record["metadata"] == {"seller": "s1"}
    assert record["source"] == origin.url("/photo.jpg")
    got = api.client.get(f"/v1/media/{record['id']}", headers=headers)
    assert got.status_code == 200 and got.json() == record


def test_index_by_upload(api: Api, headers: H, media: Media) -> None:
    response = upload(api, headers, media.original, external_id="sku-2",
                      metadata=json.dumps({"price": 12}))
    assert response.status_code == 201, response.text
    record = response.json()
    assert record["name"] == "a.jpg" and record["metadata"] == {"price": 12}
    assert record["source"] is None


def test_duplicate_external_id_is_409(api: Api, headers: H, media: Media) -> None:
    assert upload(api, headers, media.original, external_id="sku-3").status_code == 201
    assert error_of(upload(api, headers, media.other, external_id="sku-3"), 409)["code"] == \
        "conflict"


def test_delete_then_gone(api: Api, headers: H, media: Media) -> None:
    media_id = upload(api, headers, media.original).json()["id"]
    assert api.client.delete(f"/v1/media/{media_id}", headers=headers).status_code == 204
    assert error_of(api.client.get(f"/v1/media/{media_id}", headers=headers), 404)["code"] == \
        "not_found"
    assert error_of(api.client.delete(f"/v1/media/{media_id}", headers=headers), 404)
    search = api.client.post("/v1/search/image/upload", headers=headers,
                             files={"file": ("q.jpg", media.copy)})
    assert search.json()["results"] == []


def test_list_pages_with_an_opaque_cursor(api: Api, headers: H, media: Media) -> None:
    ids = [upload(api, headers, data, name=f"{i}.jpg").json()["id"]
           for i, data in enumerate([media.original, media.other, media.copy])]
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 2, "media_type": "image"} | ({"cursor": cursor} if cursor else {})
        page = api.client.get("/v1/media", headers=headers, params=params).json()
        seen += [item["id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids and pages == 2


def test_bad_cursor_and_media_type_are_400(api: Api, headers: H) -> None:
    assert error_of(api.client.get("/v1/media", headers=headers, params={"cursor": "zzz"}),
                    400)["code"] == "bad_request"
    assert "unsupported media_type" in error_of(
        api.client.get("/v1/media", headers=headers, params={"media_type": "hologram"}),
        400)["message"]


def test_unknown_media_type_is_400_before_any_fetch(api: Api, headers: H,
                                                    origin: Origin) -> None:
    before = len(origin.hosts)
    response = api.client.post("/v1/media/hologram/url", headers=headers,
                               json={"url": origin.url("/photo.jpg")})
    assert "unsupported media_type 'hologram'" in error_of(response, 400)["message"]
    assert len(origin.hosts) == before
    assert error_of(api.client.post("/v1/media/hologram/upload", headers=headers,
                                    files={"file": ("a", b"x")}), 400)


def test_not_media_is_415(api: Api, headers: H, origin: Origin, media: Media) -> None:
    for path in ("/page.html", "/fake.jpg"):
        response = api.client.post("/v1/media/image/url", headers=headers,
                                   json={"url": origin.url(path)})
        assert error_of(response, 415)["code"] == "unsupported_media"
    garbage = bytes(range(256)) * 40
    assert error_of(upload(api, headers, garbage), 415)["code"] == "unsupported_media"
    truncated = upload(api, headers, media.original[:2000])
    assert error_of(truncated, 415)["code"] == "unsupported_media"


def test_empty_upload_is_400(api: Api, headers: H) -> None:
    assert "empty" in error_of(upload(api, headers, b""), 400)["message"]


def test_decompression_bomb_is_413(api: Api, headers: H, media: Media, origin: Origin) -> None:
    assert len(media.bomb) < 200_000
    assert error_of(upload(api, headers, media.bomb, name="bomb.png"), 413)["code"] == \
        "too_large"
    response = api.client.post("/v1/media/image/url", headers=headers,
                               json={"url": origin.url("/bomb.png")})
    assert error_of(response, 413)["code"] == "too_large"


def test_upload_over_the_cap_is_413(make_api: Callable[..., Api], media: Media) -> None:
    api = make_api(upload_max_bytes=len(media.original) - 1)
    message = error_of(upload(api, api.key(), media.original), 413)["message"]
    assert "over the cap" in message
    assert upload(api, api.key(), media.copy).status_code == 201


def test_request_body_cap(make_api: Callable[..., Api]) -> None:
    api = make_api(upload_max_bytes=1000)
    huge = b"\xff\xd8\xff" + b"\0" * 5_000_000
    assert error_of(upload(api, api.key(), huge), 413)["code"] == "too_large"

    def chunked():  # no Content-Length: the cap must bite while streaming
        yield b"{\"url\": \"http://example.com/" + b"a" * 2_000_000 + b"\"}"

    response = api.client.post("/v1/media/image/url", headers=api.key(), content=chunked())
    assert error_of(response, 413)["code"] == "too_large"


def test_validation_errors_share_the_error_shape(api: Api, headers: H) -> None:
    cases = [
        ("/v1/media/image/url", {"url": "not a url"}),
        ("/v1/media/image/url", {"url": "file:///etc/passwd"}),
        ("/v1/media/image/url", {}),
        ("/v1/media/image/url", {"url": "http://example.com/a.jpg", "surprise": 1}),
        ("/v1/media/image/url", {"url": "http://example.com/a.jpg", "metadata": [1]}),
    ]
    for path, body in cases:
        error = error_of(api.client.post(path, headers=headers, json=body), 422)
        assert error["code"] == "validation_error" and error["message"]
    bad_json = api.client.post("/v1/media/image/url", content=b"{nope",
                               headers=headers | {"Content-Type": "application/json"})
    assert error_of(bad_json, 422)["code"] == "validation_error"
    bad_metadata = upload(api, headers, b"\xff\xd8\xff", metadata="[1, 2]")
    assert "metadata" in error_of(bad_metadata, 422)["message"]


def test_unknown_routes_and_methods_share_the_error_shape(api: Api, headers: H) -> None:
    assert error_of(api.client.get("/v2/nothing", headers=headers), 404)["code"] == "not_found"
    assert error_of(api.client.put("/v1/media", headers=headers), 405)["code"] == \
        "method_not_allowed"


def test_decisions_are_stored_and_listed(api: Api, headers: H, media: Media) -> None:
    a = upload(api, headers, media.original).json()["id"]
    b = upload(api, headers, media.copy).json()["id"]
    made = api.client.post("/v1/decisions", headers=headers,
                           json={"media_id": b, "other_media_id": a, "action": "consolidate",
                                 "note": "same lamp"})
    assert made.status_code == 201, made.text
    assert made.json()["action"] == "consolidate"
    api.client.post("/v1/decisions", headers=headers, json={"media_id": a, "action": "flag"})
    listed = api.client.get("/v1/decisions", headers=headers).json()["items"]
    assert {d["action"] for d in listed} == {"consolidate", "flag"}
    only_b = api.client.get("/v1/decisions", headers=headers, params={"media_id": b}).json()
    assert [d["id"] for d in only_b["items"]] == [made.json()["id"]]


def test_decisions_need_real_media_and_known_actions(api: Api, headers: H,
                                                     media: Media) -> None:
    a = upload(api, headers, media.original).json()["id"]
    assert error_of(api.client.post("/v1/decisions", headers=headers,
                                    json={"media_id": "nope", "action": "flag"}), 404)
    assert error_of(api.client.post("/v1/decisions", headers=headers,
                                    json={"media_id": a, "action": "delete-everything"}), 422)
