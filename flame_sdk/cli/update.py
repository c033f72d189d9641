"""`flamectl update design|schema|dataset|job`."""

from __future__ import annotations

from typing import Annotated

import typer

from flame_sdk.cli.args import DatasetId, DesignId, JobId, JsonFile
from flame_sdk.cli.output import print_json, print_message
from flame_sdk.cli.runtime import fail, guard, json_output, run
from flame_sdk.client import load_dataset_update_file, load_job_file, load_schema_file
from schemas.errors import BadRequest

app = typer.Typer(help="Change a resource.", no_args_is_help=True)


@app.command("design")
def design(
    ctx: typer.Context,
    design_id: DesignId,
    name: Annotated[str | None, typer.Option("--name", "-n", help="New name.")] = None,
    desc: Annotated[str | None, typer.Option("--desc", "-d", help="New description.")] = None,
) -> None:
    """Change the name and/or description of a design."""
    if name is None and desc is None:
        fail(BadRequest("nothing to update: give --name and/or --desc"))
    info = run(ctx, lambda c: c.designs.update(design_id, name=name, description=desc))
    if json_output(ctx):
        print_json(info.wire())
    else:
        print_message(f"Design '{design_id}' updated successfully")


@app.command("schema")
def schema(ctx: typer.Context, design_id: DesignId, schema_file: JsonFile) -> None:
    """Replace the schema of a design (a new revision)."""
    loaded = guard(lambda: load_schema_file(schema_file))
    result = run(ctx, lambda c: c.schemas.update(design_id, loaded))
    if json_output(ctx):
        print_json(result.wire())
    else:
        print_message(
            f"Schema updated successfully for design '{design_id}' (revision {result.revision})"
        )


@app.command("dataset")
def dataset(ctx: typer.Context, dataset_id: DatasetId, dataset_file: JsonFile) -> None:
    """Change the fields of a dataset given in a JSON file."""
    change = guard(lambda: load_dataset_update_file(dataset_file))
    run(ctx, lambda c: c.datasets.update(dataset_id, change))
    if json_output(ctx):
        print_json({"updated": "dataset", "id": dataset_id})
    else:
        print_message(f"Dataset '{dataset_id}' updated successfully")


@app.command("job")
def job(ctx: typer.Context, job_id: JobId, job_file: JsonFile) -> None:
    """Replace the spec of a job that is not active (its tasks are rebuilt)."""
    spec = guard(lambda: load_job_file(job_file)).model_copy(update={"id": job_id})
    status = run(ctx, lambda c: c.jobs.update(job_id, spec))
    if json_output(ctx):
        print_json(status.wire())
    else:
        print_message(f"Job '{job_id}' updated successfully (state: {status.state})")
