"""Bulk CSV jobs: parsing, the HTTP routes, idempotency, and surviving kill -9."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from medialayer import InvalidInput, MediaLayer
from medialayer.catalog import jobs as job_rows
from medialayer.catalog.models import Media
from medialayer.jobs import parse_csv, submit_csv

import synth

pytest_plugins = ["api_fixtures"]


def wait_done(client, headers: dict[str, str], job_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}", headers=headers).json()
        if job["state"] == "done":
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} not done in {timeout}s: {job}")


def test_parse_csv_fails_bad_lines_alone() -> None:
    rows, errors = parse_csv(
        "\ufeffurl,name,external_id,price\n"
        "http://a/1.jpg,One,e1,10\n"
        "\n"
        "http://a/2.jpg,\"Two, quoted\",e2,\n"
        "http://a/3.jpg,Three\n"
        ",No url,e4,1\n"
        'http://a/5.jpg,"unterminated,e5,1\n')
    assert [r["_row"] for r in rows] == [1, 3]
    assert rows[0] == {"_row": 1, "url": "http://a/1.jpg", "name": "One", "external_id": "e1",
                       "media_type": "image", "metadata": {"price": "10"}}
    assert rows[1]["name"] == "Two, quoted"
    assert [(n, reason.split(":")[0]) for n, _, reason in errors] == [
        (4, "malformed CSV line"), (5, "the row has no url"), (6, "malformed CSV line")]


def test_parse_csv_refuses_what_is_not_a_listing() -> None:
    with pytest.raises(InvalidInput):
        parse_csv("")
    with pytest.raises(InvalidInput):
        parse_csv("name,external_id\nx,y\n")
    with pytest.raises(InvalidInput):
        parse_csv("url\n" + "http://a/x.jpg\n" * 11, max_rows=10)
    rows, errors = parse_csv("url,media_type\nhttp://a/x.jpg,hologram\n")
    assert rows == [] and "unsupported media_type" in errors[0][2]


def test_bulk_job_over_http_indexes_good_rows_and_reports_bad_ones(api, headers, origin) -> None:
    csv_text = "url,name,external_id\n" + "".join(
        f"{origin.url('/photo.jpg')}?n={i},Photo {i},p{i}\n" for i in range(5)) + (
        f"{origin.url('/page.html')},HTML,h1\n"
        f"{origin.url('/missing.jpg')},Dead,d1\n"
        f"{origin.url('/endless')},Huge,x1\n"
        "this line, is, malformed, badly\n"
        f"http://10.0.0.1/private.jpg,Private,v1\n")
    r = api.client.post("/v1/media/bulk", headers=headers, files={"file": ("l.csv", csv_text)})
    assert r.status_code == 202, r.text
    job = wait_done(api.client, headers, r.json()["job_id"])
    assert (job["total"], job["done"], job["failed"], job["pending"]) == (10, 5, 5, 0)
    assert job["rate_per_second"] > 0 and job["eta_seconds"] == 0
    errors = api.client.get(f"/v1/jobs/{r.json()['job_id']}/errors", headers=headers).json()
    reasons = {e["row"]: e["error"] for e in errors["errors"]}
    assert sorted(reasons) == [6, 7, 8, 9, 10]
    assert "not a supported image" in reasons[6] and "404" in reasons[7]
    assert "private" in reasons[10]
    # the same CSV again adds nothing: rows are idempotent by external_id
    again = api.client.post("/v1/media/bulk", headers=headers, files={"file": ("l.csv", csv_text)})
    wait_done(api.client, headers, again.json()["job_id"])
    listing = api.client.get("/v1/media?limit=100", headers=headers).json()["items"]
    assert sorted(m["external_id"] for m in listing) == [f"p{i}" for i in range(5)]


def test_jobs_belong_to_their_tenant(api, headers) -> None:
    r = api.client.post("/v1/media/bulk", headers=headers,
                        files={"file": ("l.csv", "url\nhttp://10.0.0.1/x.jpg\n")})
    other = api.key(tenant="someone-else")
    assert api.client.get(f"/v1/jobs/{r.json()['job_id']}", headers=other).status_code == 404
    assert api.client.get("/v1/jobs/nope", headers=headers).status_code == 404


def test_bulk_refuses_a_csv_without_url_column(api, headers) -> None:
    r = api.client.post("/v1/media/bulk", headers=headers,
                        files={"file": ("l.csv", "path\n/etc/passwd\n")})
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request"


def _worker(data_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "MEDIALAYER_DATA_DIR": str(data_dir),
           "MEDIALAYER_FETCH_ALLOW_NETWORKS": '["127.0.0.1/32"]',
           "MEDIALAYER_BULK_CLAIM_TIMEOUT": "2", "MEDIALAYER_BULK_CONCURRENCY": "16"}
    return subprocess.Popen([sys.executable, "-m", "medialayer", "jobs", "worker"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_a_killed_worker_loses_and_doubles_nothing(tmp_path: Path, origin,
                                                    make_settings) -> None:
    """kill -9 mid-job, restart: every row ends done exactly once or failed, never twice.

    The deadlines only catch a hang: a loaded machine may be slow, never wrong."""
    total, kill_after, hang = 800, 200, 900
    data = tmp_path / "data"
    ml = MediaLayer(data)
    rows = [f"{origin.url('/photo.jpg')}?n={i},row {i},{f'e{i}' if i % 2 else ''}"
            for i in range(total)]
    rows[total // 2] = f"{origin.url('/page.html')},html,"
    job_id = submit_csv(ml, "url,name,external_id\n" + "\n".join(rows), "default",
                        make_settings())

    def counts() -> Counter:
        return Counter(state for _, state, _ in job_rows.row_outcomes(ml.store, job_id))

    worker = _worker(data)
    deadline = time.monotonic() + hang
    while counts()["done"] < kill_after and time.monotonic() < deadline:
        time.sleep(0.2)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    killed_at = counts()
    assert kill_after <= killed_at["done"] < total - 1, killed_at

    worker = _worker(data)
    try:
        while counts()["pending"] + counts()["claimed"] and time.monotonic() < deadline + hang:
            time.sleep(0.5)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    outcomes = job_rows.row_outcomes(ml.store, job_id)
    assert Counter(s for _, s, _ in outcomes) == {"done": total - 1, "failed": 1}
    media_ids = [m for _, s, m in outcomes if s == "done"]
    assert len(set(media_ids)) == total - 1  # one media per done row, none shared, none lost
    with ml.store.session() as s:
        assert s.scalar(select(func.count()).select_from(Media)) == total - 1
        sources = s.scalars(select(Media.source)).all()
    assert len(set(sources)) == total - 1  # no row indexed twice
    ml.close()


def test_rows_written_together_fall_back_row_by_row(tmp_path: Path, make_settings) -> None:
    """Rows finishing together share one transaction; when it fails (two rows of the batch
    carry one external id, a third one is already catalogued) each row is written alone, and
    every external id still ends as exactly one media."""
    from concurrent.futures import ThreadPoolExecutor

    from medialayer.jobs import JobRunner

    data = tmp_path / "data"
    ml = MediaLayer(data)
    photos = []
    for i in range(6):
        path = tmp_path / f"p{i}.jpg"
        path.write_bytes(synth.jpeg(synth.photo(300 + i)))
        photos.append(path)
    known = ml.index(photos[0], external_id="e0")
    ids = ["e0", "e1", "e2", "e1", "e3", ""]
    lines = [f"{p},{e}\n" for p, e in zip(photos, ids, strict=True)]
    csv_text = "path,external_id\n" + "".join(lines)
    job_id = submit_csv(ml, csv_text, "default", make_settings(), allow_paths=True)
    with ThreadPoolExecutor(2) as pool:
        runner = JobRunner(ml, make_settings(bulk_concurrency=16), pool=pool)
        asyncio.run(runner.run_until_idle(job_id))
    outcomes = job_rows.row_outcomes(ml.store, job_id)
    assert [state for _, state, _ in outcomes] == ["done"] * 6
    media = [m for _, _, m in outcomes]
    assert media[0] == known.id and media[1] == media[3]
    assert len(set(media)) == 5
    with ml.store.session() as s:
        assert s.scalar(select(func.count()).select_from(Media)) == 5
    ml.close()


def test_bulk_pool_shares_the_cores_among_http_workers(monkeypatch) -> None:
    from medialayer.config import Settings

    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    assert Settings().bulk_pool_size() == 4
    assert Settings(workers=2).bulk_pool_size() == 2
    assert Settings(workers=8).bulk_pool_size() == 1
    assert Settings(workers=2, bulk_workers=3).bulk_pool_size() == 3


def test_a_database_failure_while_writing_leaves_rows_claimed(tmp_path: Path, make_settings,
                                                              monkeypatch) -> None:
    """The write and the row's failure record both fail (the database went away): the pump
    logs it and goes on, and the rows stay claimed, to be claimed again after the timeout."""
    from concurrent.futures import ThreadPoolExecutor

    from medialayer.jobs import JobRunner

    ml = MediaLayer(tmp_path / "data")
    path = tmp_path / "p.jpg"
    path.write_bytes(synth.jpeg(synth.photo(500)))
    job_id = submit_csv(ml, f"path\n{path}\n{path}\n", "default", make_settings(),
                        allow_paths=True)

    def database_gone(*args, **kwargs):
        raise OSError("database is gone")

    monkeypatch.setattr(ml, "index_fingerprints", database_gone)
    monkeypatch.setattr(job_rows, "finish_row", database_gone)
    with ThreadPoolExecutor(2) as pool:
        asyncio.run(JobRunner(ml, make_settings(), pool=pool).run_until_idle(job_id))
    assert [state for _, state, _ in job_rows.row_outcomes(ml.store, job_id)] == ["claimed"] * 2
    assert ml.store.count() == 0
    ml.close()
