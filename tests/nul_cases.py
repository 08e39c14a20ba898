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
        ("POST", "/v1/decisions", {"json": {"media_id": media_id, "action": "dismiss",
                                            "other_media_id": NUL}}),
        *(("GET", "/v1/duplicates/pairs", {"params": {field: NUL}})
          for field in ("seller", "category", "media_type")),
        ("GET", "/v1/duplicates/clusters", {"params": {"media_type": NUL}}),
        ("GET", "/v1/media", {"params": {"external_id": NUL}}),
        ("PUT", "/v1/media/image/external/a%00b", {"json": {"url": url}}),

        ("GET", "/v1/media/a%00b", {}),
        ("DELETE", "/v1/media/a%00b", {}),
        ("GET", "/v1/jobs/a%00b", {}),
        ("GET", "/v1/jobs/a%00b/errors", {}),
        ("POST", "/v1/media/bulk", {"files": {"file": ("a.csv", f"url,name\n{url},{NUL}\n")}}),
        ("POST", "/v1/media/bulk",
         {"files": {"file": ("a.csv", f"url,external_id,seller\n{url},e1,{NUL}\n")}}),
    ]


def admin_nul_requests() -> list[tuple[str, str, dict[str, Any]]]:
    """The same for the routes only an admin key may call (policies, webhooks)."""
    return [
        *(("PUT", "/v1/policies", {"json": {"rules": [{"action": "allow", **rule}]}})
          for rule in ({"media_type": NUL}, {"metadata": {"k": NUL}}, {"metadata": {NUL: "v"}})),
        *((method, f"/v1/webhooks/a%00b{tail}", {})
          for method, tail in (("DELETE", ""), ("POST", "/test"), ("GET", "/deliveries"))),
    ]


def _raw_upload(filename: str, data: bytes) -> dict[str, Any]:
    """A multipart upload whose file name carries raw bytes (clients would percent-encode)."""
    boundary = "nul-boundary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{filename}"\r\n\r\n').encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return {"content": body,
            "headers": {"Content-Type": f"multipart/form-data; boundary={boundary}"}}


def assert_nul_refused(client: TestClient, headers: dict[str, str], admin: dict[str, str],
                       media: bytes) -> int:
    """Every NUL request is a 422 naming the NUL byte, and nothing is stored; returns how many
    requests were tried. `admin` is an admin key's headers, for the admin-only routes."""
    media_id = client.post("/v1/media/image/upload", headers=headers,
                           files={"file": ("a.jpg", media)}).json()["id"]
    job_id = client.post("/v1/media/bulk", headers=headers,
                         files={"file": ("a.csv", b"url\nhttp://198.51.100.1/a.jpg\n")}
                         ).json()["job_id"]
    cases = [(headers, case) for case in nul_requests(media, media_id, job_id)]
    cases += [(admin, case) for case in admin_nul_requests()]
    for key, (method, path, kwargs) in cases:
        extra = kwargs.pop("headers", {})
        response = client.request(method, path, headers={**key, **extra}, **kwargs)
        assert response.status_code == 422, (method, path, kwargs.keys(), response.text)
        assert "NUL" in response.json()["error"]["message"], response.text
    listed = client.get("/v1/media", headers=headers).json()["items"]
    assert [item["id"] for item in listed] == [media_id]
    assert client.get("/v1/policies", headers=admin).json()["rules"] == []
    return len(cases)
