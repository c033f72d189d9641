"""Run a script as `python <script> <args>` would: argv, `sys.path[0]`, `__main__`, tracebacks."""

from __future__ import annotations

import os
import runpy
import sys
from types import TracebackType


def run(argv: list[str]) -> None:
    """Run `argv[0]` as `__main__` with `sys.argv` = `argv`; exceptions propagate."""
    script = argv[0]
    sys.argv = list(argv)
    sys.path[0] = os.path.dirname(os.path.abspath(script))
    runpy.run_path(script, run_name="__main__")


def report_uncaught(script: str) -> None:
    """Print the exception being handled as the interpreter would for `python <script>`.

    The traceback starts at the script's own frame: the frames of whatever ran it are left out
    (all of them when the script never ran, e.g. a `SyntaxError`, which then reads as Python's).
    """
    kind, value, tb = sys.exc_info()
    assert kind is not None and value is not None
    tb = _from_script(tb, os.path.abspath(script))
    sys.excepthook(kind, value.with_traceback(tb), tb)  # Python prints the exception's own


def _from_script(tb: TracebackType | None, path: str) -> TracebackType | None:
    while tb is not None and os.path.abspath(tb.tb_frame.f_code.co_filename) != path:
        tb = tb.tb_next
    return tb
