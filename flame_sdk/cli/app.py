"""flamectl: the command-line shell over the management client (registers the verbs only)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flame_sdk.cli import create, get, job, logs, remove, start, stop, update
from flame_sdk.cli import run as run_verb
from flame_sdk.cli.entry import run_app
from flame_sdk.cli.output import OutputFormat
from flame_sdk.cli.runtime import Options, use
from flame_sdk.cli.version import version_callback

app = typer.Typer(
    name="flamectl",
    help="Manage Flame designs, datasets and jobs through the Flame apiserver.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def global_options(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(help="Config file [$FLAME_CONFIG, else ~/.flame/config.yaml]."),
    ] = None,
    endpoint: Annotated[
        str | None, typer.Option(help="Apiserver URL [$FLAME_APISERVER, else the config file].")
    ] = None,
    user: Annotated[
        str | None, typer.Option(help="Flame user [$FLAME_USER, else the config file].")
    ] = None,
    output: Annotated[
        OutputFormat, typer.Option("--output", "-o", help="Tables for humans or JSON for scripts.")
    ] = OutputFormat.TABLE,
    insecure: Annotated[
        bool,
        typer.Option("--insecure", help="Skip TLS certificate verification (never by default)."),
    ] = False,
    ca_file: Annotated[
        str | None,
        typer.Option(
            "--ca-file",
            help="CA certificate (PEM) an https apiserver must chain to "
            "[$FLAME_CA_FILE, else the config file's apiserver.caFile, else the system CAs].",
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds to wait for each apiserver answer.")
    ] = 30.0,
    token: Annotated[
        str | None, typer.Option(help="API token [$FLAME_TOKEN, else the config file].")
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=version_callback("flamectl"),
            is_eager=True,
            help="Print the version.",
        ),
    ] = False,
) -> None:
    ctx.obj = use(Options(config, endpoint, user, output, insecure, timeout, token, ca_file))


app.add_typer(create.app, name="create")
app.add_typer(get.app, name="get")
app.add_typer(update.app, name="update")
app.add_typer(remove.app, name="remove")
app.add_typer(start.app, name="start")
app.add_typer(stop.app, name="stop")
app.add_typer(job.app, name="job")
app.command("run")(run_verb.run_command)
app.command("logs")(logs.logs_command)


def main() -> None:
    run_app(app)
