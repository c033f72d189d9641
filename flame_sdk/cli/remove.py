"""`flamectl remove design|schema|code|dataset|job|token`."""

from __future__ import annotations

from typing import Annotated

import typer

from flame_sdk.cli.args import DatasetId, DesignId, JobId
from flame_sdk.cli.output import print_json, print_message
from flame_sdk.cli.runtime import json_output, run
from schemas.errors import ErrorCode

app = typer.Typer(help="Remove a resource.", no_args_is_help=True)


def _done(ctx: typer.Context, kind: str, resource_id: str) -> None:
    if json_output(ctx):
        print_json({"removed": kind, "id": resource_id})
    else:
        print_message(f"{kind.capitalize()} '{resource_id}' removed successfully")


@app.command("design")
def design(
    ctx: typer.Context,
    design_id: DesignId,
    force: Annotated[
        bool, typer.Option("--force", "-f", help="Remove even if jobs use it.")
    ] = False,
) -> None:
    """Remove a design (with its schema and code)."""
    hints = {ErrorCode.CONFLICT: "jobs use this design; remove them or use --force"}
    run(ctx, lambda c: c.designs.delete(design_id, force=force), hints=hints)
    _done(ctx, "design", design_id)


@app.command("schema")
def schema(ctx: typer.Context, design_id: DesignId) -> None:
    """Remove the schema of a design."""
    run(ctx, lambda c: c.schemas.delete(design_id))
    _done(ctx, "schema of design", design_id)


@app.command("code")
def code(ctx: typer.Context, design_id: DesignId) -> None:
    """Remove the code of a design."""
    run(ctx, lambda c: c.code.delete(design_id))
    _done(ctx, "code of design", design_id)


@app.command("dataset")
def dataset(ctx: typer.Context, dataset_id: DatasetId) -> None:
    """Remove a dataset."""
    run(ctx, lambda c: c.datasets.delete(dataset_id))
    _done(ctx, "dataset", dataset_id)


@app.command("job")
def job(ctx: typer.Context, job_id: JobId) -> None:
    """Remove a job that is not active (with its tasks)."""
    hints = {ErrorCode.CONFLICT: f"stop the job first: flamectl stop job {job_id}"}
    run(ctx, lambda c: c.jobs.delete(job_id), hints=hints)
    _done(ctx, "job", job_id)


@app.command("token")
def token(
    ctx: typer.Context,
    token_id: Annotated[str, typer.Argument(help="Token id.", show_default=False)],
) -> None:
    """Revoke an API token (yours, or any with an admin token)."""
    run(ctx, lambda c: c.tokens.revoke(token_id))
    _done(ctx, "token", token_id)
