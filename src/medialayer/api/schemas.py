"""Request and response bodies of the v1 API: the contract clients code against, shown at /docs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import File, Form, Path, UploadFile
from pydantic import AfterValidator, AnyHttpUrl, BaseModel, ConfigDict, Field, Json, model_validator

from medialayer.fields import checked

Url = AnyHttpUrl
"""Only http(s) URLs pass validation; where they may point is the fetcher's business."""
Confidence = Literal["low", "medium", "high"]
NAME_MAX = 1000
EXTERNAL_ID_MAX = 512
MAX_SQL_INT = 2**63 - 1
"""The largest integer SQLite and PostgreSQL (bigint) hold: larger ones in a query overflow."""
Storable = AfterValidator(checked)
"""No NUL bytes in text, no NaN or Infinity in numbers, at any depth (medialayer.fields)."""
Name = Annotated[str | None, Field(max_length=NAME_MAX), Storable]
ExternalId = Annotated[str | None, Field(min_length=1, max_length=EXTERNAL_ID_MAX), Storable]
MediaId = Annotated[str, Field(max_length=64), Storable]
PathId = Annotated[str, Path(max_length=64), Storable]
"""A media or job id in a route's path."""
Metadata = Annotated[dict[str, Any] | None, Storable]

# The same fields as multipart form fields, for the upload routes.
FormFile = Annotated[UploadFile, File(description="The media file (its type is sniffed from "
                                                  "its bytes, never its name).")]
FormCsv = Annotated[UploadFile, File(description="The CSV listing, UTF-8: a header line naming "
                                                 "the columns url, media_type, name, "
                                                 "external_id (others become metadata), then "
                                                 "one row per item.")]
FormName = Annotated[str | None, Form(max_length=NAME_MAX), Storable]
FormExternalId = Annotated[str | None, Form(min_length=1, max_length=EXTERNAL_ID_MAX), Storable]
FormMetadata = Annotated[Json[dict[str, Any]] | None, Storable,
                         Form(description="A JSON object, sent as a string.")]
FormTopK = Annotated[int, Form(ge=1, le=100)]
FormMinScore = Annotated[float, Form(ge=0.0, le=1.0)]


class Strict(BaseModel):
    """Unknown fields are a client bug worth a 422, not something to ignore silently."""

    model_config = ConfigDict(extra="forbid")


class IndexUrl(Strict):
    url: Url
    name: Name = None
    external_id: ExternalId = None
    metadata: Metadata = None


class UpsertUrl(Strict):
    url: Url
    name: Name = None
    metadata: dict[str, Any] | None = None


class SearchUrl(Strict):
    url: Url
    top_k: int = Field(default=5, ge=1, le=100, description="How many matches at most.")
    min_score: float = Field(default=0.0, ge=0.0, le=1.0, description="Drop weaker matches.")
    index: bool = Field(default=False, description="Add the query to the catalog afterwards.")
    name: Name = None
    external_id: ExternalId = None
    metadata: Metadata = None


class Operand(Strict):
    """One side of a comparison: a URL to fetch or an item already in the catalog."""

    url: Url | None = None
    media_id: MediaId | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Operand:
        if (self.url is None) == (self.media_id is None):
            raise ValueError("give exactly one of url or media_id")
        return self


class CompareRequest(Strict):
    a: Operand
    b: Operand
    media_type: str | None = Field(default=None, max_length=32, description=(
        "The media kind; default: that of a media_id operand, else sniffed from a's content."))


class MediaOut(BaseModel):
    id: str
    media_type: str
    name: str | None
    external_id: str | None
    source: str | None
    metadata: dict[str, Any]
    created_at: datetime | None


class MediaPage(BaseModel):
    items: list[MediaOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; "
                                                "null on the last page.")


class SegmentOut(BaseModel):
    query_start: float
    query_end: float
    reference_start: float
    reference_end: float
    score: float


