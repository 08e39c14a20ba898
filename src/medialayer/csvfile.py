"""Every CSV the CLI or the service writes goes through here, so none can carry a formula.

A spreadsheet runs a cell that starts with `=`, `+`, `-` or `@` (and, in some, one that starts
with a tab or a carriage return) as a formula: a file name or URL chosen by an attacker would
run on the reviewer's machine. OWASP's remedy: such a text cell is written with a leading `'`,
which spreadsheets show as text and drop from the displayed value.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> object:
    """The value as a spreadsheet will show it, never run it; numbers are left as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def write_csv(out: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """Write a header and rows, every text cell made safe."""
    with open(out, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([safe_cell(h) for h in header])
        writer.writerows([safe_cell(v) for v in row] for row in rows)


def csv_lines(header: Sequence[str], rows: Iterable[Sequence[object]]) -> Iterator[str]:
    """The same CSV a line at a time, for a streamed download that never holds every row."""
    for row in (header, *rows):
        buf = io.StringIO()
        csv.writer(buf).writerow([safe_cell(v) for v in row])
        yield buf.getvalue()
