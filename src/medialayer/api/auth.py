"""API keys on every /v1 route: who is calling (tenant), what they may do (scopes), how often.

The key arrives in `X-API-Key` and is only ever hashed and compared (medialayer.keys); it is never
logged. Rate limits are per key: in memory, per process, by default; shared by every process
through Redis when one is configured (medialayer.api.shared), so N workers do not give a key N
times its limit.

Live keys are cached for `key_cache_seconds`: a look-up is a thread hop and a query (its cost is
in docs/benchmarks-http.md), and a busy client presents the same key hundreds of times a second.
Per process, a revoked key is refused within the cache time; in the shared cache, `keys revoke`
removes it at once.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyHeader
from starlette.exceptions import HTTPException

from medialayer.api.shared import Redis, decode_key, encode_key, key_entry, key_index
from medialayer.catalog.store import SqlCatalogStore
from medialayer.keys import KeyInfo, authenticate, digest
from medialayer.service import MediaLayer

KEY_ID_SCOPE = "medialayer.key_id"
"""Where the caller's key id is left for the access log (the id, never the key)."""
API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False,
                              description="An API key created with `medialayer keys create`.")


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """A token bucket per key: `per_minute` requests a minute, bursts of up to `per_minute`."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str, per_minute: int) -> float:
        """Take one token; 0 if granted, else the seconds until one is available."""
        if per_minute <= 0:
            return 0.0
        rate = per_minute / 60.0
        now = self._clock()
        with self._lock:
            bucket = self._buckets.setdefault(key, _Bucket(float(per_minute), now))
            bucket.tokens = min(float(per_minute), bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / rate


class KeyCache:
    """Live keys by digest, each trusted for `seconds` after it was read from the catalog.

    Unknown and revoked keys are never cached: they are looked up every time, so a key created
    a moment ago works at once. Bounded: past `max_keys` entries the cache starts over. With
    `shared`, the entries live in Redis instead, for every process, where a revocation finds
    them.
    """

    def __init__(self, seconds: float, max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic, shared: Redis | None = None) -> None:
        self.seconds = seconds
        self._max_keys = max_keys
        self._clock = clock
        self._keys: dict[str, tuple[KeyInfo, float]] = {}
        self._shared = shared

    def get(self, plaintext: str) -> KeyInfo | None:
        """The cached live key for `plaintext`, or None if it must be looked up."""
        found = self._keys.get(digest(plaintext))
        if found is None or self._clock() - found[1] >= self.seconds:
            return None
        return found[0]

    async def authenticate(self, catalog: MediaLayer | SqlCatalogStore, plaintext: str
                           ) -> KeyInfo | None:
        """The live key for `plaintext`: from the cache, else from the catalog, through the
        service (or a bare store), in a thread, so the query never blocks the event loop."""
        lookup = catalog.authenticate if isinstance(catalog, MediaLayer) else \
            functools.partial(authenticate, catalog)
        if self._shared is not None and self.seconds > 0:
            return await self._shared_authenticate(self._shared, lookup, plaintext)
        key = self.get(plaintext)
        if key is not None:
            return key
        key = await run_in_threadpool(lookup, plaintext)
        if key is not None and self.seconds > 0:
            if len(self._keys) >= self._max_keys:
                self._keys.clear()
            self._keys[digest(plaintext)] = (key, self._clock())
        return key

    async def _shared_authenticate(self, shared: Redis,
                                   lookup: Callable[[str], KeyInfo | None],
                                   plaintext: str) -> KeyInfo | None:
        entry = key_entry(shared.prefix, digest(plaintext))

        async def cached() -> KeyInfo | None:
            found = await shared.client.get(entry)
            return decode_key(found) if found is not None else None

        key = await shared.call(cached, None)
        if key is not None:
            return key
        key = await run_in_threadpool(lookup, plaintext)
        if key is not None:
            live = key

            async def remember() -> None:
                ttl = max(1, math.ceil(self.seconds))
                async with shared.client.pipeline(transaction=True) as pipe:
                    pipe.set(entry, encode_key(live), ex=ttl)
                    pipe.set(key_index(shared.prefix, live.id), digest(plaintext), ex=ttl)
                    await pipe.execute()

            await shared.call(remember, None)
        return key


async def throttle(local: RateLimiter, shared: Redis | None, key_id: str,
                   per_minute: int) -> float:
    """Seconds `key_id` must wait (0: go ahead): from the shared bucket when there is one and it
    answers, else from this process's."""
    if shared is not None and per_minute > 0:
        wait = await shared.take_token(key_id, per_minute)
        if wait is not None:
            return wait
    return local.acquire(key_id, per_minute)


def require(*scopes: str) -> Callable[..., Awaitable[KeyInfo]]:
    """A dependency admitting a live, non-throttled key that has any of `scopes`.

    Throttling is checked before scopes, so a key hammering routes it may not use is slowed
    down too.
    """

    async def dependency(request: Request,
                         api_key: Annotated[str | None, Security(API_KEY_HEADER)]) -> KeyInfo:
        if not api_key:
            raise HTTPException(401, "missing X-API-Key header")
        state = request.app.state
        key = await state.key_cache.authenticate(state.ml, api_key)
        if key is None:
            raise HTTPException(401, "unknown or revoked API key")
        request.scope[KEY_ID_SCOPE] = key.id
        per_minute = key.rate_limit if key.rate_limit is not None else \
            state.settings.default_rate_limit
        wait = await throttle(state.rate_limiter, state.shared, key.id, per_minute)
        if wait > 0:
            raise HTTPException(429, f"rate limit of {per_minute} requests per minute exceeded",
                                headers={"Retry-After": str(max(1, math.ceil(wait)))})
        if not any(key.allows(scope) for scope in scopes):
            raise HTTPException(403, f"this API key needs the {' or '.join(scopes)} scope")
        found: KeyInfo = key
        return found

    return dependency


def require_scope_for(key: KeyInfo, scope: str, what: str) -> None:
    """403 unless `key` has `scope`: for a parameter that widens what a route does (a search
    with index=true writes, so it needs the index scope besides the route's search scope)."""
    if not key.allows(scope):
        raise HTTPException(403, f"{what} needs an API key with the {scope} scope")


IndexKey = Annotated[KeyInfo, Depends(require("index"))]
SearchKey = Annotated[KeyInfo, Depends(require("search"))]
ReadKey = Annotated[KeyInfo, Depends(require("search", "index"))]
ReviewKey = Annotated[KeyInfo, Depends(require("review", "index"))]
"""Deciding: the `review` scope (and `index`, which could always record decisions)."""
ReviewReadKey = Annotated[KeyInfo, Depends(require("review", "search"))]
AdminKey = Annotated[KeyInfo, Depends(require("admin"))]
