"""Run a job as one OS process per task (`python <role>/main.py <config>`) over a real broker.

With `preload` (module names, e.g. `("torch",)`), the tasks are forked from a fork server
(`flame_sdk.simulation.forkserver`) that imported those modules once, instead of each starting
a fresh interpreter: start-up skips the imports, and the imported modules' memory is shared
copy-on-write by every task (their PSS splits it). The server is started per job.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flame_common.processes import malloc_env
from flame_sdk.simulation.expand import JobOverrides, expand

_AGGREGATOR_LAST = ("aggregator",)  # roles whose name contains this start after the others


class ForkedProcess:
    """A task forked by the fork server, with the `asyncio.subprocess.Process` calls we use."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def exited(self, code: int) -> None:
        self.returncode = code
        if not self._exited.done():
            self._exited.set_result(code)

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)

    def kill(self) -> None:
        if self.returncode is None:
            os.kill(self.pid, signal.SIGKILL)


class ForkServer:
    """Client of one fork server process: `spawn` a task, learn when it exits."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self._ids = 0
        self._spawned: dict[int, asyncio.Future[ForkedProcess]] = {}
        self._children: dict[int, ForkedProcess] = {}
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, modules: tuple[str, ...], env: dict[str, str]) -> ForkServer:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "flame_sdk.simulation.forkserver", *modules,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        server = cls(process)
        assert process.stdout is not None
        ready = json.loads(await process.stdout.readline() or b"{}")
        if "ready" not in ready:
            await process.wait()
            raise RuntimeError(f"fork server failed to start (preload {list(modules)})")
        server._reader = asyncio.create_task(server._read())
        return server

    async def spawn(
        self, script: Path, argv: list[str], cwd: Path, env: dict[str, str], log: Path
    ) -> ForkedProcess:
        assert self.process.stdin is not None
        self._ids += 1
        reply = self._spawned[self._ids] = asyncio.get_running_loop().create_future()
        request = {"id": self._ids, "script": str(script), "argv": argv, "cwd": str(cwd)}
        request |= {"env": env, "log": str(log)}
        self.process.stdin.write(json.dumps(request).encode() + b"\n")
        await self.process.stdin.drain()
        return await reply

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            message = json.loads(line)
            if "exited" in message:
                self._children[message["exited"]].exited(int(message["code"]))
            elif "pid" in message:
                child = self._children[message["pid"]] = ForkedProcess(int(message["pid"]))
                self._spawned.pop(message["id"]).set_result(child)
            elif "error" in message and message.get("id") in self._spawned:
                error = RuntimeError(f"fork server could not start the task: {message['error']}")
                self._spawned.pop(message["id"]).set_exception(error)
        for child in self._children.values():  # the server died: so did its children's reports
            child.exited(child.returncode if child.returncode is not None else -signal.SIGKILL)
        for pending in self._spawned.values():  # and it will not answer these any more
            if not pending.done():
                pending.set_exception(RuntimeError("fork server exited before starting the task"))
        self._spawned.clear()

    async def close(self) -> None:
        """End the server (after its children: it exits once they are gone)."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        await self.process.wait()
        if self._reader is not None:
            await self._reader


@dataclass
class TaskProcess:
    task_id: str
    role: str
    process: asyncio.subprocess.Process | ForkedProcess
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass
class ProcessJob:
    """The processes of one job; logs (stdout+stderr) go to `workdir/<task id>.log`.

    `preload` names modules for the fork server (see the module docstring); empty: every task
    is a fresh `python <role>/main.py <config>`.
    """

    example: Path
    configs: list[dict[str, Any]]
    workdir: Path
    env: dict[str, str] | None = None
    preload: tuple[str, ...] = ()
    tasks: list[TaskProcess] = field(default_factory=list)
    _server: ForkServer | None = field(default=None, repr=False)

    async def start(self) -> None:
        """Write every task config and start the processes (trainers before aggregators)."""
        example = self.example.resolve()
        configs = sorted(self.configs, key=lambda c: any(w in c["role"] for w in _AGGREGATOR_LAST))
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = malloc_env({**os.environ, **(self.env or {})})
        for config in configs:
            task_id = config["taskid"]
            config_path = self.workdir / f"{task_id}.json"
            config_path.write_text(json.dumps(config, indent=1))
            log_path = self.workdir / f"{task_id}.log"
            script = example / config["role"] / "main.py"
            process: asyncio.subprocess.Process | ForkedProcess
            if self.preload:
                if self._server is None:
                    self._server = await ForkServer.start(self.preload, env)
                log_path.write_bytes(b"")
                argv = [str(config_path)]
                process = await self._server.spawn(script, argv, example, env, log_path)
            else:
                with log_path.open("wb") as log:
                    process = await asyncio.create_subprocess_exec(
                        sys.executable,
                        str(script),
                        str(config_path),
                        stdout=log,
                        stderr=asyncio.subprocess.STDOUT,
                        cwd=str(example),
                        env=env,
                    )
            self.tasks.append(TaskProcess(task_id, config["role"], process, log_path))

    @property
    def pids(self) -> list[int]:
        """The task processes and, with `preload`, the fork server they came from."""
        server = [] if self._server is None else [self._server.process.pid]
        return [*(t.process.pid for t in self.tasks), *server]

    async def wait(self, timeout: float | None = None) -> dict[str, int]:
        """Wait for every process; on timeout kill them all and raise TimeoutError."""
        try:
            codes = await asyncio.wait_for(
                asyncio.gather(*(t.process.wait() for t in self.tasks)), timeout
            )
        except TimeoutError:
            await self.kill()
            raise
        await self._close_server()
        return {t.task_id: code for t, code in zip(self.tasks, codes, strict=True)}

    async def kill(self) -> None:
        for task in self.tasks:
            if task.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    task.process.kill()
        await asyncio.gather(*(t.process.wait() for t in self.tasks))
        await self._close_server()

    async def _close_server(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.close()


async def run_processes(
    example: Path,
    overrides: JobOverrides,
    workdir: Path,
    timeout: float | None = None,
    preload: tuple[str, ...] = (),
) -> ProcessJob:
    """Start one process per task of the example's job and wait for all of them."""
    job = ProcessJob(example, expand(example, overrides), workdir, preload=preload)
    await job.start()
    await job.wait(timeout)
    return job
