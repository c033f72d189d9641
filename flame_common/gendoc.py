"""The command line every generated doc shares: print it, or `--write` it to its file."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path


def run(doc: Path, render: Callable[[], str], argv: list[str] | None = None) -> None:
    """`python -m <generator> [--write]`: the doc on stdout, or written to `doc`."""
    args = sys.argv[1:] if argv is None else argv
    if args == ["--write"]:
        doc.write_text(render())
        print(f"wrote {doc}")
    else:
        sys.stdout.write(render())
