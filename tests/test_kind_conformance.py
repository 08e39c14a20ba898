"""Every registered kind, and a fake time-based one defined only in the tests, through the
library, every API route, bulk CSV jobs, the CLI and `dedupe`: a kind that passes needs nothing
outside its own package.

A kind needs samples here (`SAMPLES`): an original from a seed and an edited copy of it.
"""

from __future__ import annotations

import functools
import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from PIL import Image
from typer.testing import CliRunner

from medialayer import MediaLayer, MediaRef
from medialayer.cli import app
from medialayer.kinds import AnyKind, get_kind, kinds, register, unregister
from medialayer.kinds.base import CONFIDENCE_ORDER, Match, Segment, at_least

import audio_synth
import fakekind
import synth
import video_synth

if TYPE_CHECKING:
    from api_fixtures import Api

pytest_plugins = ["api_fixtures"]


@dataclass(frozen=True)
class Samples:
    original: Callable[[int], bytes]
    copy: Callable[[bytes], bytes]
    suffix: str


def _image_copy(data: bytes) -> bytes:
    return synth.jpeg(synth.crop_center(Image.open(io.BytesIO(data)), 0.8), quality=40)


def _audio_copy(data: bytes) -> bytes:
    """A 6-second excerpt, louder, under pink noise at 10 dB SNR."""
    x = audio_synth.read_wav(data)[2 * audio_synth.RATE: 8 * audio_synth.RATE]
    return audio_synth.wav_bytes(audio_synth.mix(1.5 * x, audio_synth.noise(6.0, 9, "pink"), 10.0))


@functools.cache
def _video(seed: int) -> bytes:
    return video_synth.mp4(video_synth.slideshow(seed, 16.0))


@functools.cache
def _video_copy(data: bytes) -> bytes:
    """Scaled down, its 3 s to 13 s kept, re-encoded at a lower quality and frame rate."""
    edited = video_synth.trimmed(video_synth.scaled(video_synth.clip_of(data), (256, 144)),
                                 3.0, 10.0)
    return video_synth.mp4(edited, fps=15, crf=32)


SAMPLES = {
    "audio": Samples(lambda seed: audio_synth.wav_bytes(audio_synth.melody(12.0, seed)),
                     _audio_copy, ".wav"),
    "image": Samples(lambda seed: synth.jpeg(synth.photo(seed, (640, 480))), _image_copy,
                     ".jpg"),
    "lines": Samples(lambda seed: fakekind.lines_file(fakekind.lines_of(seed)),
                     fakekind.excerpt, ".lines"),
    "video": Samples(_video, _video_copy, ".mp4"),
}
KIND_NAMES = sorted(set(kinds()) | {"lines"})


@pytest.fixture(params=KIND_NAMES)
def kind(request: pytest.FixtureRequest) -> Iterator[AnyKind]:
    register(fakekind.LinesKind())
    try:
        if request.param not in SAMPLES:
            pytest.fail(f"kind {request.param!r} has no samples in {__file__}: add them")
        yield get_kind(request.param)
    finally:
        unregister("lines")


def samples(kind: AnyKind) -> tuple[bytes, bytes, bytes]:
    """An original, its edited copy, and an unrelated item."""
    s = SAMPLES[kind.name]
    original = s.original(1)
    return original, s.copy(original), s.original(2)


def test_the_protocol_round_trips_and_verifies(kind: AnyKind) -> None:
    original, copy, other = samples(kind)
    stored = kind.stored(io.BytesIO(original))
    encoded = kind.encode(stored)
    assert kind.encode(kind.decode(encoded)) == encoded
    assert kind.sniff(original[:64]) and not kind.sniff(b"\0" * 64)
    query = kind.query(io.BytesIO(copy))
    assert kind.calibration.label(kind.verify(query, stored).score) == "high"
    assert kind.calibration.label(kind.verify(query, kind.stored(io.BytesIO(other))).score) \
        != "high"
    index = kind.new_index(lambda keys, windows=None: {})
    index.upsert_many([(1, "a", stored), (2, "b", stored)])
    assert 1 in index and len(index) == 2
    assert {c.key for c in index.candidates(query, "a")} == {1}  # tenant b's copy is filtered
    assert index.delete(1) and 1 not in index


