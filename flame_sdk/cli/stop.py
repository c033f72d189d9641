"""`flamectl stop job`."""

from __future__ import annotations

import typer

from flame_sdk.cli.args import JobId
from flame_sdk.cli.output import print_json, print_message
from flame_sdk.cli.runtime import json_output, run

app = typer.Typer(help="Stop a job.", no_args_is_help=True)


@app.command("job")
def job(ctx: typer.Context, job_id: JobId) -> None:
    """Stop a running job: its tasks are asked to stop, then it is terminated."""
    status = run(ctx, lambda c: c.jobs.stop(job_id))
    if json_output(ctx):
        print_json(status.wire())
    else:
        print_message(f"Request to stop job '{job_id}' successful (state: {status.state})")
