"""The review UI in a real browser: Playwright driving Debian's chromium (never a downloaded one).

The service runs under uvicorn on a loopback port, its media served by a small HTTP server of
this test, so thumbnails and matched regions render as a reviewer sees them. Scenario: sign in,
open the queue, open a pair, consolidate a cluster with the keyboard, mark the pair that joins
two groups "not a duplicate" and see the cluster split, see the audit entries.

Screenshots of each view go to tmp_path, or to $MEDIALAYER_SCREENSHOTS (docs/img for the docs:
`make screenshots`). chromium is installed by .ci/browser-deps (run by `make test`); without it
this test fails rather than skips.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Page, expect, sync_playwright

from medialayer.api import create_app
from medialayer.config import Settings
from medialayer.keys import create_key
from medialayer.kinds.base import Match
from medialayer.service import MediaLayer

import synth

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def images(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A loopback server of product photos (a lamp, its copy, a vase, its copy): its base URL
    and the folder it serves."""
    folder = tmp_path / "www"
    folder.mkdir()
    lamp, vase = synth.photo(1, (640, 480)), synth.photo(2, (640, 480))
    files = {"lamp.jpg": synth.jpeg(lamp), "lamp-copy.jpg": synth.jpeg(synth.crop_center(
        lamp, 0.8), 50), "vase.jpg": synth.jpeg(vase),
        "vase-copy.jpg": synth.jpeg(synth.pad(vase, 0.1, "white"))}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 functools.partial(_Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", folder
    server.shutdown()
    server.server_close()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[str, MediaLayer]]:
    """The HTTP service under uvicorn on a free loopback port: (base URL, its MediaLayer)."""
    ml = MediaLayer(tmp_path / "data")
    settings = Settings(data_dir=str(tmp_path / "data"), run_jobs=False,
                        fetch_allow_networks=["127.0.0.1/32"])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings, ml), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline, "the service did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", ml
    server.should_exit = True
    thread.join(timeout=30)
    ml.close()


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Page]:
    assert Path(CHROMIUM).exists(), "chromium is missing: run .ci/browser-deps (make test does)"
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=ARGS,
            viewport={"width": 1280, "height": 900})
        yield context.pages[0] if context.pages else context.new_page()
        context.close()


def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("MEDIALAYER_SCREENSHOTS") or tmp_path / "shots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def catalog(ml: MediaLayer, images: tuple[str, Path]) -> dict[str, str]:
    """Two clusters of a photo and its copy, then a pair joining them (a copy of the lamp
    listed with the vase's photo in the same frame, say): name -> media id. Each item's source
    is its URL on the image server, as if it had been indexed from there."""
    url, folder = images
    ids = {}
    for name, seller in (("lamp", "acme-lights"), ("lamp-copy", "cheap-deals"),
                         ("vase", "home-store"), ("vase-copy", "cheap-deals")):
        record = ml.index(folder / f"{name}.jpg", name=f"{name}.jpg", external_id=f"SKU-{name}",
                          metadata={"seller": seller, "category": "home"},
                          source_label=f"{url}/{name}.jpg")
        ids[name] = record.id
    copy, vase = ml.get(ids["lamp-copy"]), ml.get(ids["vase"])
    ml.review.keep(vase.tenant, "image", vase.seq, [Match(copy.seq, 0.72, explanation={
        "tier": "keypoints", "inliers": 26, "query_box": [0.1, 0.15, 0.55, 0.8],
        "reference_box": [0.3, 0.2, 0.9, 0.85], "query_coverage": 0.29,
        "reference_coverage": 0.39})])
    return ids


def test_review_scenario(page: Page, service: tuple[str, MediaLayer], images: tuple[str, Path],
                         tmp_path: Path) -> None:
    base, ml = service
    ids = catalog(ml, images)
    _, key = create_key(ml.store, "default", ["review", "search"], name="alice")
    out = shots(tmp_path)

    page.goto(f"{base}/ui")
    expect(page).to_have_url(f"{base}/ui/login")
    page.fill("input[name=api_key]", key)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{base}/ui/queue")
    expect(page.locator("li.item")).to_have_count(3)
    page.screenshot(path=str(out / "review-queue.png"), full_page=True)

    # the newest match first: the pair joining the lamp's and the vase's groups
    page.locator("li.item a.open").first.click()
    expect(page.locator("h1")).to_contain_text("0.72")
    expect(page.locator("svg.overlay rect.matched")).to_have_count(2)
    expect(page.locator("dl.explain")).to_contain_text("keypoints")
    page.screenshot(path=str(out / "review-pair.png"), full_page=True)
    pair_url = page.url

    page.locator("dl.explain a").click()  # its cluster
    expect(page.locator("li.card")).to_have_count(4)
    expect(page.locator("tr.joins")).to_have_count(1)
    expect(page.locator("li.card.proposed")).to_contain_text("lamp.jpg")
    page.screenshot(path=str(out / "review-cluster.png"), full_page=True)
    cluster_url = page.url
    page.keyboard.press("c")  # consolidate everything into the proposed canonical
    expect(page).to_have_url(cluster_url)
    expect(page.locator("li.card .badge.canonical")).to_have_count(1)
    expect(page.locator("li.card .badge.linked")).to_have_count(3)

    page.goto(pair_url)
    page.keyboard.press("n")  # not a duplicate: the cluster splits in two
    expect(page.locator("li.card")).to_have_count(2)
    expect(page.locator("tr.joins")).to_have_count(0)
    page.screenshot(path=str(out / "review-cluster-split.png"), full_page=True)

    page.click("nav >> text=Audit")
    entries = page.locator("tr.entry")
    expect(entries).to_have_count(2)
    expect(entries.first).to_contain_text("dismiss")
    expect(entries.first).to_contain_text("alice")
    expect(entries.nth(1)).to_contain_text("consolidate")
    page.screenshot(path=str(out / "review-audit.png"), full_page=True)

    hits = ml.search(synth.jpeg(synth.photo(1, (640, 480)))).results
    assert {h.media.id: h.canonical_id for h in hits}[ids["lamp-copy"]] == ids["lamp"]