def test_a_match_seen_from_the_other_side_exchanges_its_sides() -> None:
    m = Match(3, 0.9, (Segment(1, 2, 10, 12, 0.9),),
              {"tier": "keypoints", "query_box": (0, 0, 1, 1), "reference_coverage": 0.25})
    back = m.swapped()
    assert back.segments == (Segment(10, 12, 1, 2, 0.9),)
    assert back.explanation == {"tier": "keypoints", "reference_box": (0, 0, 1, 1),
                                "query_coverage": 0.25}
    assert back.swapped() == m


def test_library(kind: AnyKind, tmp_path: Path) -> None:
    original, copy, other = samples(kind)
    ml = MediaLayer(tmp_path / "data")
    a = ml.index(original, name="a")  # the kind sniffed from the content
    b = ml.index(other, kind.name, name="b")
    assert (a.media_type, b.media_type) == (kind.name, kind.name)
    top = ml.search(copy).results[0]
    assert top.media.id == a.id and top.confidence == "high"
    assert all(h.confidence != "high" for h in ml.search(other).results if h.media.id != b.id)
    there, back = ml.compare(copy, original), ml.compare(original, copy)
    assert (there.similarity_score, there.confidence) == (back.similarity_score, "high")
    assert ml.compare(MediaRef(a.id), MediaRef(b.id)).confidence != "high"
    added = ml.search(copy, index=True, name="copy")
    assert added.query_media is not None
    assert [h.media.id for h in added.results][:1] == [a.id]
    clusters = ml.clusters(kind.name, "high")
    assert [sorted(m.id for m in c.members) for c in clusters] == [
        sorted([a.id, added.query_media.id])]
    ml.delete(a.id)
    assert a.id not in {h.media.id for h in ml.search(copy).results}
    ml.close()


class _Files(ThreadingHTTPServer):
    daemon_threads = True


