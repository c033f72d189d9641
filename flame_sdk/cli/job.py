"""`flamectl job events|watch`: a job's event log and its live progress."""

from __future__ import annotations

import sys
from contextlib import nullcontext
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.live import Live

from flame_sdk.cli.args import JobId
from flame_sdk.cli.exit_codes import for_job_state
from flame_sdk.cli.live import headline, total_rounds, view
from flame_sdk.cli.output import print_json, print_message, timestamp
from flame_sdk.cli.runtime import json_output, run
from flame_sdk.client import FlameClient, JobProgress
from flame_sdk.client.progress import RoleRounds
from schemas.events import (
    EventBase,
    JobStateChangedEvent,
    TaskMetricsEvent,
    TaskStatusChangedEvent,
    WorkerRequestedEvent,
)
from schemas.states import JobState

app = typer.Typer(help="Follow jobs: events and progress.", no_args_is_help=True)


@app.command("events")
def events(
    ctx: typer.Context,
    job_id: JobId,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new events until the job ends.")
    ] = False,
    after: Annotated[int, typer.Option("--after", min=0, help="Only events after this seq.")] = 0,
) -> None:
    """Print the events of a job (JSON lines with --output json)."""
    as_json = json_output(ctx)

    async def show(client: FlameClient) -> None:
        async for event in client.jobs.events(job_id, follow=follow, after=after):
            if as_json:
                print_json(event.model_dump(mode="json"), indent=None)
            else:
                print_message(describe_event(event))

    run(ctx, show)


@app.command("watch")
def watch(
    ctx: typer.Context,
    job_id: JobId,
    live: Annotated[
        bool | None,
        typer.Option(
            "--live/--lines",
            help="Redraw one view in place (default on a terminal) or print a line per change.",
        ),
    ] = None,
) -> None:
    """Show live progress until the job ends: state, rounds per role with ETA, task counts,
    latest metrics. Exit 0 if it completed, non-zero otherwise."""
    raise typer.Exit(int(for_job_state(watch_job(ctx, job_id, live))))


def watch_job(ctx: typer.Context, job_id: str, live: bool | None) -> JobState:
    """Follow the job until it ends (a view redrawn in place, lines, or JSON lines); its end
    state (`flamectl job watch`, `flamectl run`)."""
    as_json = json_output(ctx)
    redraw = not as_json and (live if live is not None else sys.stdout.isatty())

    async def follow(client: FlameClient) -> JobProgress:
        rounds = total_rounds((await client.jobs.get(job_id)).model_spec.hyperparameters)
        last: JobProgress | None = None
        with Live(auto_refresh=False, redirect_stdout=False) if redraw else nullcontext() as screen:
            async for progress in client.jobs.watch(job_id):
                if screen is not None:
                    screen.update(view(progress, rounds, datetime.now(UTC)), refresh=True)
                elif as_json:
                    print_json(progress_json(progress), indent=None)
                else:
                    print_message(describe_progress(progress, last, rounds))
                last = progress
        assert last is not None, "watch yields at least one snapshot"
        return last

    return run(ctx, follow).state


def describe_event(event: EventBase) -> str:
    """One line: seq, time, type, task and what happened."""
    match event:
        case JobStateChangedEvent(payload=change):
            detail = f"{change.from_state} -> {change.to_state}"
            detail += f" ({change.reason})" if change.reason else ""
        case TaskStatusChangedEvent(payload=status):
            detail = str(status.state)
            detail += f" exit={status.exit_code}" if status.exit_code is not None else ""
            detail += f" ({status.reason})" if status.reason else ""
        case WorkerRequestedEvent(payload=request):
            detail = f"compute={request.compute_id} tasks={len(request.task_ids)}"
        case _:
            detail = ""
    task = event.task_id or "-"
    when = timestamp(event.occurred_at)
    return f"{event.seq or 0:>5}  {when}  {event.type:<20}  {task}  {detail}".rstrip()


def describe_progress(progress: JobProgress, previous: JobProgress | None, rounds: int = 0) -> str:
    """A line per snapshot: a state change when there was one, then the task counts; for a
    task's metrics, its role's round and latest metrics."""
    counts = " ".join(f"{state}={n}" for state, n in progress.counts().items()) or "none"
    when = timestamp(progress.event.occurred_at) if progress.event else "now"
    if isinstance(progress.event, TaskMetricsEvent):
        role = progress.roles.get(progress.event.task_id or "", "?")
        done = progress.training.get(role, RoleRounds())
        of = f"/{rounds}" if rounds else ""
        shown = " ".join(f"{k}={v:.4g}" for k, v in headline(done.metrics))
        return f"[{when}] job {progress.job_id}: {role} round {done.round}{of} {shown}".rstrip()
    if previous is None or previous.state != progress.state:
        change = f"{previous.state} -> {progress.state}" if previous else str(progress.state)
        reason = f" ({progress.reason})" if progress.reason else ""
        return f"[{when}] job {progress.job_id}: {change}{reason}; tasks: {counts}"
    event = progress.event
    task = event.task_id if event is not None else None
    what = f"task {task} {progress.tasks[task]}; " if task in progress.tasks else ""
    return f"[{when}] job {progress.job_id}: {progress.state}; {what}tasks: {counts}"


def progress_json(progress: JobProgress) -> dict[str, Any]:
    return {
        "jobId": progress.job_id,
        "state": progress.state.value,
        "reason": progress.reason,
        "seq": progress.seq,
        "tasks": {state.value: n for state, n in progress.counts().items()},
        "event": progress.event.type if progress.event else None,
        "training": {
            role: {"round": done.round, "metrics": dict(done.metrics)}
            for role, done in sorted(progress.training.items())
        },
    }
