"""Local adapter: one `flamelet` process per task in its own process group, reaped on release.

Flamelets are forked by a warm zygote (`zygote.py`) when it is available, else spawned.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import psutil

from flame_common.logs import get_logger
from flame_common.processes import (
    descendants,
    die_with_parent,
    kill_all,
    malloc_env,
    signal_group,
)
from flame_common.settings import FlameSettings
from flame_controller.deployers.base import Deployer, FailureCallback, WorkerSpec
from flame_controller.deployers.zygote import ZygoteClient, ZygoteError
from flamelet.runner import log_tail

log = get_logger(__name__)

EXTRA_GRACE = 3.0  # beyond the flamelet's own stop grace, before SIGKILL


class WorkerProcess(Protocol):
    """What the deployer needs of a flamelet process (spawned or forked by the zygote)."""

    @property
    def pid(self) -> int: ...
    @property
    def returncode(self) -> int | None: ...
    async def wait(self) -> int: ...


@dataclass
class _Worker:
    spec: WorkerSpec
    proc: WorkerProcess
    log_path: Path
    stopping: bool = False
    reaper: asyncio.Task[None] | None = field(default=None, repr=False)


def flamelet_env(settings: FlameSettings, key: str) -> dict[str, str]:
    """The environment of a flamelet: ours, minus database access, plus its bus settings and key."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLAME_")}
    env.update(
        FLAME_HOME=str(settings.home),
        FLAME_RABBIT_URL=settings.rabbit_url,
        FLAME_NAMESPACE=settings.namespace,
        FLAME_HEARTBEAT_INTERVAL=str(settings.heartbeat_interval),
        FLAME_HEARTBEAT_TIMEOUT=str(settings.heartbeat_timeout),
        FLAME_STOP_GRACE_SECONDS=str(settings.stop_grace_seconds),
        FLAME_LOG_LEVEL=settings.log_level,
        FLAME_LOG_JSON=str(settings.log_json).lower(),
        FLAME_TASK_KEY=key,
    )
    if settings.ca_file:  # the CA the apiserver's certificate chains to
        env["FLAME_CA_FILE"] = settings.ca_file
    if settings.data_roots:  # where role code may read `file://` datasets (the flamelet passes it)
        env["FLAME_DATA_ROOTS"] = json.dumps([str(p) for p in settings.data_roots])
    return malloc_env(env)


class LocalDeployer(Deployer):
    """Runs flamelets as child processes of this deployer (they die with it)."""

    def __init__(
        self,
        settings: FlameSettings,
        on_failure: FailureCallback | None = None,
        *,
        zygote: bool = True,
    ) -> None:
        self.settings = settings
        self.on_failure = on_failure
        self.zygote = ZygoteClient() if zygote and sys.platform.startswith("linux") else None
        self._workers: dict[tuple[str, str], _Worker] = {}
        self._logs = settings.home / "logs" / "workers"

    async def open(self) -> None:
        """Launch the zygote (it warms up in the background); without it flamelets are spawned."""
        if self.zygote is None:
            return
        try:
            await self.zygote.start(self.settings.warm_imports)
        except OSError as exc:
            log.warning("zygote not started, flamelets will be spawned", error=str(exc))
            self.zygote = None

    def running(self) -> list[tuple[str, str]]:
        """(job id, task id) of the workers alive now."""
        return [k for k, w in self._workers.items() if w.proc.returncode is None]

    def pid(self, job_id: str, task_id: str) -> int | None:
        worker = self._workers.get((job_id, task_id))
        return worker.proc.pid if worker else None

    async def start(self, spec: WorkerSpec) -> str:
        worker = self._workers.get((spec.job_id, spec.task_id))
        if worker is not None:  # started before (a redelivered request): until released, keep it
            return f"local-{worker.proc.pid}"
        self._logs.mkdir(parents=True, exist_ok=True)
        log_path = self._logs / f"{spec.job_id}-{spec.task_id}.log"
        args = [
            "--job", spec.job_id, "--task", spec.task_id, "--apiserver", spec.apiserver,
            "--prefetch",
        ]  # fmt: skip
        env = flamelet_env(self.settings, spec.key)
        proc = await self._fork(args, env, log_path) or await _spawn(args, env, log_path)
        worker = _Worker(spec, proc, log_path)
        worker.reaper = asyncio.create_task(self._reap(worker))
        self._workers[(spec.job_id, spec.task_id)] = worker
        log.info("worker started", job_id=spec.job_id, task_id=spec.task_id, pid=proc.pid)
        return f"local-{proc.pid}"

    async def _fork(
        self, args: list[str], env: dict[str, str], log_path: Path
    ) -> WorkerProcess | None:
        if self.zygote is None:
            return None
        try:
            return await self.zygote.spawn(args, env, log_path)
        except ZygoteError as exc:
            log.warning("zygote unavailable, spawning the flamelet", error=str(exc))
            return None

    async def _reap(self, worker: _Worker) -> None:
        code = await worker.proc.wait()
        spec = worker.spec
        log.info("worker exited", job_id=spec.job_id, task_id=spec.task_id, code=code)
        if code > 0 and not worker.stopping and self.on_failure is not None:
            reason = f"flamelet exited with code {code}: {log_tail(worker.log_path, 400)}"
            await self.on_failure(spec.job_id, spec.task_id, reason)

    async def _stop_one(self, worker: _Worker) -> None:
        worker.stopping = True
        pid = worker.proc.pid
        tree = descendants(pid)
        if worker.proc.returncode is None:
            signal_group(pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(
                    worker.proc.wait(), self.settings.stop_grace_seconds + EXTRA_GRACE
                )
            except TimeoutError:
                log.warning("worker did not stop in time, killing", pid=pid)
                signal_group(pid, signal.SIGKILL)
        kill_all([p for p in tree if _alive(p)])
        await worker.proc.wait()
        if worker.reaper is not None:
            await worker.reaper

    async def stop(self, job_id: str, task_ids: list[str]) -> None:
        workers = [self._workers.pop((job_id, t)) for t in task_ids if (job_id, t) in self._workers]
        await asyncio.gather(*(self._stop_one(w) for w in workers))

    async def close(self) -> None:
        workers = list(self._workers.values())
        self._workers.clear()
        await asyncio.gather(*(self._stop_one(w) for w in workers))
        if self.zygote is not None:
            await self.zygote.close()


async def _spawn(args: list[str], env: dict[str, str], log_path: Path) -> WorkerProcess:
    """A flamelet started from scratch: `python -m flamelet <args>`."""
    with open(log_path, "ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "flamelet", *args,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent(signal.SIGTERM),
        )  # fmt: skip


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
