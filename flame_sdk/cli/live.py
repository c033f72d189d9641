"""`flamectl job watch` on a terminal: the job's state, each role's rounds with a bar and an ETA,
task counts and the latest metrics, redrawn in place (rich)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from flame_sdk.client import JobProgress
from flame_sdk.client.progress import RoleRounds

HEADLINE = 4  # metrics shown per role


def total_rounds(hyperparameters: Mapping[str, Any]) -> int:
    """The job's `rounds` hyperparameter (0 when absent or not a positive integer)."""
    rounds = hyperparameters.get("rounds")
    return rounds if isinstance(rounds, int) and not isinstance(rounds, bool) and rounds > 0 else 0


def headline(metrics: Mapping[str, float]) -> list[tuple[str, float]]:
    """The metrics worth a glance: the role code's own (names without a dot: `test_accuracy`),
    not the SDK's (`train.runtime`, `send.bytes`)."""
    return [(k, v) for k, v in sorted(metrics.items()) if "." not in k][:HEADLINE]


def view(progress: JobProgress, rounds: int, now: datetime) -> RenderableType:
    """One frame of the live view."""
    title = Text.assemble(("job ", "bold"), (progress.job_id, "bold cyan"), "  ")
    title.append(str(progress.state), style=_state_style(str(progress.state)))
    if progress.reason:
        title.append(f" ({progress.reason})")
    if progress.started_at is not None:
        title.append(f"  elapsed {_clock(now - progress.started_at)}", style="dim")
    counts = "  ".join(f"{state}={n}" for state, n in progress.counts().items()) or "none"
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("role", "progress", "round", "ETA", "latest metrics"):
        table.add_column(column)
    for role in sorted(set(progress.roles.values())):
        done = progress.training.get(role, RoleRounds())
        eta = progress.eta(role, rounds) if rounds else None
        table.add_row(
            role,
            ProgressBar(total=rounds or None, completed=done.round, width=20),
            f"{done.round}/{rounds}" if rounds else str(done.round or "-"),
            _clock(eta) if eta is not None else "-",
            "  ".join(f"{k}={v:.4g}" for k, v in headline(done.metrics)) or "-",
        )
    return Group(title, Text(f"tasks: {counts}"), table)


def _clock(span: timedelta) -> str:
    seconds = max(0, int(span.total_seconds()))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _state_style(state: str) -> str:
    return {"completed": "green", "failed": "red", "terminated": "yellow"}.get(state, "blue")
