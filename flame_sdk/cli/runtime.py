"""What every flamectl verb shares: global options, running the async client, error -> exit code."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, TypeVar

import typer
from pydantic import ValidationError

from flame_sdk.cli.config import CliConfig, resolve_config
from flame_sdk.cli.exit_codes import ExitCode, for_error
from flame_sdk.cli.hints import hint_for, token_owner
from flame_sdk.cli.output import OutputFormat, print_error, print_error_json
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


# The options of the running command line, for reports made where no Typer context is at hand.
_current: ContextVar[Options | None] = ContextVar("flamectl_options", default=None)


def use(opts: Options) -> Options:
    """Make `opts` the running command line's options (flamectl's global callback)."""
    _current.set(opts)
    return opts


def options(ctx: typer.Context) -> Options:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, Options) else Options()


def json_output(ctx: typer.Context) -> bool:
    return options(ctx).output is OutputFormat.JSON


def report_error(message: str, code: ExitCode, hint: str | None = None, kind: str = "") -> None:
    """One line on stderr: `Error: <message> (hint: ...)`, or under `-o json` one JSON object
    {"error", "code" (the exit code), "kind" (the error code), "hint" (when there is one)}."""
    current = _current.get()
    if current is not None and current.output is OutputFormat.JSON:
        body: dict[str, object] = {"error": message, "code": int(code)}
        if kind:
            body["kind"] = kind
        if hint:
            body["hint"] = hint
        print_error_json(body)
    else:
        print_error(f"Error: {message}" + (f" (hint: {hint})" if hint else ""))


def fail(
    error: FlameError,
    hints: Mapping[ErrorCode, str] | None = None,
    *,
    config: CliConfig | None = None,
    owner: str | None = None,
) -> NoReturn:
    """Report the reason (and a hint) on stderr and exit with the error's stable code; `hints`
    (per error code) win over the defaults of `flame_sdk.cli.hints`."""
    hint = (hints or {}).get(error.code) or hint_for(error, config, owner)
    code = for_error(error.code)
    report_error(error.message, code, hint, kind=error.code.value)
    raise typer.Exit(int(code))


def run(
    ctx: typer.Context,
    action: Callable[[FlameClient], Awaitable[T]],
    *,
    hints: Mapping[ErrorCode, str] | None = None,
) -> T:
    """Run `action` with a client built from the resolved config; FlameErrors end the process."""
    opts = options(ctx)
    config = guard(opts.resolve)
    owner: list[str | None] = []  # whose token it is, looked up after a 403

    async def with_client() -> T:
        async with FlameClient(
            config.endpoint,
            config.user,
            opts.timeout,
            token=config.token,
            verify=not opts.insecure,
            ca_file=config.ca_file or None,
        ) as client:
            try:
                return await action(client)
            except FlameError as exc:
                if exc.code is ErrorCode.FORBIDDEN and not (hints and exc.code in hints):
                    owner.append(await token_owner(client, exc))
                raise

    try:
        return asyncio.run(with_client())
    except FlameError as exc:
        fail(exc, hints, config=config, owner=owner[0] if owner else None)
    except ValidationError as exc:
        fail(FlameError(f"unexpected answer from the apiserver: {exc.errors()[0]['msg']}"))
    except KeyboardInterrupt:
        report_error("Interrupted", ExitCode.INTERRUPTED)
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None


def guard(load: Callable[[], T]) -> T:
    """Run a local step (reading user files) with flamectl's error handling."""
    try:
        return load()
    except FlameError as exc:
        fail(exc)
