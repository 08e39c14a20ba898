"""Route helpers: CPU-bound work is bounded per process."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import anyio

from medialayer.api.deps import cpu_bound


def test_cpu_bound_work_runs_at_most_cpu_threads_at_once() -> None:
    running, most = 0, 0
    lock = threading.Lock()

    def work(seconds: float) -> float:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(seconds)
        with lock:
            running -= 1
        return seconds

    async def main() -> list[float]:
        request = SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(
            cpu_limiter=anyio.CapacityLimiter(2))))
        results: list[float] = []

        async def one() -> None:
            results.append(await cpu_bound(request, work, 0.05))

        async with anyio.create_task_group() as group:
            for _ in range(6):
                group.start_soon(one)
        return results

    assert anyio.run(main) == [0.05] * 6
    assert most == 2
