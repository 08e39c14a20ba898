"""Rate limits and the live-key cache shared by every server process through Redis.

Without it each process keeps its own token buckets and key cache, so `serve --workers N` gives
a key N times its limit and a revocation made from the CLI is only seen when each process's
cache entry expires. With `MEDIALAYER_REDIS_URL` set, one token bucket per key lives in Redis,
updated by a script that runs atomically on the server (with the server's clock, so the
processes' clocks never matter), and live keys are cached there, where `keys revoke` deletes
them at once.

Redis is an accelerator, never a dependency of correctness: when it cannot be reached the
process falls back to its own buckets and to catalog look-ups, logs it, and tries Redis again
after a pause, so an outage costs precision of the limits and never a request.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import datetime
from typing import Any, TypeVar

import redis
import redis.asyncio

from medialayer.keys import KeyInfo

log = logging.getLogger("medialayer.api.shared")

T = TypeVar("T")

RETRY_AFTER_OUTAGE = 5.0
"""Seconds a process leaves Redis alone after a failed call before trying it again."""
TIMEOUT = 0.5
"""Seconds to connect to Redis or wait for an answer before falling back."""

TOKEN_BUCKET = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = tonumber(state[1]) or capacity
local updated = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - updated) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'updated', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(capacity / rate) + 1)
return tostring(wait)
"""
"""A token bucket per key, refilled at `rate` per second up to `capacity`: the same rule as the
in-process RateLimiter, taken in one atomic step so concurrent processes never both spend the
last token."""


class Redis:
    """One deployment's Redis: a connection pool, the key prefix, and the outage pause."""

    def __init__(self, url: str, prefix: str = "medialayer:") -> None:
        self.prefix = prefix
        self.client: redis.asyncio.Redis = redis.asyncio.Redis.from_url(
            url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT
        )
        self._bucket = self.client.register_script(TOKEN_BUCKET)
        self._down_until = 0.0

    async def call(self, action: Callable[[], Awaitable[T]], fallback: T) -> T:
        """`action`'s answer, or `fallback` while Redis is unreachable (logged once per outage)."""
        if time.monotonic() < self._down_until:
            return fallback
        try:
            return await action()
        except (redis.RedisError, OSError) as error:
            log.warning(
                "redis unreachable, using per-process limits and key look-ups for %.0f s: %s",
                RETRY_AFTER_OUTAGE,
                type(error).__name__,
            )
            self._down_until = time.monotonic() + RETRY_AFTER_OUTAGE
            return fallback

    async def take_token(self, key_id: str, per_minute: int) -> float | None:
        """0 if `key_id` may go ahead, else the seconds until it may; None when Redis is down."""

        async def take() -> float | None:
            wait = await self._bucket(
                keys=[f"{self.prefix}bucket:{key_id}"], args=[per_minute, per_minute / 60.0]
            )
            return float(wait)

        return await self.call(take, None)

    async def close(self) -> None:
        await self.client.aclose()


def key_entry(prefix: str, key_digest: str) -> str:
    return f"{prefix}key:{key_digest}"


def key_index(prefix: str, key_id: str) -> str:
    """Where the digest of a cached key is found by the key's id, which is all a revocation
    knows."""
    return f"{prefix}keyid:{key_id}"


def encode_key(key: KeyInfo) -> str:
    fields = asdict(key)
    for name in ("created_at", "revoked_at"):
        value = fields[name]
        fields[name] = value.isoformat() if value is not None else None
    fields["scopes"] = list(key.scopes)
    return json.dumps(fields)


def decode_key(text: str | bytes) -> KeyInfo:
    fields: dict[str, Any] = json.loads(text)
    for name in ("created_at", "revoked_at"):
        value = fields[name]
        fields[name] = datetime.fromisoformat(value) if value is not None else None
    fields["scopes"] = tuple(fields["scopes"])
    return KeyInfo(**fields)


def forget_key(url: str, prefix: str, key_id: str) -> bool:
    """Drop a revoked key from the shared cache, so no process trusts it a moment longer.

    Called by `keys revoke` (a short-lived process, hence the plain client). False when Redis
    could not be reached: the caller says so, since the key then stays trusted until its cache
    entry expires."""
    client = redis.Redis.from_url(url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)
    try:
        found = client.get(key_index(prefix, key_id))
        if isinstance(found, bytes):
            client.delete(key_entry(prefix, found.decode()), key_index(prefix, key_id))
        return True
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()
