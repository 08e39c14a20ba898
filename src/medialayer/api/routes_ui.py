"""The review UI at /ui: sign in with a `review` key, the queue, pair and cluster views, actions.

Server-rendered (Jinja2, autoescaped: every name a seller chose is escaped), htmx and a small
script from the package's static files, no CDN. Every page reads the signed-in key's tenant
only. Forms carry the session's CSRF token and are refused without it; the session cookie is
HttpOnly, SameSite=Strict, and Secure when the request came over TLS or settings say so.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException

from medialayer.api.routes_review import queue_filter
from medialayer.api.schemas_review import ID_MAX
from medialayer.catalog.decisions import Actor
from medialayer.errors import InvalidInput, MediaLayerError, NotFound
from medialayer.kinds import kinds
from medialayer.review import Pair
from medialayer.service import MediaLayer
from medialayer.web import sessions
from medialayer.web.sessions import Signed

WEB = Path(__file__).resolve().parent.parent / "web"
SESSION_COOKIE = "ml_session"
LOGIN_COOKIE = "ml_login_csrf"
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data: http: https:; connect-src 'self'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}
"""Only the package's own scripts and styles run; images may come from the media's URLs."""

router = APIRouter(prefix="/ui", include_in_schema=False)
templates = Jinja2Templates(directory=str(WEB / "templates"))
static = StaticFiles(directory=str(WEB / "static"))


def _ml(request: Request) -> MediaLayer:
    ml: MediaLayer = request.app.state.ml
    return ml


async def signed_in(request: Request) -> Signed:
    """The session of the request's cookie, or a redirect to the sign-in page."""
    found = sessions.signed(await run_in_threadpool(_ml(request).ui_session,
                                                    request.cookies.get(SESSION_COOKIE)))
    if found is None:
        raise HTTPException(303, "sign in first", headers={"Location": "/ui/login"})
    return found


Session = Annotated[Signed, Depends(signed_in)]


def page(request: Request, name: str, signed: Signed | None, status: int = 200,
         **context: Any) -> HTMLResponse:
    response = templates.TemplateResponse(request, name, {"signed": signed, **context},
                                          status_code=status)
    response.headers.update(HEADERS)
    return response


def _secure(request: Request) -> bool:
    return request.app.state.settings.ui_secure_cookies or request.url.scheme == "https"


@router.get("", include_in_schema=False)
async def home() -> RedirectResponse:
    return RedirectResponse("/ui/queue", status_code=303)


@router.get("/login")
async def login_form(request: Request, error: str | None = None) -> HTMLResponse:
    token = secrets.token_urlsafe(32)
    response = page(request, "login.html", None, login_csrf=token, error=error)
    response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict",
                        secure=_secure(request), path="/ui/login", max_age=3600)
    return response


@router.post("/login")
async def login(request: Request, api_key: Annotated[str, Form(max_length=200)],
                csrf: Annotated[str, Form(max_length=100)]) -> Response:
    if not sessions.same_token(request.cookies.get(LOGIN_COOKIE, ""), csrf):
        return page(request, "login.html", None, status=403, login_csrf="",
                    error="The sign-in form expired; reload the page and try again.")
    ml = _ml(request)
    key = await run_in_threadpool(ml.authenticate, api_key)
    if key is None or not key.allows(sessions.SCOPE):
        return RedirectResponse("/ui/login?" + urlencode(
            {"error": "That key is unknown, revoked or lacks the review scope."}),
            status_code=303)
    hours = request.app.state.settings.ui_session_hours
    token, _ = await run_in_threadpool(ml.start_ui_session, key, hours)
    response = RedirectResponse("/ui/queue", status_code=303)
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="strict",
                        secure=_secure(request), path="/ui", max_age=int(hours * 3600))
    response.delete_cookie(LOGIN_COOKIE, path="/ui/login")
    return response


