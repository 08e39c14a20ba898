"""Checks on the text and JSON that clients store (names, external ids, metadata).

One definition for every way in: the API turns a problem into a 422, the library (and so the CLI
and bulk jobs) into InvalidInput, before anything reaches the database. Both backends must store
the same things: PostgreSQL refuses NUL in text where SQLite kept it, and JSON has no NaN or
Infinity although Python's parser reads them.
"""

from __future__ import annotations

import math
from typing import Any


def problem(value: Any) -> str | None:
    """What makes `value` unstorable, at any depth of dicts and lists, or None if nothing."""
    if isinstance(value, str):
        return "contains a NUL byte (\\x00)" if "\x00" in value else None
    if isinstance(value, float):
        return None if math.isfinite(value) else "numbers must be finite (no NaN or Infinity)"
    if isinstance(value, dict):
        return next((p for k, v in value.items() if (p := problem(k) or problem(v))), None)
    if isinstance(value, list | tuple):
        return next((p for item in value if (p := problem(item))), None)
    return None


def checked(value: Any) -> Any:
    """`value` itself, or ValueError saying what makes it unstorable (a pydantic validator)."""
    if reason := problem(value):
        raise ValueError(reason)
    return value
