"""The review UI over HTTP (no browser): sign-in, cookies, CSRF, escaping, tenants.

tests/test_browser.py drives the same pages in chromium.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest
from fastapi.testclient import TestClient

from medialayer.review import QueueFilter

if TYPE_CHECKING:
    from api_fixtures import Api, Media

pytest_plugins = ["api_fixtures"]

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def sign_in(client: TestClient, key: dict[str, str]) -> str:
    """Sign in with the key; the session's CSRF token (from the queue page)."""
    form = client.get("/ui/login")
    token = CSRF.search(form.text).group(1)
    done = client.post("/ui/login", data={"api_key": key["X-API-Key"], "csrf": token})
    assert done.status_code == 200 and done.url.path == "/ui/queue", done.text
    return CSRF.search(done.text).group(1)


@pytest.fixture
def evil_pair(api: Api, media: Media) -> tuple[str, str]:
    """Two matching items whose names are markup."""
    headers = api.key()
    ids = []
    for data, name in ((media.original, "<script>alert(1)</script>"),
                       (media.copy, '"><img src=x onerror=alert(2)>')):
        ids.append(api.client.post("/v1/media/image/upload", headers=headers,
                                   files={"file": ("x.jpg", data)},
                                   data={"name": name, "metadata": '{"seller": "<b>s</b>"}'}
                                   ).json()["id"])
    return ids[0], ids[1]


def test_sign_in_needs_a_review_key_and_sets_a_strict_cookie(api: Api) -> None:
    client = api.client
    assert client.get("/ui/queue", follow_redirects=False).headers["location"] == "/ui/login"
    form = client.get("/ui/login")
    token = CSRF.search(form.text).group(1)
    searcher = api.key(scopes=("search",))
    refused = client.post("/ui/login", data={"api_key": searcher["X-API-Key"], "csrf": token},
                          follow_redirects=False)
    assert refused.status_code == 303 and "error" in refused.headers["location"]
    reviewer = api.key(scopes=("review",))
    no_csrf = client.post("/ui/login", data={"api_key": reviewer["X-API-Key"], "csrf": "x"})
    assert no_csrf.status_code == 403
    signed = client.post("/ui/login", data={"api_key": reviewer["X-API-Key"], "csrf": token},
                         follow_redirects=False)
    cookie = signed.headers["set-cookie"]
    assert signed.status_code == 303 and cookie.startswith("ml_session=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    assert "Secure" not in cookie  # plain http here; see the TLS test
    assert reviewer["X-API-Key"] not in cookie
    page = client.get("/ui/queue")
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_cookies_are_secure_over_tls(make_api) -> None:
    api = make_api()
    client = TestClient(api.client.app, base_url="https://review.example")
    form = client.get("/ui/login")
    assert "Secure" in form.headers["set-cookie"]
    token = CSRF.search(form.text).group(1)
    key = api.key(scopes=("review",))
    signed = client.post("/ui/login", data={"api_key": key["X-API-Key"], "csrf": token},
                         follow_redirects=False)
    assert "Secure" in signed.headers["set-cookie"]


def test_forms_refuse_a_missing_or_wrong_csrf_token(api: Api,
                                                    evil_pair: tuple[str, str]) -> None:
    a, b = evil_pair
    csrf = sign_in(api.client, api.key(scopes=("review",)))
    form = {"action": "dismiss", "media_id": a, "other_media_id": b}
    assert api.client.post("/ui/decide", data=form).status_code == 422  # missing
    assert api.client.post("/ui/decide", data={**form, "csrf": "wrong"}).status_code == 403
    assert api.ml.review.queue("acme", QueueFilter())
    done = api.client.post("/ui/decide", data={**form, "csrf": csrf, "next": "//evil.example"},
                           follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/ui/queue"
    entries = api.client.get("/ui/audit").text
    assert "dismiss" in entries and "&lt;script&gt;alert(1)&lt;/script&gt;" in entries


def test_every_page_escapes_names(api: Api, evil_pair: tuple[str, str]) -> None:
    a, b = evil_pair
    sign_in(api.client, api.key(scopes=("review",)))
    cluster_id = api.ml.review.cluster_of("acme", a)
    for path in ("/ui/queue", f"/ui/pair?a={a}&b={b}", "/ui/clusters",
                 f"/ui/clusters/{cluster_id}"):
        text = api.client.get(path).text
        assert "<script>alert" not in text and "<img src=x" not in text, path
        assert "<b>s</b>" not in text, path


def test_no_page_shows_another_tenants_media(api: Api, evil_pair: tuple[str, str]) -> None:
    a, b = evil_pair
    sign_in(api.client, api.key(tenant="rival", scopes=("review",)))
    assert "alert" not in api.client.get("/ui/queue").text
    assert "alert" not in api.client.get("/ui/clusters").text
    assert api.client.get(f"/ui/pair?a={a}&b={b}").status_code == 404
    cluster_id = api.ml.review.cluster_of("acme", a)
    assert api.client.get(f"/ui/clusters/{cluster_id}").status_code == 404
    csrf = CSRF.search(api.client.get("/ui/queue").text).group(1)
    refused = api.client.post("/ui/decide", data={"csrf": csrf, "action": "reject",
                                                  "media_id": a})
    assert refused.status_code == 404
    assert api.ml.review.marks("acme", [a]) == {}


def test_signing_out_ends_the_session(api: Api) -> None:
    csrf = sign_in(api.client, api.key(scopes=("review",)))
    api.client.post("/ui/logout", data={"csrf": csrf})
    assert api.client.get("/ui/queue", follow_redirects=False).status_code == 303


def test_static_assets_come_from_the_package(api: Api) -> None:
    htmx = api.client.get("/ui/static/htmx.min.js")
    assert htmx.status_code == 200 and "htmx" in htmx.text
    assert api.client.get("/ui/static/review.js").status_code == 200


def test_docs_work_offline(api: Api) -> None:
    page = api.client.get("/docs").text
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert assets and all(a.startswith("/docs-assets/") for a in assets), assets
    for asset in assets:
        assert api.client.get(asset).status_code == 200, asset
    assert "cdn" not in page.lower()
    assert api.client.get("/redoc").status_code == 404
