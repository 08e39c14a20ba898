"""Webhooks: register receivers of the tenant's events, read the delivery log, test-fire."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import AnyHttpUrl, BaseModel, Field

from medialayer.api.auth import AdminKey
from medialayer.api.schemas import PathId, Strict, errors, links
from medialayer.webhooks import Webhooks

router = APIRouter(prefix="/v1", tags=["webhooks"])
Event = Literal["match", "decision", "job.completed", "ping"]


class WebhookIn(Strict):
    url: AnyHttpUrl
    events: list[Event] = Field(min_length=1)

    model_config = Strict.model_config | {"json_schema_extra": {"examples": [
        {"url": "https://hooks.example.com/medialayer", "events": ["match", "decision"]}]}}


class WebhookOut(BaseModel):
    id: str
    url: str
    events: list[str]
    created_at: datetime | None


class WebhookCreated(WebhookOut):
    secret: str = Field(description="Signs every delivery (X-MediaLayer-Signature); shown "
                        "only now.")


class WebhookList(BaseModel):
    items: list[WebhookOut]


class DeliveryOut(BaseModel):
    id: str
    event: str
    state: Literal["pending", "sending", "delivered", "failed"]
    attempts: int
    last_status: int | None
    last_error: str | None
    created_at: datetime | None
    delivered_at: datetime | None
    next_attempt_at: datetime | None


class DeliveryList(BaseModel):
    items: list[DeliveryOut]


class Fired(BaseModel):
    delivery_id: str


def _hooks(request: Request) -> Webhooks:
    hooks: Webhooks = request.app.state.ml.webhooks(request.app.state.settings)
    return hooks


@router.post("/webhooks", status_code=201, response_model=WebhookCreated,
             responses={**errors(400, 403), 201: links(
                 "id", TestWebhook=("POST", "/v1/webhooks/{webhook_id}/test", "path.webhook_id"),
                 WebhookDeliveries=("GET", "/v1/webhooks/{webhook_id}/deliveries",
                                    "path.webhook_id"),
                 DeleteWebhook=("DELETE", "/v1/webhooks/{webhook_id}", "path.webhook_id"))})
async def register(body: WebhookIn, key: AdminKey, request: Request) -> dict[str, Any]:
    """Register a receiver; its address must not be private (unless allow-listed)."""
    hook, secret = await run_in_threadpool(_hooks(request).register, key.tenant, str(body.url),
                                           list(body.events))
    return {**hook, "secret": secret}


@router.get("/webhooks", response_model=WebhookList, responses=errors(403))
async def listing(key: AdminKey, request: Request) -> dict[str, Any]:
    return {"items": await run_in_threadpool(_hooks(request).listing, key.tenant)}


@router.delete("/webhooks/{webhook_id}", status_code=204, response_class=Response,
               responses=errors(403, 404))
async def remove(webhook_id: PathId, key: AdminKey, request: Request) -> Response:
    await run_in_threadpool(_hooks(request).remove, key.tenant, webhook_id)
    return Response(status_code=204)


@router.post("/webhooks/{webhook_id}/test", status_code=202, response_model=Fired,
             responses=errors(403, 404))
async def test_fire(webhook_id: PathId, key: AdminKey, request: Request) -> dict[str, Any]:
    """Queue a `ping` delivery; watch it in the delivery log."""
    return {"delivery_id": await run_in_threadpool(_hooks(request).test_fire, key.tenant,
                                                   webhook_id)}


@router.get("/webhooks/{webhook_id}/deliveries", response_model=DeliveryList,
            responses=errors(403, 404))
async def deliveries(webhook_id: PathId, key: AdminKey, request: Request,
                     limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict[str, Any]:
    """The delivery log: every event sent or to be sent, newest first."""
    return {"items": await run_in_threadpool(_hooks(request).deliveries, key.tenant,
                                             webhook_id, limit)}
