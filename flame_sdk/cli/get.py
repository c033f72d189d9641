"""`flamectl get`: design(s), schema, code, coderevision, dataset(s), job(s), task(s), metrics,
tokens, deadletters."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flame_sdk.cli.args import DatasetId, DesignId, JobId, Limit, TaskId
from flame_sdk.cli.output import MetricsFormat, print_csv, print_json, print_message, print_table
from flame_sdk.cli.runtime import fail, json_output, run
from schemas.errors import BadRequest

app = typer.Typer(help="Show resources.", no_args_is_help=True)


@app.command("design")
def design(ctx: typer.Context, design_id: DesignId) -> None:
    """Show a design with its schema."""
    print_json(run(ctx, lambda c: c.designs.get(design_id)).wire())


@app.command("designs")
def designs(ctx: typer.Context, limit: Limit = 100) -> None:
    """List your designs."""
    found = run(ctx, lambda c: c.designs.list(limit=limit))
    if json_output(ctx):
        print_json([d.wire() for d in found])
    else:
        print_table(
            ["Design ID", "Name", "Description"], [[d.id, d.name, d.description] for d in found]
        )


@app.command("schema")
def schema(ctx: typer.Context, design_id: DesignId) -> None:
    """Show the TAG schema of a design."""
    print_json(run(ctx, lambda c: c.schemas.get(design_id)).wire())


@app.command("code")
def code(
    ctx: typer.Context,
    design_id: DesignId,
    out: Annotated[
        Path | None, typer.Option("--out", help="Where to write the zip [./<designId>.zip].")
    ] = None,
) -> None:
    """Download the code zip of a design."""
    target = out or Path(f"{design_id}.zip")
    data = run(ctx, lambda c: c.code.download(design_id))
    try:
        target.write_bytes(data)
    except OSError as exc:
        fail(BadRequest(f"{target}: cannot write the file ({exc.strerror or exc})"))
    if json_output(ctx):
        print_json({"designId": design_id, "path": str(target), "bytes": len(data)})
    else:
        print_message(f"Code of design '{design_id}' saved to {target}")


@app.command("coderevision")
def code_revision(ctx: typer.Context, design_id: DesignId) -> None:
    """Show the latest code revision of a design."""
    print_json({"revision": run(ctx, lambda c: c.code.revision(design_id))})


@app.command("dataset")
def dataset(ctx: typer.Context, dataset_id: DatasetId) -> None:
    """Show one dataset."""
    print_json(run(ctx, lambda c: c.datasets.get(dataset_id)).wire())


@app.command("datasets")
def datasets(
    ctx: typer.Context,
    all_public: Annotated[
        bool, typer.Option("--all", "-a", help="Public datasets of every user.")
    ] = False,
    limit: Limit = 100,
) -> None:
    """List your datasets (or all public ones)."""
    found = run(ctx, lambda c: c.datasets.list(public=all_public, limit=limit))
    if json_output(ctx):
        print_json([d.wire() for d in found])
        return
    print_table(
        ["Dataset ID", "Name", "Description", "Owner", "Public"],
        [[d.id, d.name, d.description, d.user_id, d.is_public] for d in found],
    )


@app.command("job")
def job(
    ctx: typer.Context,
    job_id: JobId,
    status: Annotated[bool, typer.Option("--status", "-s", help="Show the status.")] = False,
) -> None:
    """Show the spec of a job, or with --status its state."""
    if not status:
        print_json(run(ctx, lambda c: c.jobs.get(job_id)).wire())
        return
    st = run(ctx, lambda c: c.jobs.status(job_id))
    if json_output(ctx):
        print_json(st.wire())
        return
    print_table(
        ["Job ID", "State", "Created At", "Started At", "Ended At", "Reason"],
        [[st.id, st.state, st.created_at, st.started_at, st.ended_at, st.reason]],
    )


@app.command("jobs")
def jobs(ctx: typer.Context, limit: Limit = 100) -> None:
    """List your jobs."""
    found = run(ctx, lambda c: c.jobs.list(limit=limit))
    if json_output(ctx):
        print_json([j.wire() for j in found])
        return
    print_table(
        ["Job ID", "Name", "State", "Created At", "Started At", "Ended At"],
        [[j.id, j.name, j.state, j.created_at, j.started_at, j.ended_at] for j in found],
    )


@app.command("task")
def task(
    ctx: typer.Context,
    job_id: JobId,
    task_id: TaskId,
    config: Annotated[
        bool, typer.Option("--config", help="Show the config its worker receives.")
    ] = False,
) -> None:
    """Show one task of a job (its key stays hidden)."""
    if config:
        print_json(run(ctx, lambda c: c.tasks.config(job_id, task_id)).to_wire())
    else:
        print_json(run(ctx, lambda c: c.tasks.get(job_id, task_id)).wire())


@app.command("tasks")
def tasks(ctx: typer.Context, job_id: JobId, limit: Limit = 100) -> None:
    """List the tasks of a job."""
    found = run(ctx, lambda c: c.tasks.list(job_id, limit=limit))
    if json_output(ctx):
        print_json([t.wire() for t in found])
    elif not found:
        print_message(f"No info found for tasks of job '{job_id}'")
    else:
        print_table(
            ["Job ID", "Task ID", "Role", "Compute", "State", "Timestamp"],
            [[t.job_id, t.task_id, t.role, t.compute_id, t.state, t.timestamp] for t in found],
        )


@app.command("metrics")
def metrics(
    ctx: typer.Context,
    job_id: JobId,
    role: Annotated[
        str | None, typer.Option("--role", "-r", help="Only this role's tasks.")
    ] = None,
    names: Annotated[
        list[str] | None,
        typer.Option("--metric", "-m", help="Only this metric (repeatable; default: all)."),
    ] = None,
    output: Annotated[
        MetricsFormat | None,
        typer.Option("--output", "-o", help="table, json or csv (default: flamectl's --output)."),
    ] = None,
) -> None:
    """Per-round metrics of a job's tasks (what their role code recorded), by role, task, round."""
    rows = run(ctx, lambda c: c.jobs.metrics(job_id, role=role))
    fmt = output or (MetricsFormat.JSON if json_output(ctx) else MetricsFormat.TABLE)
    if fmt is MetricsFormat.JSON:
        print_json([r.wire() for r in rows])
        return
    columns = list(names or sorted({n for r in rows for n in r.metrics}))
    table = [
        [r.role, r.task_id, r.round, *(_number(r.metrics.get(n)) for n in columns)] for r in rows
    ]
    if fmt is MetricsFormat.CSV:
        print_csv(["role", "task_id", "round", *columns], table)
    elif not rows:
        print_message(f"No metrics recorded for job '{job_id}' yet")
    else:
        print_table(["Role", "Task ID", "Round", *columns], table)


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


