"""The API documentation stays true: its commands run, its metric list is what /metrics has."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from typer.testing import CliRunner

from medialayer.cli import app

if TYPE_CHECKING:
    from api_fixtures import Api

pytest_plugins = ["api_fixtures"]
API_DOC = Path(__file__).parent.parent / "docs" / "api.md"


def test_every_medialayer_command_in_the_api_doc_runs(tmp_path: Path) -> None:
    """Commands a reader copies from docs/api.md with their options are accepted as written
    (the bare `medialayer serve` and `medialayer jobs worker` run until stopped)."""
    commands = re.findall(r"`(medialayer [^`]*--[^`]+)`", API_DOC.read_text())
    assert commands
    for command in commands:
        words = shlex.split(command)[1:]
        result = CliRunner().invoke(app, [*words, "--data-dir", str(tmp_path / "d")])
        assert result.exit_code == 0, f"{command}: {result.output}"


def test_the_api_doc_lists_every_metric_family(api: Api) -> None:
    text = api.client.get("/metrics").text
    families = re.findall(r"^# TYPE (medialayer_\w+) ", text, re.MULTILINE)
    assert len(families) >= 5
    doc = API_DOC.read_text()
    assert [f for f in families if f not in doc] == []


def test_the_bulk_file_field_is_described_as_the_csv(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    body = spec["paths"]["/v1/media/bulk"]["post"]["requestBody"]["content"]
    ref = body["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[1]
    description = spec["components"]["schemas"][ref]["properties"]["file"]["description"]
    assert "CSV" in description and "media file" not in description
