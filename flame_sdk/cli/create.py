"""`flamectl create design|schema|code|dataset|job|compute|token`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flame_sdk.cli.args import DesignId, JsonFile
from flame_sdk.cli.output import print_json, print_message
from flame_sdk.cli.runtime import guard, json_output, run
from flame_sdk.client import (
    FlameClient,
    load_dataset_file,
    load_job_file,
    load_schema_file,
    zip_code,
)
from flame_sdk.client.files import read_bytes
from flame_sdk.project import design_code, resolve_datasets
from schemas.job import JobStatus
from schemas.token import TokenScope

app = typer.Typer(help="Create a resource.", no_args_is_help=True)

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print the new id only (for scripts).")]


@app.command("design")
def design(
    ctx: typer.Context,
    design_id: DesignId,
    desc: Annotated[str, typer.Option("--desc", "-d", help="Description.")] = "",
    name: Annotated[str, typer.Option("--name", "-n", help="Display name.")] = "",
) -> None:
    """Create an empty design."""
    info = run(ctx, lambda c: c.designs.create(design_id, name=name, description=desc))
    if json_output(ctx):
        print_json(info.wire())
    else:
        print_message(f"New design '{design_id}' created successfully")


@app.command("schema")
def schema(ctx: typer.Context, design_id: DesignId, schema_file: JsonFile) -> None:
    """Set the TAG schema of a design from a JSON file."""
    loaded = guard(lambda: load_schema_file(schema_file))
    result = run(ctx, lambda c: c.schemas.create(design_id, loaded))
    if json_output(ctx):
        print_json(result.wire())
    else:
        print_message(
            f"Schema created successfully for design '{design_id}' (revision {result.revision})"
        )


@app.command("code")
def code(
    ctx: typer.Context,
    design_id: DesignId,
    code_path: Annotated[
        Path,
        typer.Argument(
            help="Zip file, a folder with one sub-folder per role, or a design folder "
            "(with schema.json: the folders of its roles)."
        ),
    ],
) -> None:
    """Upload the code of a design (a new revision)."""
    if code_path.is_dir() and (code_path / "schema.json").is_file():
        data, file_name = guard(lambda: design_code(code_path)), f"{design_id}.zip"
    elif code_path.is_dir():
        data, file_name = guard(lambda: zip_code(code_path)), f"{design_id}.zip"
    else:
        data, file_name = guard(lambda: read_bytes(code_path)), code_path.name
    revision = run(ctx, lambda c: c.code.upload(design_id, data, file_name=file_name))
    if json_output(ctx):
        print_json({"designId": design_id, "revision": revision})
    else:
        print_message(f"Code created successfully for design '{design_id}' (revision {revision})")


@app.command("dataset")
def dataset(ctx: typer.Context, dataset_file: JsonFile, quiet: Quiet = False) -> None:
    """Register a dataset from a JSON file (keys starting with "//" are comments)."""
    loaded = guard(lambda: load_dataset_file(dataset_file))
    dataset_id = run(ctx, lambda c: c.datasets.create(loaded))
    if quiet:
        print_message(dataset_id)
    elif json_output(ctx):
        print_json({"id": dataset_id})
    else:
        print_message(f"New dataset created successfully\n  dataset ID: {dataset_id}")


@app.command("job")
def job(ctx: typer.Context, job_file: JsonFile, quiet: Quiet = False) -> None:
    """Create a job from a job file (with dataSpecPath/modelSpecPath next to it). A dataSpec
    entry NAME with a NAME.json next to the job file means the dataset registered from it
    (the user's dataset with that file's url); other entries are dataset ids."""
    spec = guard(lambda: load_job_file(job_file))

    async def create_job(client: FlameClient) -> JobStatus:
        resolved, _ = await resolve_datasets(client, spec, job_file.parent, register=False)
        return await client.jobs.create(resolved)

    status = run(ctx, create_job)
    if quiet:
        print_message(status.id)
    elif json_output(ctx):
        print_json(status.wire())
    else:
        print_message(f"New job created successfully\n  ID: {status.id}\n  state: {status.state}")


@app.command("compute")
def compute(
    ctx: typer.Context,
    compute_id: Annotated[str, typer.Argument(help="Compute id.", show_default=False)],
    region: Annotated[str, typer.Option("--region", "-r", help="Region path.")] = "default",
    api_key: Annotated[str, typer.Option("--api-key", help="Key of its deployer.")] = "",
    unmanaged: Annotated[
        bool,
        typer.Option("--unmanaged", help="Nobody deploys workers; agents are started by hand."),
    ] = False,
) -> None:
    """Register a compute (where workers run)."""
    status = run(
        ctx,
        lambda c: c.computes.register(
            compute_id, region=region, api_key=api_key, managed=not unmanaged
        ),
    )
    if json_output(ctx):
        print_json(status.wire())
    else:
        print_message(f"Compute '{status.compute_id}' registered (state: {status.state})")


@app.command("token")
def token(
    ctx: typer.Context,
    user_id: Annotated[str, typer.Argument(help="User the token acts for.", show_default=False)],
    admin: Annotated[
        bool, typer.Option("--admin", help="An admin token (acts for any user).")
    ] = False,
    scope: Annotated[
        TokenScope, typer.Option("--scope", help="user, admin or compute-registration.")
    ] = TokenScope.USER,
    name: Annotated[str, typer.Option("--name", "-n", help="A name to tell tokens apart.")] = "",
) -> None:
    """Create an API token; it is printed once and cannot be shown again."""
    chosen = TokenScope.ADMIN if admin else scope
    created = run(ctx, lambda c: c.tokens.create(user_id, scope=chosen, name=name))
    if json_output(ctx):
        print_json(created.model_dump(mode="json", by_alias=True))
    else:
        print_message(
            f"New {created.scope.value} token for user '{created.user_id}' (id {created.id}); "
            f"store it now, it is not shown again:\n  {created.token}"
        )
