"""Property test over the OpenAPI spec (schemathesis): no generated request gets a 5xx, and
every error answer has the one error shape. Bounded to a few examples per route for speed."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.generation.case import Case
from schemathesis.schemas import APIOperation

from medialayer.api import create_app
from medialayer.config import Settings
from medialayer.keys import create_key
from medialayer.service import MediaLayer

MAX_EXAMPLES = 12


def _unresolvable(host: str, *args: Any, **kwargs: Any) -> Any:
    """Generated URLs name random hosts: fail their lookup at once instead of asking DNS."""
    raise socket.gaierror(socket.EAI_NONAME, f"{host} not resolvable in tests")


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str]]:
    data_dir = Path(tmp_path_factory.mktemp("schema"))
    ml = MediaLayer(data_dir)
    config = Settings(data_dir=str(data_dir), default_rate_limit=0, fetch_total_timeout=2)
    _info, key = create_key(ml.store, "fuzz", ["index", "search", "admin"])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("medialayer.fetch.socket.getaddrinfo", _unresolvable)
        yield create_app(config, ml), key
    ml.close()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_errors(service: tuple[Any, str], mode: GenerationMode) -> None:
    app, key = service
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    for result in schema.get_all_operations():
        operation = result.ok()
        if mode == GenerationMode.POSITIVE or _has_inputs(operation):
            _check_operation(operation, key, mode)


def _has_inputs(operation: APIOperation) -> bool:
    """Negative cases need something to break: a parameter or a body."""
    return bool(list(operation.iter_parameters()) or operation.body)


def _check_operation(operation: APIOperation, key: str, mode: GenerationMode) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def check(case: Case) -> None:
        response = case.call(headers={"X-API-Key": key})
        if response.status_code >= 400:
            error = response.json()["error"]
            assert isinstance(error["code"], str) and isinstance(error["message"], str)
        # 502 is the source URL failing (the generated hosts resolve nowhere), not the service
        assert response.status_code < 500 or error["code"] == "fetch_failed", \
            (case.method, case.path, response.text)

    check()


def test_every_operation_shows_request_and_answer_examples_that_fit_its_schema(
        service: tuple[Any, str]) -> None:
    """Each body an operation takes or answers with has an example at /docs, and every example
    is valid against the schema it illustrates (so the examples cannot drift from the API)."""
    app, _key = service
    spec = app.openapi()
    components = spec["components"]["schemas"]
    missing = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for where, content in _bodies(operation):
                schema = content.get("schema", {})
                if not (content.get("example") or _examples(schema, components)):
                    missing.append(f"{method.upper()} {path} {where}")
    assert missing == []
    for name, schema in components.items():
        for example in schema.get("examples", []):
            try:
                jsonschema_rs.validate({**schema, "components": spec["components"]}, example)
            except jsonschema_rs.ValidationError as error:
                raise AssertionError(f"the example of {name} does not fit: {error.message}"
                                     ) from error


def _bodies(operation: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for content in operation.get("requestBody", {}).get("content", {}).values():
        yield "request", content
    for status, answer in operation.get("responses", {}).items():
        if status.startswith("2"):
            for media_type, content in answer.get("content", {}).items():
                if media_type == "application/json" or media_type.startswith("multipart"):
                    yield f"answer {status}", content


def _examples(schema: dict[str, Any], components: dict[str, Any]) -> list[Any]:
    if "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[-1]]
    return list(schema.get("examples", []))
