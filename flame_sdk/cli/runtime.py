"""What every flamectl verb shares: global options, running the async client, error -> exit code."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, TypeVar

import typer
from pydantic import ValidationError

from flame_sdk.cli.config import CliConfig, resolve_config
from flame_sdk.cli.exit_codes import ExitCode, for_error
from flame_sdk.cli.output import OutputFormat, print_error
from flame_sdk.client import FlameClient
from schemas.errors import ErrorCode, FlameError

T = TypeVar("T")


@dataclass(frozen=True)
class Options:
    """The global flags of flamectl (before the verb)."""

    config: Path | None = None
    endpoint: str | None = None
    user: str | None = None
    output: OutputFormat = OutputFormat.TABLE
    insecure: bool = False
    timeout: float = 30.0
    token: str | None = None
    ca_file: str | None = None

    def resolve(self) -> CliConfig:
        return resolve_config(
            config_path=self.config,
            endpoint=self.endpoint,
            user=self.user,
            token=self.token,
            ca_file=self.ca_file,
            env=os.environ,
            home=Path.home(),
        )


def options(ctx: typer.Context) -> Options:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, Options) else Options()


def json_output(ctx: typer.Context) -> bool:
    return options(ctx).output is OutputFormat.JSON


def fail(error: FlameError, hints: Mapping[ErrorCode, str] | None = None) -> NoReturn:
    """Print the one-line reason (and a hint) on stderr and exit with the error's stable code."""
    hint = (hints or {}).get(error.code)
    print_error(f"Error: {error.message}" + (f" (hint: {hint})" if hint else ""))
    raise typer.Exit(int(for_error(error.code)))


def run(
    ctx: typer.Context,
    action: Callable[[FlameClient], Awaitable[T]],
    *,
    hints: Mapping[ErrorCode, str] | None = None,
) -> T:
    """Run `action` with a client built from the resolved config; FlameErrors end the process."""
    opts = options(ctx)

    async def with_client() -> T:
        config = opts.resolve()
        async with FlameClient(
            config.endpoint,
            config.user,
            opts.timeout,
            token=config.token,
            verify=not opts.insecure,
            ca_file=config.ca_file or None,
        ) as client:
            return await action(client)

    try:
        return asyncio.run(with_client())
    except FlameError as exc:
        fail(exc, hints)
    except ValidationError as exc:
        fail(FlameError(f"unexpected answer from the apiserver: {exc.errors()[0]['msg']}"))
    except KeyboardInterrupt:
        print_error("Interrupted")
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None


def guard(load: Callable[[], T]) -> T:
    """Run a local step (reading user files) with flamectl's error handling."""
    try:
        return load()
    except FlameError as exc:
        fail(exc)
