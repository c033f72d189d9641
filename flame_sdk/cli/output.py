"""Printing for humans (aligned tables, messages) and for scripts (JSON, CSV)."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"


class MetricsFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"


def print_json(data: Any, *, indent: int | None = 2) -> None:
    """JSON on stdout (indent=None: one line, for JSON-lines streams)."""
    sys.stdout.write(json.dumps(data, indent=indent, default=str) + "\n")
    sys.stdout.flush()


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Left-aligned columns under an upper-case header."""
    cells = [[str(h).upper() for h in headers], *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for row in cells:
        sys.stdout.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        sys.stdout.write("\n")


def print_csv(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """RFC 4180 CSV on stdout, a header row first."""
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(headers)
    writer.writerows(rows)
    sys.stdout.flush()


def print_message(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def print_error(text: str) -> None:
    """One line on stderr."""
    sys.stderr.write(" ".join(text.split()) + "\n")
    sys.stderr.flush()


def print_error_json(body: Any) -> None:
    """One JSON object on one line on stderr (errors under `-o json`)."""
    sys.stderr.write(json.dumps(body, default=str) + "\n")
    sys.stderr.flush()


def timestamp(value: datetime | None) -> str:
    if value is None or value.year <= 1:
        return "-"
    return value.strftime("%Y-%m-%d %H:%M:%S")


def _cell(value: Any) -> str:
    if isinstance(value, datetime) or value is None:
        return timestamp(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)