class ExplanationOut(BaseModel):
    """Why two media match (docs/api.md, "Explanations"), in the kind's own terms: the image
    kind's fields are below (boxes are (x0, y0, x1, y1) as shares of each image's width and
    height); other kinds send their own (a time offset, ...)."""

    model_config = ConfigDict(extra="allow")

    tier: str | None = Field(None, description="image: global_code, keypoints, or "
                             "photo_region (a listing page's photo was compared, not its page)")
    evidence: str | None = Field(None, description="image: global_code or keypoints, what "
                                 "gave the score")
    code_distance: int | None = Field(None, description="image: Hamming distance of the "
                                      "global codes (of 64 bits), null if beyond 8")
    inliers: int | None = Field(None, description="image: keypoint pairs that one transform "
                                "maps onto each other")
    query_box: tuple[float, float, float, float] | None = None
    reference_box: tuple[float, float, float, float] | None = None
    query_coverage: float | None = Field(None, description="image: share of the query's area "
                                         "the match covers")
    reference_coverage: float | None = None


class HitOut(BaseModel):
    media_id: str
    media_type: str = Field(description="The item's kind: a video when its soundtrack "
                            "matched an audio search.")
    name: str | None
    external_id: str | None
    similarity_score: float
    confidence: Confidence
    segments: list[SegmentOut] | None = None
    explanation: ExplanationOut | None = None
    canonical_id: str | None = Field(default=None, description="The item a reviewer "
                                     "consolidated this one into (itself for the canonical).")
    action: Literal["allow", "queue_review", "auto_reject"] = Field(
        default="allow", description="What the tenant's policy says this match means.")


class SearchOut(BaseModel):
    query_media_id: str | None = Field(description="The query's id when it was indexed "
                                                   "(index=true), else null.")
    action: Literal["allow", "queue_review", "auto_reject"] = Field(
        default="allow", description="The most severe of the results' policy actions; an "
        "ingested query (index=true) that the policy auto-rejects is marked rejected.")
    results: list[HitOut]
    partial: bool = Field(default=False, description="True when an index node (a shard of "
                          "the catalog) did not answer: its items were not searched, so a "
                          "match may be missing. Search again, or treat as unknown.")
    missing_shards: list[int] = Field(default_factory=list, description="The shards that "
                                      "did not answer (empty unless `partial`).")


class CompareOut(BaseModel):
    similarity_score: float
    confidence: Confidence
    segments: list[SegmentOut]
    explanation: ExplanationOut | None = None


class ErrorBody(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. `not_found`.")
    message: str = Field(description="What went wrong, for a human.")


class ErrorOut(BaseModel):
    """The one shape of every error response."""

    error: ErrorBody


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for a route's error statuses, all in the one error shape."""
    return {status: {"model": ErrorOut} for status in (401, 422, 429, *statuses)}


def links(field: str, **targets: tuple[str, str, str]) -> dict[str, Any]:
    """OpenAPI links from an answer's `field` (an id it created) to the operations that take
    it, so clients and stateful API tests can follow them: each target is named, with its
    method, path and the parameter (`path.x`, `query.x`, or `body.x` for a JSON body field)
    the id goes into."""
    found: dict[str, Any] = {}
    for name, (method, path, parameter) in targets.items():
        ref = "#/paths/" + path.replace("~", "~0").replace("/", "~1") + "/" + method.lower()
        value = f"$response.body#/{field}"
        where, _, key = parameter.partition(".")
        carried = {"requestBody": {key: value}} if where == "body" else {
            "parameters": {parameter: value}}
        found[name] = {"operationRef": ref, **carried}
    return {"links": found}


MEDIA_LINKS = links("id", GetMedia=("GET", "/v1/media/{media_id}", "path.media_id"),
                    DeleteMedia=("DELETE", "/v1/media/{media_id}", "path.media_id"),
                    DecideOnMedia=("POST", "/v1/decisions", "body.media_id"),
                    MediaDecisions=("GET", "/v1/decisions", "query.media_id"))
"""Where an added item's id leads."""


class JobAccepted(BaseModel):
    job_id: str


class JobOut(BaseModel):
    job_id: str
    state: Literal["queued", "running", "done"]
    total: int
    done: int
    failed: int
    pending: int
    created_at: datetime | None
    finished_at: datetime | None
    rate_per_second: float | None = Field(description="Rows finished per second so far.")
    eta_seconds: float | None


class JobPage(BaseModel):
    items: list[JobOut]
    next_cursor: str | None


class JobRowError(BaseModel):
    row: int
    url: str | None
    external_id: str | None
    error: str | None


class JobErrors(BaseModel):
    errors: list[JobRowError]
    next_after: int | None
