"""The FastAPI app factory, the error handlers and the request-body cap.

Every error leaves as `{"error": {"code", "message"}}` with the status the design fixes, whichever
layer raised it: service errors by type, HTTP errors (auth, routing, body cap) by status,
validation as 422, and anything unexpected as a logged 500 that leaks no internals.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from medialayer import __version__
from medialayer.api import (
    docs,
    openapi_examples,
    ops,
    routes_jobs,
    routes_media,
    routes_policies,
    routes_review,
    routes_search,
    routes_ui,
    routes_webhooks,
)
from medialayer.api.auth import KeyCache, RateLimiter
from medialayer.api.logs import configure_logging
from medialayer.api.shared import Redis
from medialayer.config import Settings
from medialayer.errors import (
    Conflict,
    FetchFailed,
    InvalidInput,
    MediaLayerError,
    MediaTooLarge,
    NotFound,
    UnsupportedMedia,
    describe,
)
from medialayer.jobs import JobRunner
from medialayer.kinds.image import limit_heavy_decodes
from medialayer.service import MediaLayer

log = logging.getLogger("medialayer.api")

STATUS: dict[type[MediaLayerError], int] = {
    InvalidInput: 400, NotFound: 404, Conflict: 409, MediaTooLarge: 413, UnsupportedMedia: 415,
    FetchFailed: 502,
}
HTTP_CODES = {413: MediaTooLarge.code, 429: "rate_limited"}
"""Codes for HTTP errors where the status phrase is not the code clients already know."""
JSON_MAX_BYTES = 1024 * 1024
"""Cap on non-multipart request bodies: JSON requests carry URLs and ids, never media."""
RETRY_AFTER_SECONDS = 2
"""What a 503 or 507 from the catalog database asks clients to wait before retrying."""
MULTIPART_SLACK = 1024 * 1024
"""Room for form fields and part headers beside the files of a multipart request."""


def create_app(settings: Settings | None = None, ml: MediaLayer | None = None) -> FastAPI:
    """The HTTP service over `ml` (or one opened from `settings`, closed at shutdown)."""
    settings = settings or Settings()
    owned = ml is None
    service = ml or MediaLayer(settings.data_dir, database_url=settings.database_url)
    configure_logging(settings)
    limit_heavy_decodes(settings.heavy_decodes)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.cpu_limiter = anyio.CapacityLimiter(max(1, settings.cpu_threads))
        await asyncio.to_thread(service.warm_up, False)  # code tiers before the first request
        rest = asyncio.create_task(asyncio.to_thread(service.warm_up))  # the others behind
        async with _job_runner(service, settings), _webhook_dispatcher(service, settings):
            yield
        if shared is not None:
            await shared.close()
        if owned:
            service.close()
        await asyncio.gather(rest, return_exceptions=True)  # a load stopped by close() fails

    app = FastAPI(title="MediaLayer", version=__version__, lifespan=lifespan, docs_url=None,
                  redoc_url=None,
                  description="Find copied and near-duplicate media in a marketplace catalog. "
                              "Every /v1 route needs an `X-API-Key` header.")
    app.state.settings = settings
    app.state.ml = service
    shared = Redis(settings.redis_url, settings.redis_prefix) if settings.redis_url else None
    app.state.shared = shared
    app.state.rate_limiter = RateLimiter()
    app.state.key_cache = KeyCache(settings.key_cache_seconds, shared=shared)
    app.state.metrics = ops.Metrics(service)
    for module in (ops, routes_media, routes_search, routes_review, routes_jobs, routes_policies,
                   routes_webhooks, routes_ui):
        app.include_router(module.router)
    app.mount("/ui/static", routes_ui.static, name="ui-static")
    docs.install(app)
    openapi_examples.install(app)
    app.add_exception_handler(MediaLayerError, _service_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    for database_error in (OperationalError, InterfaceError, PoolTimeout):
        app.add_exception_handler(database_error, _database_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected_error)
    app.add_middleware(BodyLimitMiddleware, files_max=2 * settings.upload_max_bytes)
    app.add_middleware(ops.ObserveMiddleware, metrics=app.state.metrics)
    return app


@asynccontextmanager
async def _job_runner(ml: MediaLayer, settings: Settings) -> AsyncIterator[None]:
    """Work bulk jobs in the background of this process, unless settings say another does."""
    if not settings.run_jobs:
        yield
        return
    runner = JobRunner(ml, settings)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run_forever(stop))
    try:
        yield
    finally:
        stop.set()
        await task
        runner.close()


@asynccontextmanager
async def _webhook_dispatcher(ml: MediaLayer, settings: Settings) -> AsyncIterator[None]:
    """Send webhook deliveries in the background of this process, unless settings say not."""
    if not settings.run_webhooks:
        yield
        return
    stop = asyncio.Event()
    task = asyncio.create_task(ml.webhook_dispatcher(settings).run_forever(stop))
    try:
        yield
    finally:
        stop.set()
        await task


def error_response(status: int, code: str, message: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status,
                        headers=headers)


async def _service_error(_request: Request, exc: MediaLayerError) -> JSONResponse:
    status = next((s for kind, s in STATUS.items() if isinstance(exc, kind)), 400)
    return error_response(status, exc.code, describe(exc))


async def _http_error(_request: Request, exc: HTTPException) -> JSONResponse:
    code = HTTP_CODES.get(exc.status_code) or \
        HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_")
    return error_response(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))


async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 in the common shape; the offending input is not echoed (it may be a whole file)."""
    problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
    return error_response(422, "validation_error", "; ".join(problems) or "invalid request")


