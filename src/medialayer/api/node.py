"""An index node's HTTP face: searches of its partition, and whether it is ready.

Only API processes of the same deployment talk to it, on loopback or a private network: it has
no keys, no limits and no UI (docs/deployment.md says how to keep it off public interfaces).
A query comes as the kind's byte form (`medialayer.kinds.wire`, never pickled), the search's
parameters in the query string; the answer names the shard, so an API process configured with
the nodes in the wrong order finds out instead of merging the wrong partitions.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from medialayer.errors import MediaLayerError, describe
from medialayer.index.remote import READY_PATH, SEARCH_PATH, ShardQuery, match_json
from medialayer.index.shards import Partition
from medialayer.kinds.wire import WIRES
from medialayer.service import MediaLayer

MAX_QUERY_BYTES = 4 * 1024 * 1024
"""Far above any query's byte form: a larger body is not one."""


def create_node_app(ml: MediaLayer, partition: Partition) -> FastAPI:
    """The node's app over `ml`, a MediaLayer opened with `shard=partition`."""
    app = FastAPI(title=f"MediaLayer index node ({partition})", docs_url=None, redoc_url=None,
                  openapi_url=None)
    shard = {"shard": partition.shard, "shards": partition.shards}

    @app.get(READY_PATH)
    def ready() -> JSONResponse:
        """200 with each kind's items once every kind it serves is loaded, else 503."""
        kinds: dict[str, Any] = {}
        for name in WIRES:
            status = ml.shard_status(name)
            if status is None:
                return JSONResponse({**shard, "ready": False}, status_code=503)
            items, seen, mapped = status
            kinds[name] = {"items": items, "seen": seen,
                           "snapshot_seq": mapped.last_seq if mapped else None}
        return JSONResponse({**shard, "ready": True, "kinds": kinds})

    @app.post(SEARCH_PATH)
    async def search(request: Request, media_type: str,
                     tenant: str = Query(min_length=1, max_length=200),
                     top_k: int = Query(ge=1, le=100), min_score: float = Query(0.0, ge=0.0),
                     exclude: int | None = None, after: int = Query(0, ge=0)) -> JSONResponse:
        body = await request.body()
        if len(body) > MAX_QUERY_BYTES:
            return JSONResponse({"code": "too_large", "message": "not a query"}, 413)
        ask = ShardQuery(tenant, top_k, min_score, exclude, after)
        try:
            matches = await run_in_threadpool(ml.search_shard, media_type, body, ask)
        except MediaLayerError as e:  # a query this node cannot search: the sender's fault
            return JSONResponse({"code": e.code, "message": describe(e)}, 400)
        return JSONResponse({**shard, "matches": [match_json(m) for m in matches]})

    return app
