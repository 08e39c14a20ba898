"""The README walk-through as a newcomer runs it: serve, then the two printed curl lines."""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:
    from api_fixtures import Origin

pytest_plugins = ["api_fixtures"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_curl_line(line: str) -> httpx.Response:
    """Do what a printed `curl -s -H ... -F file=@... -F k=v URL` line does, with httpx."""
    words = shlex.split(line)
    headers, files, data = {}, {}, {}
    for flag, value in zip(words, words[1:], strict=False):
        if flag == "-H":
            name, _, val = value.partition(": ")
            headers[name] = val
        elif flag == "-F":
            name, _, val = value.partition("=")
            if val.startswith("@"):
                files[name] = (Path(val[1:]).name, Path(val[1:]).read_bytes())
            else:
                data[name] = val
    return httpx.post(words[-1], headers=headers, files=files, data=data, timeout=30)


def start_serve(data_dir: Path, *args: str) -> tuple[subprocess.Popen, list[str]]:
    """`medialayer serve` as a newcomer starts it: its printed lines up to the docs link, once
    it answers /readyz."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "medialayer", "serve", "--host", "127.0.0.1", "--port", str(port),
         *args],
        env={**os.environ, "MEDIALAYER_DATA_DIR": str(data_dir)}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not any("/docs" in x for x in lines):
        lines.append(server.stdout.readline())
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    return server, lines


def curl_lines(lines: list[str]) -> list[str]:
    return [x.strip() for x in lines if x.strip().startswith("curl")]


def test_serve_prints_a_key_and_curl_lines_that_find_the_copy(tmp_path: Path) -> None:
    server, lines = start_serve(tmp_path / "data")
    try:
        key = re.search(r"(ml_\S+)", next(x for x in lines if "First API key" in x)).group(1)
        curls = curl_lines(lines)
        assert len(curls) == 2 and all(key in c for c in curls)
        indexed = run_curl_line(curls[0])
        assert indexed.status_code == 201, indexed.text
        found = run_curl_line(curls[1]).json()["results"]
        assert found[0]["media_id"] == indexed.json()["id"]
        assert found[0]["external_id"] == "sku-10042" and found[0]["confidence"] == "high"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_serve_with_two_workers_shares_one_catalog(tmp_path: Path) -> None:
    """Each worker process has its own indexes: what one indexes, the other finds."""
    server, lines = start_serve(tmp_path / "data", "--workers", "2")
    try:
        curls = curl_lines(lines)
        indexed = run_curl_line(curls[0])
        assert indexed.status_code == 201, indexed.text
        answers = []
        for _ in range(20):  # fresh connections: the kernel spreads them over both workers
            answer = run_curl_line(curls[1])
            assert "results" in answer.json(), answer.text
            answers.append(answer.json()["results"])
            time.sleep(0.1)
        assert all(a and a[0]["media_id"] == indexed.json()["id"] for a in answers[-10:])
        assert server.poll() is None
        port = int(re.search(r":(\d+)/", curls[1]).group(1))
        # 16 connections opened in one burst (as a client's keep-alive pool does) land on both
        conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(16)]
        try:
            time.sleep(1.0)
            owners = connection_owners(children(server.pid), port)
        finally:
            for conn in conns:
                conn.close()
        assert sum(owners.values()) == 16 and len(owners) == 2, owners
        killed = workers_of(server.pid)[0]  # a worker that dies is replaced
        os.kill(killed, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (killed in workers_of(server.pid)
                                               or len(workers_of(server.pid)) < 2):
            time.sleep(0.2)
        assert killed not in workers_of(server.pid) and len(workers_of(server.pid)) == 2
        assert run_curl_line(curls[1]).json()["results"][0]["media_id"] == indexed.json()["id"]
    finally:
        server.terminate()
        rest, _ = server.communicate(timeout=30)
    workers = set(re.findall(r"Started server process \[(\d+)\]", "".join(lines) + rest))
    assert len(workers) == 2


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, ValueError):
            continue
    return found


def workers_of(pid: int) -> list[int]:
    """The live worker processes of a `serve --workers` supervisor (not its resource tracker,
    not a dead worker not yet reaped)."""
    found = []
    for child in children(pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            state = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if b"spawn_main" in cmdline and state != "Z":
            found.append(child)
    return found


def connection_owners(pids: list[int], port: int) -> Counter[int]:
    """How many established connections to `port` each of `pids` holds (from /proc)."""
    owner_of = {}
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                owner_of[target[8:-1]] = pid
    owners: Counter[int] = Counter()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port, state, inode = int(fields[1].split(":")[1], 16), fields[3], fields[9]
        if local_port == port and state == "01" and inode in owner_of:
            owners[owner_of[inode]] += 1
    return owners


def descendants(pid: int) -> set[int]:
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children(todo.pop()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pids: set[int]) -> set[int]:
    """Those of `pids` still running (a zombie has ended: it only waits to be reaped)."""
    running = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            running.add(pid)
    return running


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["one", "two-workers"])
def test_kill_9_of_serve_leaves_no_process_behind(tmp_path: Path, origin: Origin,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  workers: list[str]) -> None:
    """The HTTP workers, forkservers, fingerprinting pools and resource trackers of a `serve`
    killed with SIGKILL all end, though nothing could tell them to."""
    monkeypatch.setenv("MEDIALAYER_FETCH_ALLOW_NETWORKS", '["127.0.0.1/32"]')
    server, lines = start_serve(tmp_path / "data", *workers)
    try:
        key = re.search(r"(ml_\S+)", next(x for x in lines if "First API key" in x)).group(1)
        base = re.search(r"(http://\S+?)/docs", "".join(lines)).group(1)
        listing = "url\n" + "".join(f"{origin.url('/photo.jpg')}?n={i}\n" for i in range(2))
        job = httpx.post(f"{base}/v1/media/bulk", headers={"X-API-Key": key}, timeout=60,
                         files={"file": ("l.csv", listing)}).json()["job_id"]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and httpx.get(
                f"{base}/v1/jobs/{job}", headers={"X-API-Key": key}, timeout=60
        ).json()["state"] != "done":
            time.sleep(0.2)
        family = descendants(server.pid)
        names = {Path(f"/proc/{pid}/cmdline").read_bytes() for pid in alive(family)}
        assert any(b"forkserver" in name for name in names), names  # the pool is running
    finally:
        server.kill()
        server.wait()
    deadline = time.monotonic() + 30
    while alive(family) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert alive(family) == set()
