"""Running flamectl's app as a console script: usage errors as JSON under `-o json`."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import typer

from flame_sdk.cli.exit_codes import ExitCode
from flame_sdk.cli.output import print_error_json

_OUTPUT_FLAGS = ("-o", "--output")


def json_requested(argv: Sequence[str]) -> bool:
    """True when the command line asks for JSON output (`-o json`, `--output=json`, `-ojson`)."""
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        if arg in _OUTPUT_FLAGS and i + 1 < len(argv) and argv[i + 1] == "json":
            return True
        if arg in ("--output=json", "-ojson", "-o=json"):
            return True
    return False


def _cli_error(exc: Exception) -> tuple[str, int] | None:
    """(message, exit code) of a command-line error of Typer's Click (vendored or not)."""
    code = getattr(exc, "exit_code", None)
    format_message = getattr(exc, "format_message", None)
    if isinstance(code, int) and callable(format_message):
        return str(format_message()), code
    return None


def run_app(app: typer.Typer, argv: Sequence[str] | None = None) -> None:
    """Run `app`; under `-o json` a bad command line is one JSON object on stderr (exit 2)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not json_requested(args):
        app(args, prog_name="flamectl")
        return
    try:
        result = app(args, prog_name="flamectl", standalone_mode=False)
    except typer.Abort:
        print_error_json({"error": "Interrupted", "code": int(ExitCode.INTERRUPTED)})
        sys.exit(int(ExitCode.INTERRUPTED))
    except Exception as exc:
        found = _cli_error(exc)
        if found is None:
            raise
        message, code = found
        body: dict[str, object] = {"error": message, "code": code}
        if code == ExitCode.USAGE:
            body["kind"] = "usage"
        print_error_json(body)
        sys.exit(code)
    sys.exit(result if isinstance(result, int) else 0)
