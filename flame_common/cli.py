"""Console-entry helpers of every service: the installed version and a --help/--version parser."""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import PackageNotFoundError, version

from flame_common.extras import MissingExtra, require

DISTRIBUTION = "flame-fl"
SETTINGS_EPILOG = (
    "Configured by FLAME_* environment variables (see flame_common/settings.py), e.g. "
    "FLAME_MONGO_URL, FLAME_RABBIT_URL, FLAME_NAMESPACE, FLAME_HOME, FLAME_LOG_LEVEL. "
    "`flame up` starts every service with them."
)


def flame_version() -> str:
    """The installed flame-fl version ("unknown" when run from a tree that is not installed)."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown"


def version_line(prog: str) -> str:
    return f"{prog} {flame_version()} ({DISTRIBUTION})"


class _Version(argparse.Action):
    """`--version`: looked up only when asked for (a flamelet's start-up stays lean)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        sys.stdout.write(version_line(parser.prog) + "\n")
        parser.exit(0)


def add_version(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--version", action=_Version)
    return parser


def service_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A service's parser: --help and --version only (the rest comes from FLAME_* env)."""
    return add_version(
        argparse.ArgumentParser(prog=prog, description=description, epilog=SETTINGS_EPILOG)
    )


def require_server(prog: str) -> None:
    """Exit 1 with the pip command when the 'server' extra is not installed."""
    try:
        require("server", prog)
    except MissingExtra as exc:
        sys.stderr.write(f"{prog}: {exc}\n")
        raise SystemExit(1) from None
