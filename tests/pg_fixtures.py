"""PostgreSQL for tests: the server at MEDIALAYER_TEST_POSTGRES_URL (default: the local one,
database `test`), a fresh schema per test.

Without a reachable server the tests that need it skip with the reason, unless
MEDIALAYER_REQUIRE_POSTGRES=1 (CI sets it), where that is a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

URL = os.environ.get("MEDIALAYER_TEST_POSTGRES_URL",
                     "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _reachable() -> str | None:
    try:
        with sa.create_engine(URL).connect() as conn:
            conn.execute(sa.text("select 1"))
        return None
    except Exception as e:  # any connection failure means: no server here
        return f"PostgreSQL not reachable at {URL}: {e.__class__.__name__}"


_WHY_NOT = _reachable()
if _WHY_NOT and os.environ.get("MEDIALAYER_REQUIRE_POSTGRES") == "1":
    raise RuntimeError(_WHY_NOT)
needs_postgres = pytest.mark.skipif(_WHY_NOT is not None, reason=_WHY_NOT or "")


def schema_url(url: str, schema: str) -> str:
    """`url` with its connections' search path set to `schema`."""
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}"


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh schema on the test server, dropped afterwards."""
    schema = f"ml_test_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(URL)
    with engine.begin() as conn:
        conn.execute(sa.text(f'create schema "{schema}"'))
    yield schema
    with engine.begin() as conn:
        conn.execute(sa.text(f'drop schema "{schema}" cascade'))
    engine.dispose()


@pytest.fixture
def pg_url(pg_schema: str) -> str:
    """A database URL whose connections live in a fresh schema."""
    return schema_url(URL, pg_schema)
