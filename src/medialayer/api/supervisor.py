"""Several HTTP worker processes on one port, each with its own listening socket.

uvicorn's own `--workers` shares one socket between the workers: a burst of new connections is
accepted by whichever worker wakes first, often all of them by one, and keep-alive clients then
stay on that worker while the other idles (measured in bench/http.py: 8 clients, one worker at
1.07 cores). Here each worker binds the port itself with SO_REUSEPORT, and the kernel spreads
new connections over the workers by address hash, whatever they are doing.

The supervisor only starts, watches and stops: a worker that dies is started again, SIGINT or
SIGTERM stops them all (each finishes its requests, as uvicorn does on SIGTERM).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import threading
from multiprocessing.process import BaseProcess
from types import FrameType

from medialayer.lifeline import children_die_with_me, die_with_parent

log = logging.getLogger("medialayer.api.supervisor")
APP = "medialayer.api.app:create_app"
MALLOC_ARENAS = 2
RESTART_PAUSE = 1.0
"""Seconds between restarts of a dead worker, so a worker that cannot start does not spin."""


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port) that other processes may bind too."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _worker(host: str, port: int, log_level: str) -> None:
    import uvicorn

    die_with_parent()  # a supervisor killed with SIGKILL takes its workers with it

    config = uvicorn.Config(APP, factory=True, host=host, port=port, log_level=log_level,
                            access_log=False)
    uvicorn.Server(config).run(sockets=[reuse_port_socket(host, port)])


def serve_workers(host: str, port: int, workers: int, log_level: str) -> None:
    """Run `workers` processes of the app on host:port until SIGINT or SIGTERM."""
    if not hasattr(socket, "SO_REUSEPORT"):  # pragma: no cover - Linux and the BSDs have it
        import uvicorn

        uvicorn.run(APP, factory=True, workers=workers, host=host, port=port,
                    log_level=log_level, access_log=False)
        return
    reuse_port_socket(host, port).close()  # a taken port fails here, before any worker starts
    # glibc gives each thread that allocates its own arena (up to 8 per core); a worker's
    # request threads then spread freed memory over many arenas that are never given back,
    # and its resident size creeps up. Read by each spawned worker at start; the operator's
    # own setting wins.
    os.environ.setdefault("MALLOC_ARENA_MAX", str(MALLOC_ARENAS))
    context = multiprocessing.get_context("spawn")
    children_die_with_me()
    stop = threading.Event()

    def start() -> BaseProcess:
        process = context.Process(target=_worker, args=(host, port, log_level), daemon=False)
        process.start()
        return process

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    running = [start() for _ in range(workers)]
    while not stop.wait(RESTART_PAUSE):
        for i, process in enumerate(running):
            if not process.is_alive():
                log.warning("worker %s exited with %s; starting another", process.pid,
                            process.exitcode)
                running[i] = start()
    for process in running:
        process.terminate()  # SIGTERM: uvicorn finishes what is in flight, then exits
    for process in running:
        process.join()
