"""`flamectl start job`."""

from __future__ import annotations

import typer

from flame_sdk.cli.args import JobId
from flame_sdk.cli.output import print_json, print_message
from flame_sdk.cli.runtime import json_output, run

app = typer.Typer(help="Start a job.", no_args_is_help=True)


@app.command("job")
def job(ctx: typer.Context, job_id: JobId) -> None:
    """Start a job: its workers are deployed and run."""
    status = run(ctx, lambda c: c.jobs.start(job_id))
    if json_output(ctx):
        print_json(status.wire())
    else:
        print_message(f"Initiated to start job '{job_id}' successfully (state: {status.state})")
