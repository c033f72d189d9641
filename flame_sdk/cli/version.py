"""The eager `--version` option of flamectl and flame (the installed flame-fl version)."""

from __future__ import annotations

from collections.abc import Callable

import typer

from flame_common.cli import version_line


def version_callback(prog: str) -> Callable[[bool], None]:
    """A Typer option callback printing `<prog> <version> (flame-fl)` and exiting 0."""

    def show(value: bool) -> None:
        if value:
            typer.echo(version_line(prog))
            raise typer.Exit(0)

    return show
