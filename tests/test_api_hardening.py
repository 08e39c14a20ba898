"""Hostile parameters and fields on every route: a clear 4xx, never a 500 (issue 9)."""

from __future__ import annotations

import base64
import re
from typing import TYPE_CHECKING

import pytest

from medialayer.errors import InvalidInput

from nul_cases import assert_nul_refused

if TYPE_CHECKING:
    from api_fixtures import Api, Media

pytest_plugins = ["api_fixtures"]

H = dict[str, str]
BIG = 2**63
"""One past SQLite's (and PostgreSQL's bigint) largest integer."""


def cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.fixture
def job_id(api: Api, headers: H) -> str:
    response = api.client.post("/v1/media/bulk", headers=headers,
                               files={"file": ("a.csv", b"url\nnot-a-url\n")})
    return response.json()["job_id"]


@pytest.mark.parametrize(("query", "status", "says"), [
    (f"cursor={cursor(f'seq:{10**40}')}", 400, "invalid cursor"),
    ("cursor=c2VxOjkyMjMzNzIwMzY4NTQ3NzU4MDg", 400, "invalid cursor"),  # seq:2**63
    (f"cursor={cursor('seq:-1')}", 400, "invalid cursor"),
    (f"cursor={cursor('seq:1e3')}", 400, "invalid cursor"),
    ("cursor=%21%21%21", 400, "invalid cursor"),
    (f"cursor={'A' * 65}", 422, "cursor"),
    (f"limit={BIG}", 422, "limit"),
    ("limit=-1", 422, "limit"),
])
def test_media_list_refuses_huge_or_garbage_cursors(api: Api, headers: H, query: str,
                                                    status: int, says: str) -> None:
    response = api.client.get(f"/v1/media?{query}", headers=headers)
    assert response.status_code == status, response.text
    assert says in response.json()["error"]["message"]


@pytest.mark.parametrize(("query", "says"), [
    (f"after={BIG}", "after"), (f"after={10**40}", "after"), ("after=-1", "after"),
    ("after=abc", "after"), ("after=1e3", "after"), ("after=1%00", "after"),
    (f"limit={BIG}", "limit"),
])
def test_job_errors_refuse_huge_or_garbage_after(api: Api, headers: H, job_id: str,
                                                 query: str, says: str) -> None:
    response = api.client.get(f"/v1/jobs/{job_id}/errors?{query}", headers=headers)
    assert response.status_code == 422, response.text
    assert says in response.json()["error"]["message"]


def test_job_errors_accept_the_largest_integer(api: Api, headers: H, job_id: str) -> None:
    response = api.client.get(f"/v1/jobs/{job_id}/errors?after={BIG - 1}", headers=headers)
    assert response.status_code == 200 and response.json()["errors"] == []


def test_decisions_limit_is_bounded(api: Api, headers: H) -> None:
    response = api.client.get(f"/v1/decisions?limit={BIG}", headers=headers)
    assert response.status_code == 422 and "limit" in response.json()["error"]["message"]


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity"])
def test_metadata_numbers_must_be_finite(api: Api, headers: H, media: Media,
                                         number: str) -> None:
    """JSON has no NaN or Infinity; Python's parser takes them, and they used to be stored as
    null (SQLite) or refused by the database (PostgreSQL)."""
    upload = api.client.post("/v1/media/image/upload", headers=headers,
                             files={"file": ("a.jpg", media.original)},
                             data={"metadata": f'{{"n": [{number}]}}'})
    by_url = api.client.post("/v1/media/image/url",
                             headers={**headers, "Content-Type": "application/json"},
                             content=f'{{"url": "http://198.51.100.1/a.jpg", '
                                     f'"metadata": {{"a": {{"n": {number}}}}}}}')
    for response in (upload, by_url):
        assert response.status_code == 422, response.text
        assert "finite" in response.json()["error"]["message"]
    assert api.ml.store.count() == 0


def test_nul_bytes_are_refused_on_every_route(api: Api, headers: H, media: Media) -> None:
    admin = api.key(scopes=("admin",))
    assert assert_nul_refused(api.client, headers, admin, media.original) >= 43


def test_nul_bytes_are_refused_by_the_library_too(api: Api, media: Media) -> None:
    for fields in ({"name": "a\x00"}, {"external_id": "\x00"}, {"metadata": {"k": "\x00"}}):
        with pytest.raises(InvalidInput, match="NUL"):
            api.ml.index(media.original, **fields)
    assert api.ml.store.count() == 0


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_head_on_health_routes(api: Api, path: str) -> None:
    response = api.client.head(path)
    assert response.status_code == 200 and response.content == b""


REPR = re.compile(r"<[^<>]*\bat 0x[0-9a-fA-F]+>|0x[0-9a-fA-F]{8,}")


@pytest.mark.parametrize("data", [
    b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, b"GIF89a" + b"\x01" * 40, b"II*\x00" + b"\xff" * 40,
    b"RIFF\x00\x00\x00\x00WEBP" + b"\0" * 9, b"BM" + b"\x00" * 40,
    b"\x00\x00\x00\x18ftypheic" + b"\0" * 30,
])
def test_error_messages_carry_no_object_reprs(api: Api, headers: H, data: bytes) -> None:
    response = api.client.post("/v1/media/image/upload", headers=headers,
                               files={"file": ("x.bin", data)})
    assert response.status_code == 415, response.text
    assert not REPR.search(response.json()["error"]["message"]), response.text
