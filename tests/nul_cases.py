"""NUL bytes in every text a client can send: the same 422 on SQLite and PostgreSQL.

PostgreSQL refuses NUL in text columns (a 500 once it reached the database) while SQLite stored
it; both now refuse it before any SQL. Shared by test_api_hardening (SQLite) and test_postgres.
"""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

NUL = "a\x00b"


def nul_requests(media: bytes, media_id: str, job_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, request keywords) of every route and field that takes client text."""
    upload = {"files": {"file": ("a.jpg", media)}}
    url = "http://198.51.100.1/a.jpg"
    return [
        *(("POST", route, {**upload, "data": {field: value}})
          for route in ("/v1/media/image/upload", "/v1/search/image/upload")
          for field, value in (("name", NUL), ("external_id", NUL),
                               ("metadata", '{"k": "a\\u0000b"}'),
                               ("metadata", '{"a\\u0000b": 1}'),
                               ("metadata", '{"k": [{"deep": "\\u0000"}]}'))),
        ("POST", "/v1/search/image/upload", {**upload, "data": {"index": "true", "name": NUL}}),
        ("POST", "/v1/media/image/upload", _raw_upload(NUL + ".jpg", media)),
        *(("POST", route, {"json": {"url": url, **fields}})
          for route in ("/v1/media/image/url", "/v1/search/image/url")
          for fields in ({"name": NUL}, {"external_id": NUL}, {"metadata": {"k": NUL}},
                         {"metadata": {NUL: "v"}})),
        ("POST", "/v1/compare", {"json": {"a": {"media_id": NUL}, "b": {"media_id": media_id}}}),
        ("POST", "/v1/decisions", {"json": {"media_id": media_id, "action": "flag",
                                            "note": NUL}}),
        ("POST", "/v1/decisions", {"json": {"media_id": NUL, "action": "flag"}}),
        ("GET", "/v1/decisions", {"params": {"media_id": NUL}}),
        ("GET", "/v1/media/a%00b", {}),
        ("DELETE", "/v1/media/a%00b", {}),
        ("GET", "/v1/jobs/a%00b", {}),
        ("GET", "/v1/jobs/a%00b/errors", {}),
        ("POST", "/v1/media/bulk", {"files": {"file": ("a.csv", f"url,name\n{url},{NUL}\n")}}),
        ("POST", "/v1/media/bulk",
         {"files": {"file": ("a.csv", f"url,external_id,seller\n{url},e1,{NUL}\n")}}),
    ]


def _raw_upload(filename: str, data: bytes) -> dict[str, Any]:
    """A multipart upload whose file name carries raw bytes (clients would percent-encode)."""
    boundary = "nul-boundary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{filename}"\r\n\r\n').encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return {"content": body,
            "headers": {"Content-Type": f"multipart/form-data; boundary={boundary}"}}


def assert_nul_refused(client: TestClient, headers: dict[str, str], media: bytes) -> int:
    """Every NUL request is a 422 naming the NUL byte, and nothing is stored; returns how many
    requests were tried."""
    media_id = client.post("/v1/media/image/upload", headers=headers,
                           files={"file": ("a.jpg", media)}).json()["id"]
    job_id = client.post("/v1/media/bulk", headers=headers,
                         files={"file": ("a.csv", b"url\nhttp://198.51.100.1/a.jpg\n")}
                         ).json()["job_id"]
    cases = nul_requests(media, media_id, job_id)
    for method, path, kwargs in cases:
        extra = kwargs.pop("headers", {})
        response = client.request(method, path, headers={**headers, **extra}, **kwargs)
        assert response.status_code == 422, (method, path, kwargs.keys(), response.text)
        assert "NUL" in response.json()["error"]["message"], response.text
    listed = client.get("/v1/media", headers=headers).json()["items"]
    assert [item["id"] for item in listed] == [media_id]
    return len(cases)