@app.command("deadletters")
def deadletters(ctx: typer.Context, limit: Limit = 100) -> None:
    """List messages the control plane gave up on (oldest first; they are left in place)."""
    found = run(ctx, lambda c: c.deadletters.list(limit=limit))
    if json_output(ctx):
        print_json([d.model_dump(mode="json") for d in found])
    elif not found:
        print_message("No dead letters")
    else:
        print_table(
            ["Message ID", "Routing key", "Queue", "Reason", "Count", "Dead-lettered at"],
            [
                [
                    d.message_id,
                    d.routing_key,
                    d.queue,
                    d.reason,
                    str(d.count),
                    d.dead_lettered_at.isoformat() if d.dead_lettered_at else "",
                ]
                for d in found
            ],
        )


@app.command("tokens")
def tokens(
    ctx: typer.Context,
    user_id: Annotated[
        str, typer.Option("--for", help="Only this user's tokens (admins see all without).")
    ] = "",
) -> None:
    """List API tokens (never their secrets): yours, or with an admin token everyone's."""
    found = run(ctx, lambda c: c.tokens.list(user_id=user_id))
    if json_output(ctx):
        print_json([t.model_dump(mode="json", by_alias=True) for t in found])
    elif not found:
        print_message("No tokens")
    else:
        print_table(
            ["Token ID", "User", "Scope", "Name", "Created"],
            [
                [
                    t.id,
                    t.user_id,
                    t.scope.value,
                    t.name,
                    t.created_at.isoformat() if t.created_at else "",
                ]
                for t in found
            ],
        )
