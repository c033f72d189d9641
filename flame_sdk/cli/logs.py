"""`flamectl logs <job> [<task>] [-f] [--tail N]`: what a job's tasks printed, live with -f."""

from __future__ import annotations

import sys
from typing import Annotated, BinaryIO

import typer

from flame_sdk.cli.args import JobId
from flame_sdk.cli.output import print_error, print_json
from flame_sdk.cli.runtime import json_output, run
from flame_sdk.client import FlameClient, TaskLog

TaskArg = Annotated[
    str | None,
    typer.Argument(
        help="Task id, or role/index as `flamectl get tasks` lists a role's tasks (trainer/0); "
        "every task of the job, each line prefixed with it, when left out.",
        show_default=False,
    ),
]


def logs_command(
    ctx: typer.Context,
    job_id: JobId,
    task: TaskArg = None,
    follow: Annotated[
        bool,
        typer.Option("--follow", "-f", help="Keep printing new output until the task (job) ends."),
    ] = False,
    tail: Annotated[
        int | None, typer.Option("--tail", min=0, help="Only the last N lines of each task.")
    ] = None,
) -> None:
    """Print what a task's role code wrote to stdout/stderr (every task's with no task given).

    The apiserver keeps the last FLAME_MAX_TASK_LOG_BYTES of each task (4 MiB by default)."""
    printer = LogPrinter(
        sys.stdout.buffer, prefixed=task is None, as_json=json_output(ctx), tail=tail
    )

    async def show(client: FlameClient) -> None:
        parts = await client.jobs.logs(job_id, task)
        printer.width = max((len(p.label) for p in parts), default=0)
        for part in parts:
            printer.show(part, first=True)
        running = {p.task_id: p.label for p in parts if not p.ended}
        if follow and running:
            offsets = {p.task_id: p.next for p in parts}
            async for part in client.jobs.task_logs.follow(job_id, running, offsets):
                printer.show(part)
        printer.close()

    run(ctx, show)


class LogPrinter:
    """Writes task output as it comes: raw bytes for one task; for several, complete lines
    prefixed with their task's role/index (a partial line waits for its end); or JSON lines."""

    def __init__(
        self, out: BinaryIO, *, prefixed: bool, as_json: bool = False, tail: int | None = None
    ) -> None:
        self.out, self.prefixed, self.as_json, self.tail = out, prefixed, as_json, tail
        self.width = 0
        self._partial: dict[str, tuple[str, bytes]] = {}  # task id -> (label, unfinished line)
        self._next: dict[str, int] = {}  # task id -> the offset shown up to

    def show(self, part: TaskLog, *, first: bool = False) -> None:
        data = part.data
        expected = self._next.get(part.task_id, 0)
        self._next[part.task_id] = part.next
        if part.start > expected and self.tail is None and not self.as_json:
            print_error(
                f"[{part.label}: {part.start - expected} bytes of output dropped; the apiserver "
                "keeps the last FLAME_MAX_TASK_LOG_BYTES of each task]"
            )
        if first and self.tail is not None:
            data = b"".join(data.splitlines(keepends=True)[-self.tail :] if self.tail else [])
        if self.as_json:
            if data or part.ended:
                print_json(_as_json(part, data), indent=None)
            return
        if not self.prefixed:
            self.out.write(data)
            self.out.flush()
            return
        label, pending = self._partial.pop(part.task_id, (part.label, b""))
        lines = (pending + data).splitlines(keepends=True)
        if lines and not lines[-1].endswith((b"\n", b"\r")) and not part.ended:
            self._partial[part.task_id] = (label, lines.pop())
        for line in lines:
            self._line(label, line)
        self.out.flush()

    def close(self) -> None:
        """Print the unfinished lines left (the tasks were not followed to their end)."""
        for label, pending in self._partial.values():
            self._line(label, pending)
        self._partial.clear()
        self.out.flush()

    def _line(self, label: str, line: bytes) -> None:
        end = b"" if line.endswith((b"\n", b"\r")) else b"\n"
        self.out.write(f"{label:<{self.width}} | ".encode() + line + end)


def _as_json(part: TaskLog, data: bytes) -> dict[str, object]:
    return {
        "taskId": part.task_id,
        "task": part.label,
        "start": part.next - len(data),
        "next": part.next,
        "ended": part.ended,
        "log": data.decode("utf-8", errors="replace"),
    }
