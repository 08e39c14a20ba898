"""Index nodes as real processes: two shards behind the API, one killed with SIGKILL mid-stream
and started again from its snapshot and the change feed."""

from __future__ import annotations

import io
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pg_fixtures import needs_postgres
from PIL import ImageOps
from typer.testing import CliRunner

from medialayer.api.app import create_app
from medialayer.catalog.store import MediaRecord
from medialayer.cli import app
from medialayer.config import Settings
from medialayer.errors import InvalidInput
from medialayer.index.remote import ShardQuery
from medialayer.index.shards import Partition
from medialayer.keys import create_key
from medialayer.kinds import get_kind
from medialayer.kinds.wire import ImageWire
from medialayer.service import MediaLayer

import synth

pytest_plugins = ["pg_fixtures"]

READY_WITHIN = 180.0
"""Seconds a node may take to load on a loaded machine before the test gives up on it."""
NODE_TIMEOUT = 120.0
"""Far above any search of this catalog, so only a dead node makes an answer partial (a
killed node's port refuses at once)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Node:
    """One `medialayer index-node` process."""

    shard: int
    shards: int
    env: dict[str, str]
    log: Path
    """Its output (a file: a pipe nobody reads could fill and stop it)."""
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "medialayer", "index-node", "--shard", str(self.shard),
                 "--shards", str(self.shards), "--port", str(self.port),
                 "--snapshot-every", "0"], env=self.env, stdout=out, stderr=subprocess.STDOUT)

    def ready(self) -> dict[str, Any]:
        """Its /ready answer once it gives one (polled: no wall-clock margin but the cap)."""
        assert self.process is not None
        deadline = time.monotonic() + READY_WITHIN
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            try:
                answer = httpx.get(f"{self.url}/v1/shard/ready", timeout=10)
                if answer.status_code == 200:
                    return dict(answer.json())
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"shard {self.shard} not ready within {READY_WITHIN} s")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=60)


@dataclass
class Cluster:
    """A catalog, two index nodes over it and an API (in this process) searching through
    them."""

    ml: MediaLayer
    nodes: list[Node]
    api: TestClient
    headers: dict[str, str]
    images: dict[str, bytes] = field(default_factory=dict)
    """Media id -> the image indexed under it."""
    records: dict[str, MediaRecord] = field(default_factory=dict)
    seeds: dict[str, int] = field(default_factory=dict)

    def index(self, seeds: range) -> None:
        for seed in seeds:
            data = synth.jpeg(synth.photo(seed))
            record = self.ml.index(data, "image", tenant="acme")
            self.images[record.id] = data
            self.records[record.id] = record
            self.seeds[record.id] = seed

    def search(self, media_id: str, image: bytes | None = None) -> dict[str, Any]:
        """A search through the API for the item (or for `image`, a copy of it)."""
        image = self.images[media_id] if image is None else image
        answer = self.api.post("/v1/search/image/upload", headers=self.headers,
                               files={"file": ("q.jpg", image, "image/jpeg")},
                               data={"top_k": "3"})
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def shard_of(self, media_id: str) -> int:
        return self.records[media_id].seq % len(self.nodes)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=needs_postgres)])
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    env = {**os.environ, "MEDIALAYER_DATA_DIR": str(tmp_path / "data"),
           "MEDIALAYER_SNAPSHOT_DIR": str(tmp_path / "snapshots"),
           "PYTHONPATH": os.pathsep.join(sys.path)}
    database_url = None
    if request.param == "postgresql":
        database_url = request.getfixturevalue("pg_url")
        env["MEDIALAYER_DATABASE_URL"] = database_url
    nodes = [Node(shard, 2, env, tmp_path / f"node-{shard}.log") for shard in range(2)]
    ml = MediaLayer(tmp_path / "data", database_url=database_url,
                    index_nodes=[n.url for n in nodes], node_timeout=NODE_TIMEOUT)
    settings = Settings(data_dir=str(tmp_path / "data"))
    client = TestClient(create_app(settings, ml), raise_server_exceptions=False)
    client.__enter__()
    _, key = create_key(ml.store, "acme", ["index", "search"])
    try:
        yield Cluster(ml, nodes, client, {"X-API-Key": key})
    finally:
        for node in nodes:
            node.stop()
        client.__exit__(None, None, None)
        ml.close()


def test_a_killed_node_degrades_answers_to_partial_and_comes_back_from_snapshot_and_feed(
        cluster: Cluster) -> None:
    cluster.index(range(8))
    for node in cluster.nodes:
        node.start()
    first = [node.ready()["kinds"]["image"] for node in cluster.nodes]
    assert sum(k["items"] for k in first) == 8 and all(k["snapshot_seq"] is None for k in first)
    cluster.index(range(8, 12))  # after the nodes started: they read these from the feed
    for media_id in cluster.images:
        answer = cluster.search(media_id)
        assert not answer["partial"] and answer["missing_shards"] == []
        assert answer["results"][0]["media_id"] == media_id
    for media_id, seed in list(cluster.seeds.items())[:4]:  # only the mirror view finds these
        copy = synth.jpeg(ImageOps.mirror(synth.crop_corner(synth.photo(seed), 0.7)))
        answer = cluster.search(media_id, copy)
        assert answer["results"][0]["media_id"] == media_id and not answer["partial"]

    answers = _searches_around(cluster, lambda: cluster.nodes[1].kill())
    assert all(a["partial"] for _, a in answers[-len(cluster.images) + 1:])
    for media_id, answer in answers:
        found = bool(answer["results"]) and answer["results"][0]["media_id"] == media_id
        if answer["partial"]:  # only the dead shard's items may be missing, and said to be
            assert answer["missing_shards"] == [1]
            assert found or cluster.shard_of(media_id) == 1
        else:
            assert found

    while_down = list(cluster.images)
    cluster.index(range(12, 16))  # the catalog takes writes while a node is down
    added = [m for m in cluster.images if m not in while_down]
    for media_id in added:
        answer = cluster.search(media_id)
        assert answer["partial"] and answer["missing_shards"] == [1]
        assert (answer["results"][:1] and answer["results"][0]["media_id"] == media_id) or \
            cluster.shard_of(media_id) == 1

    cluster.nodes[1].start()
    back = cluster.nodes[1].ready()["kinds"]["image"]
    assert back["snapshot_seq"] is not None  # mapped its snapshot, then replayed the feed
    assert back["snapshot_seq"] < max(cluster.records[m].seq for m in added)
    assert back["items"] == sum(cluster.shard_of(m) == 1 for m in cluster.images)
    for media_id in cluster.images:
        answer = cluster.search(media_id)
        assert not answer["partial"], answer
        assert answer["results"][0]["media_id"] == media_id
    gone = added[-1]  # a deletion reaches the searches at once (the nodes verify from the catalog)
    assert cluster.api.delete(f"/v1/media/{gone}", headers=cluster.headers).status_code == 204
    assert gone not in {r["media_id"] for r in cluster.search(gone)["results"]}


def _searches_around(cluster: Cluster, event: Callable[[], None]
                     ) -> list[tuple[str, dict[str, Any]]]:
    """Searches for every item in a loop on another thread; `event` happens once a round
    has been answered, and the loop stops after a full round answered since."""
    answers: list[tuple[str, dict[str, Any]]] = []
    rounds = len(cluster.images)
    after_event = threading.Event()
    done_after = threading.Event()

    def stream() -> None:
        since = 0
        while not done_after.is_set():
            for media_id in cluster.images:
                answer = cluster.search(media_id)
                answers.append((media_id, answer))
                since += after_event.is_set()
                if since >= rounds:
                    done_after.set()
                    break

    thread = threading.Thread(target=stream)
    thread.start()
    while len(answers) < rounds and thread.is_alive():
        time.sleep(0.05)
    event()
    after_event.set()
    thread.join()
    return answers


def test_a_query_travels_as_plain_arrays_and_nothing_else_is_read() -> None:
    """The node's body is arrays read without pickle: a query comes back whole (every view,
    so the second round's too), anything else is refused."""
    wire = ImageWire()
    query = get_kind("image").query(io.BytesIO(synth.jpeg(synth.photo(1)))).expanded()
    back = wire.load(wire.dump(query))
    assert back.codes == query.codes and back.box == query.box and back.page == query.page
    assert len(back.views) == len(query.views) > 1
    for a, b in zip(back.views, query.views, strict=True):
        assert (a.points == b.points).all() and (a.descriptors == b.descriptors).all()
        assert (a.size, a.mirrored) == (b.size, b.mirrored)
    for hostile in (pickle.dumps({"codes": [1]}), b"", wire.dump(query)[:100]):
        with pytest.raises(InvalidInput, match="not an image query"):
            wire.load(hostile)


