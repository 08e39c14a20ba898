"""Bodies of the review routes: decisions, kept clusters, the queue of open pairs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from medialayer.api.schemas import MediaId, MediaOut, Storable, Strict

ID_MAX = 2**62
"""Ids and offsets beyond any catalog, refused before they reach SQL (64-bit columns)."""
Action = Literal["consolidate", "flag", "reject", "dismiss"]
Status = Literal["flagged", "rejected"]


class DecisionRequest(Strict):
    """`dismiss` ("not a duplicate") needs `other_media_id`; `consolidate` needs
    `other_media_id` (a pair) or `cluster_id` (every member), with `media_id` the canonical."""

    media_id: MediaId
    other_media_id: MediaId | None = None
    cluster_id: int | None = Field(default=None, ge=1, le=ID_MAX)
    action: Action
    note: Annotated[str | None, Field(default=None, max_length=4000), Storable] = None

    model_config = Strict.model_config | {"json_schema_extra": {"examples": [
        {"media_id": "3f1c…", "other_media_id": "9a2e…", "action": "dismiss",
         "note": "same studio background, different lamp"},
        {"media_id": "3f1c…", "cluster_id": 12, "action": "consolidate"}]}}


class ActorOut(BaseModel):
    key_id: str | None
    name: str | None


class DecisionOut(BaseModel):
    id: str
    media_id: str
    other_media_id: str | None
    cluster_id: int | None = None
    member_ids: list[str] | None = None
    action: Action
    note: str | None
    created_at: datetime | None
    actor: ActorOut = Field(description="Who decided: the API key's id and name.")
    from_state: dict[str, Any] | None = Field(description="The subject's state before.")
    to_state: dict[str, Any] | None = Field(description="The subject's state after.")
    created: bool = Field(default=True, description="False when the same decision had been "
                          "made already: nothing changed, this is the earlier one.")


class DecisionList(BaseModel):
    items: list[DecisionOut]
    next_cursor: str | None = None


class MemberOut(MediaOut):
    status: Status | None = None
    canonical_id: str | None = None


class PairOut(BaseModel):
    a: str
    b: str
    similarity_score: float
    confidence: Literal["low", "medium", "high"]
    dismissed: bool = False
    joins_groups: bool = Field(default=False, description="This pair alone holds two groups "
                               "of two or more items together.")
    explanation: dict[str, Any] | None = None


class ClusterOut(BaseModel):
    id: int = Field(description="Stable: a cluster that merges into a larger one is found "
                    "under its old id too.")
    level: Literal["medium", "high"]
    media_type: str
    size: int
    proposed_canonical_id: str | None
    members: list[MemberOut]
    pairs: list[PairOut]


class ClustersOut(BaseModel):
    clusters: list[ClusterOut]
    next_cursor: str | None = Field(default=None, description="Pass as `cursor` for the next "
                                    "page; null on the last page.")


class QueuePairOut(PairOut):
    a_media: MemberOut
    b_media: MemberOut


class QueueOut(BaseModel):
    items: list[QueuePairOut]
    next_offset: int | None
