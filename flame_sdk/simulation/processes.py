"""Run a job as one OS process per task (`python <role>/main.py <config>`) over a real broker.

With `preload` (module names, e.g. `("torch",)`), the tasks are forked from one server process
that imported those modules once (`multiprocessing`'s forkserver), instead of each starting
a fresh interpreter: start-up skips the imports and the imported modules' memory is shared
copy-on-write by every task (their PSS splits it). The server lives as long as this process;
its modules are the ones of the first job that started it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import multiprocessing
import os
import runpy
import sys
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from flame_sdk.simulation.expand import JobOverrides, expand

_AGGREGATOR_LAST = ("aggregator",)  # roles whose name contains this start after the others


class ForkedProcess:
    """A task forked by the fork server, with the `asyncio.subprocess.Process` calls we use."""

    def __init__(self, process: BaseProcess) -> None:
        self._process = process
        self._exited: asyncio.Future[None] | None = None

    @property
    def pid(self) -> int:
        assert self._process.pid is not None
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode

    async def wait(self) -> int:
        if self._process.exitcode is None:
            if self._exited is None:
                loop = asyncio.get_running_loop()
                self._exited = exited = loop.create_future()
                sentinel = self._process.sentinel

                def on_exit() -> None:
                    loop.remove_reader(sentinel)
                    if not exited.done():
                        exited.set_result(None)

                loop.add_reader(sentinel, on_exit)
            await asyncio.shield(self._exited)
            self._process.join()
        code = self._process.exitcode
        assert code is not None
        return code

    def kill(self) -> None:
        self._process.kill()


def _run_forked(script: str, config: str, log: str, cwd: str, env: dict[str, str]) -> None:
    """The body of a forked task: what `python <script> <config>` does, output to `log`."""
    gc.freeze()  # the server's objects are never traversed here, so their pages stay shared
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    sys.argv = [script, config]
    sys.path.insert(0, str(Path(script).parent))
    runpy.run_path(script, run_name="__main__")


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

    async def start(self) -> None:
        """Write every task config and start the processes (trainers before aggregators)."""
        example = self.example.resolve()
        configs = sorted(self.configs, key=lambda c: any(w in c["role"] for w in _AGGREGATOR_LAST))
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **(self.env or {})}
        for config in configs:
            task_id = config["taskid"]
            config_path = self.workdir / f"{task_id}.json"
            config_path.write_text(json.dumps(config, indent=1))
            log_path = self.workdir / f"{task_id}.log"
            script = example / config["role"] / "main.py"
            process: asyncio.subprocess.Process | ForkedProcess
            if self.preload:
                process = self._fork(script, config_path, log_path, example, env)
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

    def _fork(
        self, script: Path, config: Path, log: Path, cwd: Path, env: dict[str, str]
    ) -> ForkedProcess:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(list(self.preload))
        args = (str(script), str(config), str(log), str(cwd), env)
        process = context.Process(target=_run_forked, args=args, name=config.stem, daemon=False)
        process.start()
        return ForkedProcess(process)

    @property
    def pids(self) -> list[int]:
        """The task processes and, with `preload`, the fork server they came from."""
        pids = [t.process.pid for t in self.tasks]
        parents = {_parent(pid) for pid in pids} - {os.getpid(), None}
        return [*pids, *sorted(p for p in parents if p is not None)]

    async def wait(self, timeout: float | None = None) -> dict[str, int]:
        """Wait for every process; on timeout kill them all and raise TimeoutError."""
        try:
            codes = await asyncio.wait_for(
                asyncio.gather(*(t.process.wait() for t in self.tasks)), timeout
            )
        except TimeoutError:
            await self.kill()
            raise
        return {t.task_id: code for t, code in zip(self.tasks, codes, strict=True)}

    async def kill(self) -> None:
        for task in self.tasks:
            if task.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    task.process.kill()
        await asyncio.gather(*(t.process.wait() for t in self.tasks))


def _parent(pid: int) -> int | None:
    """The parent of a live process (Linux `/proc`), None when unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


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
