"""Run a job as one OS process per task (`python <role>/main.py <config>`) over a real broker."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flame_sdk.simulation.expand import JobOverrides, expand

_AGGREGATOR_LAST = ("aggregator",)  # roles whose name contains this start after the others


@dataclass
class TaskProcess:
    task_id: str
    role: str
    process: asyncio.subprocess.Process
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass
class ProcessJob:
    """The processes of one job; logs (stdout+stderr) go to `workdir/<task id>.log`."""

    example: Path
    configs: list[dict[str, Any]]
    workdir: Path
    env: dict[str, str] | None = None
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
            with log_path.open("wb") as log:
                process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    str(example / config["role"] / "main.py"),
                    str(config_path),
                    stdout=log,
                    stderr=asyncio.subprocess.STDOUT,
                    cwd=str(example),
                    env=env,
                )
            self.tasks.append(TaskProcess(task_id, config["role"], process, log_path))

    @property
    def pids(self) -> list[int]:
        return [t.process.pid for t in self.tasks]

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


async def run_processes(
    example: Path, overrides: JobOverrides, workdir: Path, timeout: float | None = None
) -> ProcessJob:
    """Start one process per task of the example's job and wait for all of them."""
    job = ProcessJob(example, expand(example, overrides), workdir)
    await job.start()
    await job.wait(timeout)
    return job
