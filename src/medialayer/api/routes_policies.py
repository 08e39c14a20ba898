"""The tenant's policy: ordered rules from matches to actions, read and replaced whole."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from pydantic import Field

from medialayer.api.auth import AdminKey
from medialayer.api.deps import ML
from medialayer.api.schemas import Storable, Strict, errors
from medialayer.policies import Rule

router = APIRouter(prefix="/v1", tags=["policies"])


class RuleIn(Strict):
    action: Literal["allow", "queue_review", "auto_reject"]
    media_type: Annotated[str | None, Storable] = None
    min_score: float = Field(default=0.0, ge=0.0, le=1.0)
    max_score: float = Field(default=1.0, ge=0.0, le=1.0)
    cross_seller: bool | None = Field(default=None, description="true: only matches between "
                                      "two sellers (metadata `seller`); false: same seller.")
    metadata: Annotated[dict[str, str] | None, Storable] = Field(
        default=None, description="Every key must have this value in the new listing's metadata.")


class Policy(Strict):
    rules: list[RuleIn] = Field(max_length=200, description="Tried in order; the first a "
                                "match meets gives its action, `allow` if none.")

    model_config = Strict.model_config | {"json_schema_extra": {"examples": [{"rules": [
        {"action": "auto_reject", "min_score": 0.9, "cross_seller": True},
        {"action": "queue_review", "min_score": 0.65, "metadata": {"category": "watches"}},
        {"action": "allow"}]}]}}


@router.get("/policies", response_model=Policy, responses=errors(403))
async def get_policy(key: AdminKey, ml: ML) -> dict[str, Any]:
    rules = await run_in_threadpool(ml.policies.rules, key.tenant)
    return {"rules": [r.as_dict() for r in rules]}


@router.put("/policies", response_model=Policy, responses=errors(400, 403))
async def put_policy(body: Policy, key: AdminKey, ml: ML) -> dict[str, Any]:
    """Replace the tenant's policy; searches use it within a few seconds (per-process cache)."""
    rules = [Rule(**r.model_dump()) for r in body.rules]
    saved = await run_in_threadpool(ml.policies.replace, key.tenant, rules)
    return {"rules": [r.as_dict() for r in saved]}
