"""CSV cells safe to open in a spreadsheet: text that a spreadsheet would run as a formula
(CSV injection) is prefixed with a quote, so it shows as the text it is."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_text(header: list[str], rows: Iterable[Iterable[Any]]) -> Iterable[str]:
    """The CSV a line at a time (for a streamed download), every cell escaped."""
    for row in (header, *rows):
        buf = io.StringIO()
        csv.writer(buf).writerow([cell(v) for v in row])
        yield buf.getvalue()
