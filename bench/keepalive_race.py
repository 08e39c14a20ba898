"""The keep-alive race behind the soak's lone client error: a client that keeps an idle
connection as long as the server does reuses it, now and then, just as the server closes it.

uvicorn (its default `timeout_keep_alive`, 5 s) serves a trivial app; `--clients` httpx
clients, one connection each, send a request every 4.97-5.03 s (idle right at the server's
timeout) for `--seconds`, once with `keepalive_expiry` equal to the server's 5 s and once
shorter. Prints a markdown table of requests and errors per setting.

    python bench/keepalive_race.py [--clients 20] [--seconds 120] [--expiry 5.0 4.0 2.0]
"""

from __future__ import annotations

import os
import sys

if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)  # as in bench/http.py: keep the standard library's `http` importable

import argparse
import asyncio
import collections
import random
import socket
import threading
import time

import httpx
import uvicorn


async def app(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
    if scope["type"] == "http":
        await send(
            {
                "type": "http.response.start",
                "status": 200,  # type: ignore[operator]
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        await send({"type": "http.response.body", "body": b"ok"})  # type: ignore[operator]


def start_server() -> tuple[uvicorn.Server, int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="off")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, port


async def clients(
    port: int, expiry: float, count: int, seconds: float
) -> tuple[int, collections.Counter[str]]:
    errors: collections.Counter[str] = collections.Counter()
    done = 0

    async def one(seed: int) -> None:
        nonlocal done
        rng = random.Random(seed)
        limits = httpx.Limits(max_connections=1, keepalive_expiry=expiry)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", limits=limits, trust_env=False
        ) as client:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                await asyncio.sleep(rng.uniform(4.97, 5.03))
                try:
                    await client.get("/")
                    done += 1
                except httpx.HTTPError as e:
                    errors[type(e).__name__] += 1

    await asyncio.gather(*(one(i) for i in range(count)))
    return done, errors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--expiry", type=float, nargs="+", default=[5.0, 4.0, 2.0])
    args = ap.parse_args()
    server, port = start_server()

    async def all_settings() -> list[tuple[int, collections.Counter[str]]]:
        return await asyncio.gather(
            *(clients(port, e, args.clients, args.seconds) for e in args.expiry)
        )

    results = asyncio.run(all_settings())
    server.should_exit = True
    print("| client keepalive_expiry s | server timeout_keep_alive s | requests | errors |")
    print("|---:|---:|---:|---|")
    for expiry, (done, errors) in zip(args.expiry, results, strict=True):
        shown = ", ".join(f"{n} {name}" for name, n in errors.items()) or "0"
        print(
            f"| {expiry:g} | {server.config.timeout_keep_alive} | {done + sum(errors.values())}"
            f" | {shown} |"
        )


if __name__ == "__main__":
    main()
