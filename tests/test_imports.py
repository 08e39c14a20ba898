"""Light imports: the protocol and the index layer load no database, web or decoder code, and
the command line defers them to the commands that need them."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("sqlalchemy", "alembic", "fastapi", "cv2", "PIL", "uvicorn")


@pytest.mark.parametrize("module", ["medialayer", "medialayer.kinds", "medialayer.kinds.base",
                                    "medialayer.index", "medialayer.index.hamming",
                                    "medialayer.index.registry", "medialayer.cli",
                                    "medialayer.client"])
def test_importing_loads_nothing_heavy(module: str) -> None:
    code = (f"import sys, {module}; "
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                            text=True).stdout.strip()
    assert loaded == ""


def test_an_empty_catalog_starts_without_scipy() -> None:
    """Start-up builds every kind's index; SciPy (audio fingerprinting) loads only when audio is
    fingerprinted, not for a catalog that has none."""
    code = ("import sys; from medialayer.kinds import kinds; "
            "[kind.new_index(lambda keys, windows=None: {}) for kind in kinds().values()]; "
            "print('scipy' in sys.modules)")
    loaded = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                            text=True).stdout.strip()
    assert loaded == "False"
