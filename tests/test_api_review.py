"""Review over HTTP: decisions change clusters and search answers; SKUs and jobs."""

from __future__ import annotations

import csv
import io
import time
from typing import TYPE_CHECKING

import pytest

import synth

if TYPE_CHECKING:
    from api_fixtures import Api, Media, Origin

pytest_plugins = ["api_fixtures"]

H = dict[str, str]


def upload(api: Api, headers: H, data: bytes, name: str, **fields: str) -> str:
    response = api.client.post("/v1/media/image/upload", headers=headers,
                               files={"file": (name, data)}, data={"name": name, **fields})
    assert response.status_code == 201, response.text
    return response.json()["id"]


@pytest.fixture
def reviewer(api: Api) -> H:
    return api.key(scopes=("review", "search"))


@pytest.fixture
def pair(api: Api, headers: H, media: Media) -> tuple[str, str]:
    """An original and its edited copy, found as a pair when the copy was added."""
    return upload(api, headers, media.original, "lamp.jpg"), \
        upload(api, headers, media.copy, "lamp-copy.jpg")


def clusters(api: Api, headers: H, **params: str) -> list[dict]:
    response = api.client.get("/v1/duplicates/clusters", headers=headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()["clusters"]


def test_kept_clusters_are_served_and_dismiss_removes_the_pair(
        api: Api, headers: H, reviewer: H, pair: tuple[str, str]) -> None:
    original, copy = pair
    [cluster] = clusters(api, reviewer)
    assert {m["id"] for m in cluster["members"]} == {original, copy}
    assert cluster["proposed_canonical_id"] == original
    assert cluster["pairs"][0]["joins_groups"] is False  # a lone pair joins no groups
    queue = api.client.get("/v1/duplicates/pairs", headers=reviewer).json()["items"]
    assert [(q["a"], q["b"]) for q in queue] == [(original, copy)]
    body = {"media_id": original, "other_media_id": copy, "action": "dismiss"}
    made = api.client.post("/v1/decisions", headers=reviewer, json=body)
    assert made.status_code == 201, made.text
    assert made.json()["from_state"] == {"pair": "open"}
    assert clusters(api, reviewer) == []
    assert api.client.get("/v1/duplicates/pairs", headers=reviewer).json()["items"] == []
    assert api.client.get(f"/v1/duplicates/clusters/{cluster['id']}",
                          headers=reviewer).status_code == 404
    repeat = api.client.post("/v1/decisions", headers=reviewer, json=body)
    assert repeat.status_code == 200 and repeat.json()["id"] == made.json()["id"]
    assert repeat.json()["created"] is False


def test_consolidate_shows_canonical_id_in_search_answers(
        api: Api, headers: H, reviewer: H, media: Media, pair: tuple[str, str]) -> None:
    original, copy = pair
    [cluster] = clusters(api, reviewer)
    made = api.client.post("/v1/decisions", headers=reviewer, json={
        "media_id": original, "cluster_id": cluster["id"], "action": "consolidate"})
    assert made.status_code == 201, made.text
    hits = api.client.post("/v1/search/image/upload", headers=headers,
                           files={"file": ("q.jpg", media.original)}).json()["results"]
    assert {h["media_id"]: h["canonical_id"] for h in hits} == {original: original,
                                                                 copy: original}
    members = {m["id"]: m["canonical_id"] for m in clusters(api, reviewer)[0]["members"]}
    assert members == {original: original, copy: original}


def test_decisions_are_audited_and_paged(api: Api, reviewer: H, headers: H,
                                         pair: tuple[str, str]) -> None:
    original, copy = pair
    for action, target in (("flag", copy), ("reject", copy), ("flag", original)):
        api.client.post("/v1/decisions", headers=reviewer,
                        json={"media_id": target, "action": action})
    first = api.client.get("/v1/decisions", headers=reviewer, params={"limit": 2}).json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    rest = api.client.get("/v1/decisions", headers=reviewer,
                          params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert rest["next_cursor"] is None
    trail = first["items"] + rest["items"]
    assert [(d["action"], d["media_id"]) for d in trail] == [
        ("flag", original), ("reject", copy), ("flag", copy)]
    reject = trail[1]
    assert reject["from_state"] == {copy: {"status": "flagged", "canonical_id": None}}
    assert reject["to_state"] == {copy: {"status": "rejected", "canonical_id": None}}
    assert reject["actor"]["key_id"] and reject["created_at"]
    bad = api.client.get("/v1/decisions", headers=reviewer, params={"cursor": "nope"})
    assert bad.status_code == 400


def test_review_scope_and_tenants(api: Api, headers: H, pair: tuple[str, str]) -> None:
    original, copy = pair
    searcher = api.key(scopes=("search",))
    other = api.key(tenant="rival", scopes=("review", "search"))
    decision = {"media_id": original, "other_media_id": copy, "action": "dismiss"}
    assert api.client.post("/v1/decisions", headers=searcher, json=decision).status_code == 403
    assert api.client.post("/v1/decisions", headers=other, json=decision).status_code == 404
    assert clusters(api, other) == []
    assert api.client.get("/v1/duplicates/pairs", headers=other).json()["items"] == []
    [mine] = clusters(api, searcher)
    assert api.client.get(f"/v1/duplicates/clusters/{mine['id']}",
                          headers=other).status_code == 404
    assert api.client.get("/v1/decisions", headers=other).json()["items"] == []


def test_lookup_and_upsert_by_external_id(api: Api, headers: H, origin: Origin) -> None:
    put = api.client.put("/v1/media/image/external/SKU-1", headers=headers,
                         json={"url": origin.url("/photo.jpg"), "name": "lamp"})
    assert put.status_code == 201, put.text
    media_id = put.json()["id"]
    found = api.client.get("/v1/media", headers=headers, params={"external_id": "SKU-1"}).json()
    assert [i["id"] for i in found["items"]] == [media_id]
    assert api.client.get("/v1/media", headers=headers,
                          params={"external_id": "SKU-2"}).json()["items"] == []
    # same media: fields change in place
    renamed = api.client.put("/v1/media/image/external/SKU-1", headers=headers,
                             json={"url": origin.url("/photo.jpg"), "name": "lamp v2",
                                   "metadata": {"seller": "s1"}})
    assert renamed.status_code == 200
    assert renamed.json()["id"] == media_id and renamed.json()["name"] == "lamp v2"
    # new media under the same SKU: same id, and search finds the new photo, not the old one
    replaced = api.client.put("/v1/media/image/external/SKU-1", headers=headers,
                              json={"url": origin.url("/other.jpg")})
    assert replaced.status_code == 200 and replaced.json()["id"] == media_id
    assert replaced.json()["metadata"] == {"seller": "s1"}

    def top(path: str) -> list[str]:
        hits = api.client.post("/v1/search/image/url", headers=headers,
                               json={"url": origin.url(path)}).json()["results"]
        return [h["media_id"] for h in hits if h["confidence"] == "high"]

    assert top("/other.jpg") == [media_id]
    assert top("/photo.jpg") == []


def test_jobs_list_and_failed_rows_csv(api: Api, headers: H, origin: Origin) -> None:
    from test_jobs import wait_done

    text = ("url,external_id,name\n"
            f"{origin.url('/photo.jpg')},a,ok\n"
            f"{origin.url('/missing.jpg')},b,\"=HYPERLINK(\"\"http://x\"\")\"\n"
            "not a url,=1+2,bad\n")
    job_id = api.client.post("/v1/media/bulk", headers=headers,
                             files={"file": ("rows.csv", text.encode())}).json()["job_id"]
    wait_done(api.client, headers, job_id)
    second = api.client.post("/v1/media/bulk", headers=headers,
                             files={"file": ("rows.csv", b"url\n")}).json()["job_id"]
    listed = api.client.get("/v1/jobs", headers=headers, params={"limit": 1}).json()
    assert [j["job_id"] for j in listed["items"]] == [second]
    more = api.client.get("/v1/jobs", headers=headers,
                          params={"cursor": listed["next_cursor"]}).json()
    assert [j["job_id"] for j in more["items"]] == [job_id] and more["next_cursor"] is None
    assert more["items"][0]["failed"] == 2
    response = api.client.get(f"/v1/jobs/{job_id}/errors.csv", headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == ["row", "url", "external_id", "error"]
    assert [r[0] for r in rows[1:]] == ["2", "3"]
    assert rows[2][2] == "'=1+2"  # a formula cell is quoted, not run
    other = api.key(tenant="rival")
    assert api.client.get(f"/v1/jobs/{job_id}/errors.csv", headers=other).status_code == 404
    assert api.client.get("/v1/jobs", headers=other).json()["items"] == []


def test_search_with_index_keeps_edges_seen_in_clusters(api: Api, headers: H, reviewer: H,
                                                        media: Media) -> None:
    first = api.client.post("/v1/search/image/upload", headers=headers,
                            files={"file": ("a.jpg", media.original)},
                            data={"index": "true"}).json()["query_media_id"]
    second = api.client.post("/v1/search/image/upload", headers=headers,
                             files={"file": ("b.jpg", synth.jpeg(synth.blur(
                                 synth.photo(1, (1024, 768)))))},
                             data={"index": "true"}).json()
    assert second["results"][0]["media_id"] == first
    [cluster] = clusters(api, reviewer)
    assert {m["id"] for m in cluster["members"]} == {first, second["query_media_id"]}


def test_bulk_rows_get_their_edges_after_they_are_done(api: Api, headers: H, reviewer: H,
                                                       origin: Origin) -> None:
    from test_jobs import wait_done

    text = f"url,name\n{origin.url('/photo.jpg')},lamp\n{origin.url('/copy.jpg')},copy\n"
    job_id = api.client.post("/v1/media/bulk", headers=headers,
                             files={"file": ("rows.csv", text.encode())}).json()["job_id"]
    wait_done(api.client, headers, job_id)
    deadline = time.monotonic() + 30
    while not (found := clusters(api, reviewer)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [sorted(m["name"] for m in c["members"]) for c in found] == [["copy", "lamp"]]