async def _database_error(request: Request, exc: SQLAlchemyError) -> JSONResponse:
    """The catalog database failed under the request: 507 when it is full (nothing was
    written: the transaction rolled back), else 503 (it went away, or every connection is
    busy). The client may retry; the engine reconnects on its own, no restart needed."""
    log.warning("catalog database error on %s %s: %s", request.method, request.url.path,
                exc.__class__.__name__, extra={"request_id": request.scope.get(
                    ops.REQUEST_ID_SCOPE)})
    if _disk_full(exc):
        return error_response(507, "insufficient_storage",
                              "the catalog database is full; nothing was written",
                              headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
    return error_response(503, "service_unavailable",
                          "the catalog database is unavailable; retry shortly",
                          headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


def _disk_full(exc: SQLAlchemyError) -> bool:
    """SQLite's SQLITE_FULL, PostgreSQL's disk_full (SQLSTATE 53100)."""
    orig = getattr(exc, "orig", None)  # a pool timeout has no driver error
    return (getattr(orig, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
            or getattr(orig, "sqlstate", None) == "53100")


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    request_id = request.scope.get(ops.REQUEST_ID_SCOPE)
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc,
              extra={"request_id": request_id})
    return error_response(500, "internal_error", "internal error; quote the X-Request-ID",
                          headers={"X-Request-ID": request_id} if request_id else None)


class BodyLimitMiddleware:
    """Refuse request bodies over the cap as they stream in, before anything is parsed.

    A declared Content-Length over the cap is refused unread; a chunked body is cut off at the
    cap. Multipart requests may carry two files (compare), JSON ones only URLs and ids.
    """

    def __init__(self, app: ASGIApp, files_max: int) -> None:
        self.app = app
        self.files_max = files_max

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        multipart = headers.get("content-type", "").startswith("multipart/")
        limit = self.files_max + MULTIPART_SLACK if multipart else JSON_MAX_BYTES
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await error_response(413, MediaTooLarge.code, _too_large(limit))(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:  # FastAPI re-raises HTTPException from body parsing as is
                raise HTTPException(413, _too_large(limit))
            return message

        await self.app(scope, limited_receive, send)


def _too_large(limit: int) -> str:
    return f"request body is over the cap of {limit} bytes"
