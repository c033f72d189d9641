"""`flamectl run <folder>`: register a design folder (design, schema, code, datasets), create and
start its job, and watch it to the end (like `flwr run .`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flame_sdk.cli.exit_codes import for_job_state
from flame_sdk.cli.job import watch_job
from flame_sdk.cli.output import print_error, print_json, print_message
from flame_sdk.cli.runtime import guard, json_output, run
from flame_sdk.client import FlameClient
from flame_sdk.project import Registration, job_spec, load_project, parse_settings, register
from schemas.errors import ErrorCode
from schemas.job import JobStatus
from schemas.states import JobState


def run_command(
    ctx: typer.Context,
    folder: Annotated[
        Path,
        typer.Argument(
            help="Design folder: schema.json, job.json (dataSpecPath, modelSpecPath), "
            "<role>/ code folders, <name>.json per dataset the dataSpec names.",
            show_default=False,
        ),
    ],
    design: Annotated[
        str | None,
        typer.Option("--design", help="Design id to use (default: job.json's designId)."),
    ] = None,
    settings: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="KEY=VALUE",
            help="Override a hyperparameter of the job (repeatable; VALUE parsed as JSON when it "
            "is JSON, dots nest: minEnds.aggregator=2), e.g. --set rounds=2.",
        ),
    ] = None,
    quiet: Annotated[
        bool,
        typer.Option("--quiet", "-q", help="Print only the job id (nothing about registering)."),
    ] = False,
    no_watch: Annotated[
        bool, typer.Option("--no-watch", help="Print the job id once started and return.")
    ] = False,
    live: Annotated[
        bool | None,
        typer.Option(
            "--live/--lines",
            help="Redraw one view in place (default on a terminal) or print a line per change.",
        ),
    ] = None,
) -> None:
    """Register a design folder (reusing what is registered with the same content), create and
    start its job, and watch it to the end. Exit 0 if it completed (as `job watch`)."""
    project = guard(lambda: load_project(folder))
    overrides = guard(lambda: parse_settings(settings or []))
    design_id = design or project.job.design_id

    async def launch(client: FlameClient) -> tuple[Registration, JobStatus]:
        done = await register(client, project, design_id)
        spec = job_spec(project, done, overrides)  # Invalid when an override is refused
        created = await client.jobs.create(spec)
        return done, await client.jobs.start(created.id)

    done, status = run(
        ctx,
        launch,
        hints={ErrorCode.UNAVAILABLE: "is the stack up? `flame up`, then `flame status`"},
    )
    if quiet:
        print_message(status.id)
    elif json_output(ctx):
        print_json({**done.wire(), "jobId": status.id, "state": status.state.value}, indent=None)
    else:
        _describe(done, status)
    if no_watch:
        return
    state = watch_job(ctx, status.id, live)
    if state is not JobState.COMPLETED:
        print_error(
            f"job {status.id} {state}: `flamectl get tasks {status.id}` shows each task's state, "
            f"`flamectl logs {status.id}` what its role code printed (docs/troubleshooting.md)"
        )
    raise typer.Exit(int(for_job_state(state)))


def _describe(done: Registration, status: JobStatus) -> None:
    def how(what: str) -> str:
        return "reused" if what in done.reused else "registered"

    print_message(
        f"design '{done.design_id}' {how('design')}; schema revision {done.schema_revision} "
        f"{how('schema')}; code revision {done.code_revision} {how('code')}"
    )
    for name, dataset_id in done.datasets.items():
        print_message(f"dataset {name} -> {dataset_id} ({how(name)})")
    print_message(f"job {status.id} started (state: {status.state})")