def test_a_node_answers_only_for_its_partition(tmp_path: Path) -> None:
    ml = MediaLayer(tmp_path / "data")
    records = [ml.index(synth.jpeg(synth.photo(seed)), "image") for seed in range(4)]
    ml.close()
    node = MediaLayer(tmp_path / "data", shard=Partition(1, 2))
    try:
        for record, seed in zip(records, range(4), strict=True):
            query = get_kind("image").query(io.BytesIO(synth.jpeg(synth.photo(seed))))
            found = node.search_shard("image", ImageWire().dump(query), ShardQuery("default", 3))
            assert [m.key for m in found[:1]] == ([record.seq] if record.seq % 2 == 1 else [])
    finally:
        node.close()


def test_with_no_node_answering_every_surface_says_partial(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    """The library, the CLI's JSON and its table: an answer without its shards says so."""
    image = tmp_path / "a.jpg"
    image.write_bytes(synth.jpeg(synth.photo(1)))
    MediaLayer(tmp_path / "data").close()
    monkeypatch.setenv("MEDIALAYER_INDEX_NODES", ",".join(
        f"http://127.0.0.1:{free_port()}" for _ in range(2)))  # nothing listens there
    ml = MediaLayer(tmp_path / "data")
    try:
        ml.index(image)
        result = ml.search(image)
    finally:
        ml.close()
    assert result.results == [] and result.partial and result.missing_shards == [0, 1]
    runner = CliRunner()
    found = runner.invoke(app, ["search", str(image), "--data-dir", str(tmp_path / "data"),
                                "--json"])
    assert found.exit_code == 0, found.output
    assert json.loads(found.stdout)["missing_shards"] == [0, 1]
    table = runner.invoke(app, ["search", str(image), "--data-dir", str(tmp_path / "data")])
    assert "no match" in table.stdout and "partial" in table.output