@pytest.fixture
def serve() -> Iterator[Callable[[dict[str, bytes]], str]]:
    """`serve({path: bytes})` -> the base URL of a loopback server of those files."""
    servers: list[ThreadingHTTPServer] = []

    def start(files: dict[str, bytes]) -> str:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - the http.server protocol
                body = files.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

        server = _Files(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_every_api_route(kind: AnyKind, make_api: Callable[..., Api],
                         serve: Callable[[dict[str, bytes]], str]) -> None:
    original, copy, other = samples(kind)
    base = serve({"/original": original, "/copy": copy, "/other": other})
    api = make_api()
    headers = api.key(scopes=("index", "search", "admin"))
    c, t = api.client, kind.name

    r = c.post(f"/v1/media/{t}/upload", headers=headers, files={"file": ("o", original)},
               data={"external_id": "o-1"})
    assert r.status_code == 201, r.text
    a = r.json()["id"]
    r = c.post(f"/v1/media/{t}/url", headers=headers, json={"url": f"{base}/other"})
    assert r.status_code == 201, r.text
    b = r.json()["id"]
    assert c.get(f"/v1/media/{a}", headers=headers).json()["media_type"] == t
    listed = c.get("/v1/media", headers=headers, params={"media_type": t}).json()["items"]
    assert [m["id"] for m in listed] == [a, b]

    r = c.post(f"/v1/search/{t}/upload", headers=headers, files={"file": ("q", copy)})
    assert r.json()["results"][0]["media_id"] == a, r.text
    assert r.json()["results"][0]["confidence"] == "high"
    r = c.post(f"/v1/search/{t}/url", headers=headers,
               json={"url": f"{base}/copy", "index": True, "name": "copy"})
    assert r.status_code == 200 and r.json()["results"][0]["media_id"] == a, r.text
    copy_id = r.json()["query_media_id"]

    r = c.post("/v1/compare", headers=headers,
               json={"a": {"url": f"{base}/copy"}, "b": {"media_id": a}})
    assert r.json()["confidence"] == "high", r.text
    r = c.post("/v1/compare/upload", headers=headers,
               files={"a": ("a", copy), "b": ("b", original)})
    assert r.json()["confidence"] == "high", r.text
    r = c.get("/v1/duplicates/clusters", headers=headers,
              params={"media_type": t, "min_confidence": "high"})
    assert [sorted(m["id"] for m in cl["members"]) for cl in r.json()["clusters"]] == [
        sorted([a, copy_id])], r.text
    r = c.post("/v1/decisions", headers=headers,
               json={"media_id": a, "other_media_id": copy_id, "action": "consolidate"})
    assert r.status_code in (200, 201), r.text

    csv_text = f"url,name\n{base}/original,again\n{base}/missing,gone\n"
    r = c.post("/v1/media/bulk", headers=headers, files={"file": ("l.csv", csv_text)})
    assert r.status_code == 202, r.text
    job = _finished(api, r.json()["job_id"], headers)
    assert (job["done"], job["failed"]) == (1, 1)
    listed = c.get("/v1/media", headers=headers, params={"media_type": t}).json()["items"]
    assert [m["name"] for m in listed][-1] == "again"

    assert c.delete(f"/v1/media/{a}", headers=headers).status_code == 204
    r = c.post(f"/v1/search/{t}/upload", headers=headers, files={"file": ("q", copy)})
    assert a not in {h["media_id"] for h in r.json()["results"]}


def _finished(api: Api, job_id: str, headers: dict[str, str]) -> dict[str, int]:
    """The job's progress once no row is pending (the app's runner works it meanwhile)."""
    while True:
        job: dict[str, int] = api.client.get(f"/v1/jobs/{job_id}", headers=headers).json()
        if job["pending"] == 0 and job["done"] + job["failed"] == job["total"]:
            return job
        time.sleep(0.05)


def test_cli_and_dedupe(kind: AnyKind, tmp_path: Path) -> None:
    original, copy, other = samples(kind)
    suffix = SAMPLES[kind.name].suffix
    folder = tmp_path / "files"
    (folder / "sub").mkdir(parents=True)
    (folder / f"a{suffix}").write_bytes(original)
    (folder / "sub" / f"a-copy{suffix}").write_bytes(copy)
    (folder / f"b{suffix}").write_bytes(other)
    (folder / "notes.unknown").write_bytes(b"skipped: no kind has this suffix")
    (tmp_path / f"q{suffix}").write_bytes(copy)
    cli = CliRunner()
    data = str(tmp_path / "data")

    r = cli.invoke(app, ["index", str(folder / f"a{suffix}"), str(folder / f"b{suffix}"),
                         "--data-dir", data, "--json"])
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.stdout)["indexed"]) == 2
    r = cli.invoke(app, ["search", str(tmp_path / f"q{suffix}"), "--data-dir", data, "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["results"][0]["name"] == f"a{suffix}"
    r = cli.invoke(app, ["compare", str(tmp_path / f"q{suffix}"), str(folder / f"a{suffix}"),
                         "--json"])
    assert json.loads(r.stdout)["confidence"] == "high", r.output
    r = cli.invoke(app, ["dedupe", str(folder), "--min-confidence", "high", "--json",
                         "--html", str(tmp_path / "report.html")])
    assert r.exit_code == 0, r.output
    clusters = json.loads(r.stdout)
    assert [sorted(m["name"] for m in c["members"]) for c in clusters] == [
        sorted([f"a{suffix}", f"a-copy{suffix}"])]
    assert "a-copy" in (tmp_path / "report.html").read_text()


def test_confidence_labels_are_ordered() -> None:
    assert [at_least(label, "medium") for label in CONFIDENCE_ORDER] == [False, True, True]
