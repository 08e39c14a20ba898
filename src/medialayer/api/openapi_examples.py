"""Request and response examples for every operation of the OpenAPI document shown at /docs.

Examples sit on the component schemas (one per request or answer body, so every operation that
uses a body shows it) and, for multipart uploads and bodiless answers, on the operation itself.
They are kept here in one table rather than beside each model because they describe one story: a
lamp photo indexed as sku-10042, its copy found by a new listing, a cluster, a decision, a bulk
job. tests/test_api_schema.py checks that every operation has them and that each one is valid
against its schema, so they cannot drift from the contract.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

JSON = dict[str, Any]

LAMP = "3f1c2b9e-5d7a-4c1e-9b0a-6e2f8d4c1a77"
COPY = "9a2e7c41-0b3d-4f6a-8e5c-2d1b7a9f3e05"
JOB = "c7d0e5a2-8f14-4b39-a6e1-5b2c9d8f0a13"
HOOK = "e1b4c8d2-7a35-4f90-b2c6-1d9e8a7f5c34"
WHEN = "2026-11-30T09:14:07Z"
BOX_Q = [0.08, 0.05, 0.93, 0.97]
BOX_R = [0.0, 0.0, 1.0, 1.0]

MEDIA: JSON = {"id": LAMP, "media_type": "image", "name": "brass-lamp.jpg",
               "external_id": "sku-10042", "source": "https://cdn.shop.example/p/10042.jpg",
               "metadata": {"seller": "s-17", "category": "lamps"}, "created_at": WHEN}
COPY_MEDIA: JSON = {**MEDIA, "id": COPY, "name": "lamp-new.jpg", "external_id": "sku-88311",
                    "source": None, "metadata": {"seller": "s-203", "category": "lamps"}}
EXPLANATION: JSON = {"tier": "keypoints", "evidence": "41 keypoints agree on one geometry",
                     "code_distance": 9, "inliers": 41, "query_box": BOX_Q,
                     "reference_box": BOX_R, "query_coverage": 0.84,
                     "reference_coverage": 1.0}
PAIR: JSON = {"a": LAMP, "b": COPY, "similarity_score": 0.93, "confidence": "high",
              "dismissed": False, "joins_groups": False, "explanation": EXPLANATION}
CLUSTER: JSON = {"id": 12, "media_type": "image", "level": "high", "size": 2,
                 "proposed_canonical_id": LAMP, "members": [MEDIA, COPY_MEDIA], "pairs": [PAIR]}
DECISION: JSON = {"id": "d5a1f0c3-2b7e-4d86-9c41-7e3a0b5f2d18", "media_id": LAMP,
                  "other_media_id": COPY, "cluster_id": None, "member_ids": None,
                  "action": "consolidate", "note": "same lamp, re-uploaded by s-203",
                  "created_at": WHEN,
                  "actor": {"key_id": "0b7c9e2a-41d5-4f3b-8a6e-9c2d1f0e7b54",
                            "name": "catalog-review"},
                  "from_state": {"canonical_id": None}, "to_state": {"canonical_id": LAMP},
                  "created": True}
JOB_PROGRESS: JSON = {"job_id": JOB, "state": "running", "total": 25000, "done": 18210,
                      "failed": 37, "pending": 6753, "created_at": WHEN, "finished_at": None,
                      "rate_per_second": 121.4, "eta_seconds": 55.6}
WEBHOOK: JSON = {"id": HOOK, "url": "https://hooks.shop.example/medialayer",
                 "events": ["match", "decision", "job.completed"], "created_at": WHEN}

SCHEMA_EXAMPLES: dict[str, JSON] = {
    # requests
    "IndexUrl": {"url": "https://cdn.shop.example/p/10042.jpg", "name": "brass-lamp.jpg",
                 "external_id": "sku-10042", "metadata": {"seller": "s-17", "category": "lamps"}},
    "UpsertUrl": {"url": "https://cdn.shop.example/p/10042-v2.jpg",
                  "metadata": {"seller": "s-17", "category": "lamps"}},
    "SearchUrl": {"url": "https://uploads.shop.example/new/88311.jpg", "top_k": 5,
                  "min_score": 0.0, "index": True, "external_id": "sku-88311",
                  "metadata": {"seller": "s-203", "category": "lamps"}},
    "CompareRequest": {"a": {"media_id": LAMP},
                       "b": {"url": "https://uploads.shop.example/new/88311.jpg"}},
    "WebhookIn": {"url": "https://hooks.shop.example/medialayer",
                  "events": ["match", "decision", "job.completed"]},
    "Policy": {"rules": [
        {"action": "auto_reject", "media_type": "image", "min_score": 0.9, "max_score": 1.0,
         "cross_seller": True},
        {"action": "queue_review", "min_score": 0.5, "max_score": 0.9}]},
    # answers
    "MediaOut": MEDIA,
    "MediaPage": {"items": [MEDIA], "next_cursor": "c2VxOjQx"},
    "SearchOut": {"query_media_id": COPY, "action": "queue_review", "results": [
        {"media_id": LAMP, "media_type": "image", "name": "brass-lamp.jpg",
         "external_id": "sku-10042", "similarity_score": 0.93, "confidence": "high",
         "segments": None,
         "explanation": EXPLANATION, "canonical_id": None, "action": "queue_review"}]},
    "CompareOut": {"similarity_score": 0.93, "confidence": "high", "segments": [],
                   "explanation": EXPLANATION},
    "ClusterOut": CLUSTER,
    "ClustersOut": {"clusters": [CLUSTER], "next_cursor": "MTI"},
    "QueueOut": {"items": [{**PAIR, "a_media": MEDIA, "b_media": COPY_MEDIA}],
                 "next_offset": 50},
    "DecisionOut": DECISION,
    "DecisionList": {"items": [DECISION], "next_cursor": None},
    "JobAccepted": {"job_id": JOB},
    "JobOut": JOB_PROGRESS,
    "JobPage": {"items": [JOB_PROGRESS], "next_cursor": None},
    "JobErrors": {"errors": [{"row": 118, "url": "https://cdn.shop.example/p/gone.jpg",
                              "external_id": "sku-20931",
                              "error": "fetch failed: the source answered 404"}],
                  "next_after": None},
    "WebhookOut": WEBHOOK,
    "WebhookList": {"items": [WEBHOOK]},
    "WebhookCreated": {**WEBHOOK, "secret": "whsec_9Jx2cQe7LmT4vRb8NzK1pYw6"},
    "Fired": {"delivery_id": "f3c9a7e1-6b20-4d58-8e14-0a7d2c9b5f61"},
    "DeliveryList": {"items": [{"id": "f3c9a7e1-6b20-4d58-8e14-0a7d2c9b5f61",
                                "event": "match", "state": "delivered", "attempts": 2,
                                "last_status": 200, "last_error": None, "created_at": WHEN,
                                "delivered_at": "2026-11-30T09:14:12Z",
                                "next_attempt_at": None}]},
}
"""One example per body schema, by component name."""

UPLOAD = {"file": "(binary: the photo)", "name": "lamp-new.jpg", "external_id": "sku-88311",
          "metadata": '{"seller": "s-203", "category": "lamps"}'}
OPERATION_EXAMPLES: dict[tuple[str, str], tuple[str, JSON]] = {
    ("post", "/v1/media/{media_type}/upload"): ("request", UPLOAD),
    ("post", "/v1/search/{media_type}/upload"): ("request", {**UPLOAD, "top_k": 5,
                                                            "min_score": 0.0, "index": True}),
    ("post", "/v1/compare/upload"): ("request", {"a": "(binary)", "b": "(binary)",
                                                 "media_type": "image"}),
    ("post", "/v1/media/bulk"): ("request", {
        "file": "url,media_type,name,external_id,seller\n"
                "https://cdn.shop.example/p/10042.jpg,image,brass lamp,sku-10042,s-17\n"}),
    ("get", "/healthz"): ("response", {"status": "ok"}),
    ("get", "/readyz"): ("response", {"status": "ready"}),
}
"""Examples on operations whose body has no component of its own (multipart forms, bodiless
answers)."""


def install(app: FastAPI) -> None:
    """Have `app.openapi()` carry the examples, computed once like FastAPI's own document."""
    build = app.openapi

    def openapi() -> JSON:
        if app.openapi_schema is None:
            app.openapi_schema = with_examples(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def with_examples(spec: JSON) -> JSON:
    schemas = spec.get("components", {}).get("schemas", {})
    for name, example in SCHEMA_EXAMPLES.items():
        if name in schemas:
            schemas[name]["examples"] = [example]
    for (method, path), (where, example) in OPERATION_EXAMPLES.items():
        operation = spec["paths"].get(path, {}).get(method)
        if operation is not None:
            for content in _contents(operation, where):
                content["example"] = example
    return spec


def _contents(operation: JSON, where: str) -> list[JSON]:
    if where == "request":
        return list(operation.get("requestBody", {}).get("content", {}).values())
    return [content for status, answer in operation.get("responses", {}).items()
            if status.startswith("2") for content in answer.get("content", {}).values()]
