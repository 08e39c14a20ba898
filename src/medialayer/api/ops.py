"""Operations: liveness, readiness, Prometheus metrics, and the per-request id + access log.

Metrics are labelled by route template (`/v1/media/{media_id}`), never by raw path, so one label
per route however many ids clients send; unmatched paths share one label for the same reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from medialayer.api.auth import KEY_ID_SCOPE
from medialayer.api.logs import REQUEST_ID, request_id_from
from medialayer.api.schemas import ErrorOut
from medialayer.service import MediaLayer

log = logging.getLogger("medialayer.api.access")
router = APIRouter(tags=["ops"])
REQUEST_ID_SCOPE = "medialayer.request_id"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class _CatalogCollector:
    """Reads sizes at scrape time: the shared catalog and job rows, this process's indexes."""

    def __init__(self, ml: MediaLayer) -> None:
        self._ml = ml

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("medialayer_catalog_media", "Media items in the catalog.",
                                value=self._ml.count())
        items = GaugeMetricFamily("medialayer_index_items", "Items in this process's indexes.",
                                  labels=["media_type"])
        size = GaugeMetricFamily("medialayer_index_bytes", "Memory of this process's indexes.",
                                 labels=["media_type"])
        for media_type, (n, nbytes) in self._ml.index_sizes().items():
            items.add_metric([media_type], n)
            size.add_metric([media_type], nbytes)
        yield items
        yield size
        rows = GaugeMetricFamily("medialayer_job_rows", "Bulk job rows by state.",
                                 labels=["state"])
        for state, n in self._ml.job_rows_by_state().items():
            rows.add_metric([state], n)
        yield rows


class Metrics:
    """One registry per app, so several apps in one process (tests) never collide."""

    def __init__(self, ml: MediaLayer) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("medialayer_http_requests", "HTTP requests served.",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("medialayer_http_request_duration_seconds",
                                 "HTTP request latency.", ["method", "route"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.registry.register(_CatalogCollector(ml))

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)


class ObserveMiddleware:
    """Request id (echoed as X-Request-ID), metrics and one access-log line per request."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(Headers(scope=scope).get("x-request-id"))
        scope[REQUEST_ID_SCOPE] = request_id
        token = REQUEST_ID.set(request_id)
        status = 500  # what the client gets if the app dies before answering
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self._record(scope, status, time.perf_counter() - started)
            REQUEST_ID.reset(token)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        self.metrics.observe(scope["method"], route, status, seconds)
        log.info("%s %s %d %.1fms", scope["method"], scope["path"], status, seconds * 1000,
                 extra={"method": scope["method"], "path": scope["path"], "route": route,
                        "status": status, "duration_ms": round(seconds * 1000, 2),
                        "key_id": scope.get(KEY_ID_SCOPE)})


@router.head("/healthz", include_in_schema=False)  # load balancers probe with HEAD too
@router.get("/healthz", summary="Liveness: the process answers")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.head("/readyz", include_in_schema=False)
@router.get("/readyz", summary="Readiness: the catalog database answers",
            responses={503: {"model": ErrorOut}})
def readyz(request: Request) -> dict[str, str]:
    try:
        request.app.state.ml.ping()
    except Exception as e:  # any failure means "do not send traffic here"
        log.warning("readiness check failed: %s", e)
        raise HTTPException(503, "the catalog database is unavailable") from None
    return {"status": "ready"}


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry),
                    media_type=CONTENT_TYPE_LATEST)
