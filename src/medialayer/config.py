"""Settings from `MEDIALAYER_*` environment variables or an optional env file."""

from __future__ import annotations

import os

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the service; docs/configuration.md lists them with their defaults."""

    model_config = SettingsConfigDict(env_prefix="MEDIALAYER_", env_file=None, extra="ignore")

    data_dir: str = "data"
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    """HTTP processes `serve` runs. Each holds its own copy of the indexes (memory x N) and
    polls the catalog for the others' writes; they share the port and every core."""
    index_bands: int | None = None
    """Bands of each kind's code index (None: the kind's default, 4 for 64-bit image codes;
    about 64 / log2(items) is best, so 3 from a few million items, docs/benchmarks-index.md).
    Read by every process from MEDIALAYER_INDEX_BANDS."""
    snapshot_dir: str | None = None
    """Where index snapshots are kept (docs/deployment.md): every process maps them instead
    of building its indexes from the catalog, and `serve` writes them before its workers
    start; `medialayer snapshot` refreshes them. None: no snapshots."""
    snapshot_every: float = 3600.0
    """Seconds between the snapshot refreshes `serve --workers N` runs (0: none): workers that
    start later (restarts) map a recent one and replay less."""
    index_nodes: str | None = None
    """Comma-separated URLs of the index nodes (`medialayer index-node`), shard i at place i:
    the kinds they serve (image) are searched there, not in this process's memory. Read by
    every process from MEDIALAYER_INDEX_NODES (docs/deployment.md, "Index nodes")."""
    index_node_timeout: float = 10.0
    """Seconds an API process waits for an index node; one that has not answered by then is
    missing from the answer, which is flagged partial."""
    log_json: bool = False
    log_level: str = "info"
    # safe URL fetching
    fetch_connect_timeout: float = 5.0
    fetch_read_timeout: float = 15.0
    fetch_total_timeout: float = 30.0
    fetch_max_bytes: int = 50 * 1024 * 1024
    fetch_max_redirects: int = 5
    fetch_allow_networks: list[str] = Field(default_factory=list)
    """CIDRs that may be fetched although private/loopback (e.g. a test server on 127.0.0.1)."""
    # limits
    upload_max_bytes: int = 50 * 1024 * 1024
    default_rate_limit: int = 600
    """Requests per minute per API key when the key sets none."""
    key_cache_seconds: float = 5.0
    """How long a process trusts a key it has looked up: a key revoked from another process
    (the CLI) is refused within this time; 0 looks every request up."""
    redis_url: str | None = None
    """A Redis (`redis://host:6379/0`) that every process shares rate limits and the key cache
    through; None keeps both per process."""
    redis_prefix: str = "medialayer:"
    """Prefix of every Redis key, so deployments can share one Redis."""
    heavy_decodes: int = 1
    """Images decoding to more than 32 MiB that one process decodes at once; the others wait,
    so several large images arriving together cannot multiply the memory peak."""
    cpu_threads: int = 2
    """Requests per process fingerprinting or searching at once; the rest queue. More threads
    than cores only fight over the GIL (docs/configuration.md)."""
    bulk_max_rows: int = 1_000_000
    bulk_concurrency: int = 16
    bulk_workers: int | None = None
    """Processes that fingerprint bulk rows (the CPU part); default `bulk_pool_size()`."""
    bulk_claim_timeout: float = 300.0
    """Seconds after which a claimed but unfinished row counts as abandoned (its worker died)."""
    ui_secure_cookies: bool = False
    """Mark the review UI's cookies Secure even when the request does not look like TLS (a
    proxy that terminates TLS without X-Forwarded-Proto); over https they are Secure anyway."""
    ui_session_hours: float = 12.0
    """How long a review UI sign-in lasts."""
    webhook_max_attempts: int = 20
    """Tries of one webhook delivery before it is left failed (in the delivery log)."""
    webhook_backoff_seconds: float = 5.0
    """Wait after the first failed try; doubled after each next one, up to the max."""
    webhook_backoff_max: float = 3600.0
    run_webhooks: bool = True
    """Whether `serve` also sends webhook deliveries (any number of processes may)."""
    run_jobs: bool = True
    """Whether `serve` also works bulk jobs; turn off on API-only nodes of a larger deployment."""

    def bulk_pool_size(self) -> int:
        """Fingerprint processes per worker: by default the cores shared out among the HTTP
        workers. More processes than cores only queue (docs/configuration.md)."""
        if self.bulk_workers:
            return max(1, self.bulk_workers)
        return max(1, (os.cpu_count() or 1) // max(1, self.workers))


def comma_list(text: str | None) -> list[str]:
    """The items of a comma-separated setting or option (scopes, index node URLs)."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]