@router.post("/logout")
async def logout(request: Request, signed: Session,
                 csrf: Annotated[str, Form(max_length=100)]) -> Response:
    _check_csrf(signed, csrf)
    await run_in_threadpool(_ml(request).end_ui_session, request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/ui")
    return response


@router.get("/queue")
async def queue(request: Request, signed: Session, media_type: str | None = None,
                min_confidence: str = "medium",
                seller: Annotated[str | None, Query(max_length=200)] = None,
                category: Annotated[str | None, Query(max_length=200)] = None,
                cross_seller: bool = False, sort: str = "newest",
                offset: Annotated[int, Query(ge=0, le=ID_MAX)] = 0) -> HTMLResponse:
    try:
        if min_confidence not in ("medium", "high"):
            raise InvalidInput("min_confidence must be medium or high")
        f = queue_filter(media_type, min_confidence, seller, category, cross_seller, sort)
    except MediaLayerError as e:
        return _error(request, signed, e)
    pairs = await run_in_threadpool(_ml(request).review.queue, signed.tenant, f, offset, 51)
    more = dict(request.query_params) | {"offset": str(offset + 50)}
    return page(request, "queue.html", signed, page="queue", pairs=pairs[:50], f=f,
                media_types=list(kinds()), next_offset=offset + 50 if len(pairs) > 50 else None,
                more_href="/ui/queue?" + urlencode(more))


@router.get("/pair")
async def pair(request: Request, signed: Session, a: Annotated[str, Query(max_length=64)],
               b: Annotated[str, Query(max_length=64)]) -> HTMLResponse:
    review = _ml(request).review
    try:
        found: Pair = await run_in_threadpool(review.pair, signed.tenant, a, b)
        cluster_id = await run_in_threadpool(review.cluster_of, signed.tenant, a)
    except MediaLayerError as e:
        return _error(request, signed, e)
    here = f"/ui/pair?a={quote(a)}&b={quote(b)}"
    after = f"/ui/clusters/{cluster_id}" if cluster_id else "/ui/queue"
    return page(request, "pair.html", signed, page="queue", pair=found, here=here,
                cluster_id=cluster_id, after_dismiss=after)


@router.get("/clusters")
async def clusters(request: Request, signed: Session, media_type: str = "",
                   min_confidence: str = "medium",
                   cursor: Annotated[str | None, Query(max_length=32)] = None) -> HTMLResponse:
    try:
        if media_type and media_type not in kinds():
            raise InvalidInput(f"unknown media type {media_type!r}")
        before = int(cursor) if cursor and cursor.isdigit() and int(cursor) <= ID_MAX else None
        found = await run_in_threadpool(_ml(request).review.clusters, signed.tenant,
                                        media_type or None, min_confidence, before, 51)
    except MediaLayerError as e:
        return _error(request, signed, e)
    shown = found[:50]
    return page(request, "clusters.html", signed, page="clusters", clusters=shown,
                media_type=media_type, level=min_confidence, media_types=list(kinds()),
                next_cursor=str(shown[-1].id) if len(found) > 50 else None)


@router.get("/clusters/{cluster_id}")
async def cluster(request: Request, signed: Session,
                  cluster_id: Annotated[int, PathParam(ge=1, le=ID_MAX)]) -> Response:
    try:
        found = await run_in_threadpool(_ml(request).review.cluster, signed.tenant, cluster_id)
    except MediaLayerError as e:
        return _error(request, signed, e)
    if found.id != cluster_id:  # merged into another: show it under its live id
        return RedirectResponse(f"/ui/clusters/{found.id}", status_code=303)
    return page(request, "cluster.html", signed, page="clusters", cluster=found,
                here=f"/ui/clusters/{cluster_id}")


@router.get("/audit")
async def audit(request: Request, signed: Session,
                cursor: Annotated[str | None, Query(max_length=200)] = None) -> HTMLResponse:
    ml = _ml(request)
    try:
        items, next_cursor = await run_in_threadpool(ml.review.decisions, signed.tenant, None,
                                                     cursor, 50)
    except MediaLayerError as e:
        return _error(request, signed, e)
    ids = {i for d in items for i in (d["media_id"], d["other_media_id"]) if i}
    names = await run_in_threadpool(_names, ml, signed.tenant, ids)
    return page(request, "audit.html", signed, page="audit", items=items, names=names,
                next_cursor=next_cursor)


@router.post("/decide")
async def decide(request: Request, signed: Session,
                 csrf: Annotated[str, Form(max_length=100)],
                 action: Annotated[str, Form(max_length=16)],
                 media_id: Annotated[str, Form(max_length=64)],
                 other_media_id: Annotated[str | None, Form(max_length=64)] = None,
                 cluster_id: Annotated[int | None, Form(ge=1, le=ID_MAX)] = None,
                 note: Annotated[str | None, Form(max_length=4000)] = None,
                 next: Annotated[str, Form(max_length=500)] = "/ui/queue") -> Response:
    """Apply a decision as the signed-in key, then go back where the reviewer was."""
    _check_csrf(signed, csrf)
    try:
        await run_in_threadpool(
            _ml(request).decide, media_id, action, other_media_id=other_media_id or None,
            cluster_id=cluster_id, note=note or None, tenant=signed.tenant,
            actor=Actor(signed.key.id, signed.key.name))
    except MediaLayerError as e:
        return _error(request, signed, e)
    return RedirectResponse(_local(next), status_code=303)


def _check_csrf(signed: Signed, given: str) -> None:
    if not sessions.same_token(signed.csrf, given):
        raise HTTPException(403, "missing or wrong CSRF token; reload the page")


def _local(target: str) -> str:
    """Only a page of this UI: never an open redirect to another site."""
    if target.startswith("/ui/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/ui/queue"


def _names(ml: MediaLayer, tenant: str, ids: set[str]) -> dict[str, str]:
    names = {}
    for media_id in ids:
        try:
            record = ml.get(media_id, tenant)
        except NotFound:
            continue  # deleted since the decision
        names[media_id] = record.name or media_id
    return names


def _error(request: Request, signed: Signed, error: MediaLayerError) -> HTMLResponse:
    status = 404 if isinstance(error, NotFound) else 400
    title = "Not found" if status == 404 else "Cannot do that"
    return page(request, "error.html", signed, status=status, title=title, message=str(error))
