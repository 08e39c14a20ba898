"""The HTTP API, the bulk job runner and the command line go through the service: none of them
reaches into the catalog store (`ml.store`), so the store can change behind the service."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import medialayer

PACKAGE = Path(medialayer.__file__).parent
CALLERS = sorted([*(PACKAGE / "api").glob("*.py"), PACKAGE / "jobs.py", PACKAGE / "cli.py",
                  *(PACKAGE / "web").glob("*.py")])


def store_uses(path: Path) -> list[int]:
    """Lines where `path` reads an attribute named `store` of anything."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and node.attr == "store"]


def test_the_check_finds_a_store_access(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("def f(ml):\n    return ml.store.count()\n", encoding="utf-8")
    assert store_uses(sample) == [2]


@pytest.mark.parametrize("path", CALLERS, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_callers_never_touch_the_catalog_store(path: Path) -> None:
    assert store_uses(path) == []
