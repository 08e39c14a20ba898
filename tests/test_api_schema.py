"""Property tests over the OpenAPI spec (schemathesis): no generated request gets a 5xx, and
every error answer has the one error shape. Each route alone, and as sequences that follow the
spec's links (an added item's id to reading, deciding on and deleting it; a bulk job's id to its
progress and errors). Bounded to a few examples per route for speed."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import jsonschema_rs
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.generation.case import Case
from schemathesis.schemas import APIOperation

from medialayer.api import create_app
from medialayer.config import Settings
from medialayer.keys import create_key
from medialayer.service import MediaLayer

import synth

MAX_EXAMPLES = 12
UPLOAD = "/v1/media/{media_type}/upload"
JPEG = synth.jpeg(synth.photo(3))


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


def test_sequences_following_links(service: tuple[Any, str]) -> None:
    """Stateful: random walks over the links, each from an empty catalog. An upload
    gets a real photo (random bytes would only ever be refused, and no link would be followed),
    so its id can be read, decided on and deleted; no step may meet a 5xx."""
    app, key = service
    # the operations the links join (every operation alone is test_no_server_errors' job):
    # with fewer places to start, more walks take a link
    schema = schemathesis.openapi.from_asgi("/openapi.json", app).include(
        path_regex="^/v1/(media|jobs|decisions|webhooks)")
    # valid requests with the test's key: a walk of refused requests follows no link
    schema.config.generation.update(modes=[GenerationMode.POSITIVE],
                                    with_security_parameters=False)
    followed: set[tuple[str, int]] = set()

    class Walk(schema.as_state_machine()):  # type: ignore[misc]
        def before_call(self, case: Case) -> None:
            if case.operation.path == UPLOAD and isinstance(case.body, dict):
                case.path_parameters["media_type"] = "image"
                case.body = {**case.body, "file": JPEG}

        def get_call_kwargs(self, case: Case) -> dict[str, Any]:
            return {"headers": {"X-API-Key": key}}

        def validate_response(self, response: Any, case: Case, **kwargs: Any) -> None:
            followed.add((f"{case.method} {case.operation.path}", response.status_code))
            _check_answer(case, response)

        def teardown(self) -> None:
            """Each walk starts from an empty catalog: a replayed walk must meet the answers it
            met the first time (an upload is 201, not 409 for the external id it left behind),
            or Hypothesis sees its draws change and reports flaky data generation."""
            ml = app.state.ml
            for record in ml.list(None, limit=100_000, tenant="fuzz"):
                ml.delete(record.id, tenant="fuzz")

    Walk.run(settings=hypothesis.settings(
        max_examples=20, stateful_step_count=5, deadline=None, database=None,
        suppress_health_check=list(HealthCheck)))
    assert followed  # the walks ran; that the links lead somewhere is test_links_lead_to_the_item


def test_links_lead_to_the_item(service: tuple[Any, str]) -> None:
    """Every path-parameter link of an upload's and a bulk job's answer, followed by hand,
    reaches the item or job it names (the walks above take links at random)."""
    app, key = service
    spec = app.openapi()
    client = TestClient(app)
    headers = {"X-API-Key": key}
    started = {
        ("post", UPLOAD): client.post("/v1/media/image/upload", headers=headers,
                                      files={"file": ("p.jpg", JPEG)}),
        ("post", "/v1/media/bulk"): client.post(
            "/v1/media/bulk", headers=headers,
            files={"file": ("rows.csv", b"url,media_type\nhttp://nowhere.invalid/a.jpg,image\n")}),
    }
    reached = []
    for (method, path), answer in started.items():
        assert answer.status_code in (201, 202), answer.text
        links = spec["paths"][path][method]["responses"][str(answer.status_code)]["links"]
        for name, link in links.items():
            if "parameters" not in link:
                continue
            target = link["operationRef"].removeprefix("#/paths/").replace("~1", "/")
            target_path, target_method = target.rsplit("/", 1)
            for parameter, expression in link["parameters"].items():
                field = expression.removeprefix("$response.body#/")
                target_path = target_path.replace("{" + parameter.removeprefix("path.") + "}",
                                                  answer.json()[field])
            followed = client.request(target_method.upper(), target_path, headers=headers)
            assert followed.status_code < 300, (name, target_path, followed.text)
            reached.append(name)
    assert {"GetMedia", "DeleteMedia", "GetJob", "JobErrors"} <= set(reached)


def _check_answer(case: Case, response: Any) -> None:
    error: dict[str, Any] = {}
    if response.status_code >= 400:
        error = response.json()["error"]
        assert isinstance(error["code"], str) and isinstance(error["message"], str)
    # 502 is the source URL failing (the generated hosts resolve nowhere), not the service
    assert response.status_code < 500 or error["code"] == "fetch_failed", \
        (case.method, case.path, response.text)


def _has_inputs(operation: APIOperation) -> bool:
    """Negative cases need something to break: a parameter or a body."""
    return bool(list(operation.iter_parameters()) or operation.body)


def _check_operation(operation: APIOperation, key: str, mode: GenerationMode) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def check(case: Case) -> None:
        _check_answer(case, case.call(headers={"X-API-Key": key}))

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
