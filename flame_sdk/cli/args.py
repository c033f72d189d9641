"""Argument and option types shared by the flamectl verbs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DesignId = Annotated[str, typer.Argument(help="Design id.", show_default=False)]
JobId = Annotated[str, typer.Argument(help="Job id.", show_default=False)]
TaskId = Annotated[str, typer.Argument(help="Task id.", show_default=False)]
DatasetId = Annotated[str, typer.Argument(help="Dataset id.", show_default=False)]
JsonFile = Annotated[Path, typer.Argument(help="JSON file.", show_default=False)]
Limit = Annotated[int, typer.Option("--limit", "-l", min=1, help="Maximum number of entries.")]
