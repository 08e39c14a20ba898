"""The readers-writer lock, and searches running alongside writes."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from medialayer import MediaLayer
from medialayer.locks import ReadWriteLock

import synth


def test_readers_share_and_a_writer_excludes_them() -> None:
    lock = ReadWriteLock()
    inside, most = [0], [0]
    guard = threading.Lock()

    def reader() -> None:
        with lock.read():
            with guard:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            time.sleep(0.05)
            with guard:
                inside[0] -= 1

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] > 1  # readers overlapped

    order = []
    with lock.write():
        t = threading.Thread(target=lambda: (lock.read().__enter__(), order.append("read")))
        t.start()
        time.sleep(0.05)
        order.append("write done")
    t.join()
    assert order == ["write done", "read"]


def test_the_writer_can_reenter_and_read() -> None:
    lock = ReadWriteLock()
    with lock.write(), lock.write(), lock.read():
        pass
    with lock.read():  # released completely
        pass


def test_searches_and_writes_from_many_threads(tmp_path) -> None:
    ml = MediaLayer(tmp_path / "d")
    photos = [synth.jpeg(synth.photo(seed)) for seed in range(6)]
    ids = {}

    def ingest(i: int) -> None:
        ids[i] = ml.index(photos[i]).id

    def search(i: int) -> list[str]:
        return [h.media.id for h in ml.search(photos[i % 3]).results]

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(ingest, range(3)))
        futures = [pool.submit(search, i) for i in range(12)]
        futures += [pool.submit(ingest, i) for i in range(3, 6)]
        results = [f.result() for f in futures[:12]]
    for i, found in enumerate(results):
        assert found[0] == ids[i % 3]
    assert ml.search(photos[5]).results[0].media.id == ids[5]
    ml.close()


def test_a_waiting_writer_holds_back_new_readers() -> None:
    """Otherwise a steady stream of searches would starve index writes for ever."""
    lock = ReadWriteLock()
    order = []
    first_reader_in = threading.Event()

    def first_reader() -> None:
        with lock.read():
            first_reader_in.set()
            time.sleep(0.15)
        order.append("first reader out")

    def writer() -> None:
        with lock.write():
            order.append("writer")

    def late_reader() -> None:
        with lock.read():
            order.append("late reader")

    threads = [threading.Thread(target=first_reader)]
    threads[0].start()
    first_reader_in.wait()
    threads.append(threading.Thread(target=writer))
    threads[1].start()
    time.sleep(0.05)  # the writer is waiting now
    threads.append(threading.Thread(target=late_reader))
    threads[2].start()
    for t in threads:
        t.join()
    assert order == ["first reader out", "writer", "late reader"]
