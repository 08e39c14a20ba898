"""Index nodes seen from an API process: one search sent to every shard, the answers merged.

Each node owns one partition of the catalog (`medialayer.index.shards`) and answers a search
over it with verified matches (it reads its candidates' stored fingerprints from the catalog,
as any process does). A catalog row lives in exactly one partition and its verification needs
only the query and that row, so the best `top_k` of every shard's best `top_k` are the best
`top_k` of the catalog; each shard proposes its own most voted items, so no fewer candidates
are verified than in one process.

A shard that does not answer in time, answers with an error, or turns out to be another shard
than configured is missing from the answer, which says so (`Fanned.missing`): a search is
partial, never silently short.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx

from medialayer.kinds.base import Match, Segment

log = logging.getLogger("medialayer.index.remote")

SEARCH_PATH = "/v1/shard/search/{media_type}"
READY_PATH = "/v1/shard/ready"


@dataclass(frozen=True)
class Fanned:
    """Matches merged from every shard that answered, and the shards that did not."""

    matches: list[Match]
    missing: list[int]


@dataclass(frozen=True)
class ShardQuery:
    """What one search asks of every node besides the query's bytes."""

    tenant: str
    top_k: int
    min_score: float = 0.0
    exclude: int | None = None
    after: int = 0
    """The highest catalog seq the asking process wrote: a node that has not seen it polls
    the catalog first, so an ingest is found by the next search."""

    def params(self) -> dict[str, str | int | float]:
        params: dict[str, str | int | float] = {"tenant": self.tenant, "top_k": self.top_k,
                                                "min_score": self.min_score,
                                                "after": self.after}
        if self.exclude is not None:
            params["exclude"] = self.exclude
        return params


class IndexNodes:
    """The index nodes of one deployment: `urls[i]` serves shard i of len(urls)."""

    def __init__(self, urls: Sequence[str], timeout: float) -> None:
        if not urls:
            raise ValueError("no index node configured")
        self.urls = [url.rstrip("/") for url in urls]
        self._http = httpx.Client(timeout=timeout, trust_env=False, limits=httpx.Limits(
            max_connections=None, max_keepalive_connections=8 * len(urls)))
        self._pool = ThreadPoolExecutor(max_workers=8 * len(urls),
                                        thread_name_prefix="index-nodes")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._http.close()

    def search(self, media_type: str, query: bytes, ask: ShardQuery) -> Fanned:
        """Every shard's matches, in parallel, merged best first and cut to `top_k`."""
        futures = [self._pool.submit(self._ask, shard, media_type, query, ask)
                   for shard in range(len(self.urls))]
        matches: list[Match] = []
        missing = []
        for shard, future in enumerate(futures):
            found = future.result()
            if found is None:
                missing.append(shard)
            else:
                matches += found
        matches.sort(key=lambda m: (-m.score, m.key))
        return Fanned(matches[:ask.top_k], missing)

    def _ask(self, shard: int, media_type: str, query: bytes, ask: ShardQuery
             ) -> list[Match] | None:
        """The shard's matches, or None (logged) if it cannot give them."""
        url = self.urls[shard] + SEARCH_PATH.format(media_type=media_type)
        try:
            try:
                response = self._post(url, query, ask)
            except httpx.TransportError:  # a kept-alive connection the node had closed
                response = self._post(url, query, ask)
            response.raise_for_status()
            body = response.json()
            if (body.get("shard"), body.get("shards")) != (shard, len(self.urls)):
                raise ValueError(f"it serves shard {body.get('shard')} of "
                                 f"{body.get('shards')}, not {shard} of {len(self.urls)}")
            return [match_of(m) for m in body["matches"]]
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as e:
            log.warning("index node %s (shard %d) did not answer: %s", self.urls[shard], shard,
                        e)
            return None

    def _post(self, url: str, query: bytes, ask: ShardQuery) -> httpx.Response:
        return self._http.post(url, content=query, params=ask.params(),
                               headers={"Content-Type": "application/octet-stream"})


def match_json(match: Match) -> dict[str, Any]:
    """A match as a node sends it (its explanation is JSON-able already)."""
    return {"key": match.key, "score": match.score,
            "segments": [s.__dict__ for s in match.segments],
            "explanation": None if match.explanation is None else dict(match.explanation)}


def match_of(data: Mapping[str, Any]) -> Match:
    """A match as a node sent it."""
    return Match(int(data["key"]), float(data["score"]),
                 tuple(Segment(**s) for s in data.get("segments") or ()),
                 data.get("explanation"))
