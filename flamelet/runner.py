"""Run the role code as a child process in its own process group; stop it politely, then firmly."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
from collections.abc import Mapping
from pathlib import Path

from flame_common.processes import die_with_parent, malloc_env, signal_group
from flamelet.warm import WarmProcess
from schemas.task import LOG_TAIL_BYTES, METRICS_FILE_ENV

# util-linux `setpriv --pdeathsig KILL -- python ...` arms the parent-death signal and execs the
# role code, so spawning needs no `preexec_fn` (which forces a full fork of this process).
SETPRIV = shutil.which("setpriv") if sys.platform.startswith("linux") else None
ROLEMAIN = "flamelet.rolemain"  # titles the fresh interpreter, then runs the script


_ROLE_SETTINGS = frozenset({"FLAME_DATA_ROOTS"})


def role_env(
    environ: Mapping[str, str], job_id: str, task_id: str, metrics_file: Path
) -> dict[str, str]:
    """The role code's environment: ours without any `FLAME_*` (the control plane's settings
    and secrets: broker and database URLs, task key) but `FLAME_DATA_ROOTS` (where its dataset
    URLs may read), plus the job and task ids and the file its metrics go to."""
    env = {k: v for k, v in environ.items() if not k.startswith("FLAME_") or k in _ROLE_SETTINGS}
    env.update(FLAME_JOB_ID=job_id, FLAME_TASK_ID=task_id, PYTHONUNBUFFERED="1")
    env[METRICS_FILE_ENV] = str(metrics_file)
    return malloc_env(env)


def log_tail(path: Path, limit: int = LOG_TAIL_BYTES) -> str:
    """The last lines of a log file, at most `limit` bytes, starting at a line boundary."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            data = f.read()
    except FileNotFoundError:
        return ""
    if size > limit and b"\n" in data[:-1]:
        data = data[data.index(b"\n") + 1 :]
    return data.decode("utf-8", errors="replace")


class RoleProcess:
    """One `python <role>/main.py <config>` child shown as `title`; output goes to `log_path`.

    With `warm`, the agent's pre-forked child becomes the role process (`warm.py`); otherwise
    the interpreter is started afresh, through `flamelet.rolemain` (which sets the title).
    """

    def __init__(
        self,
        script: Path,
        config: Path,
        log_path: Path,
        env: dict[str, str],
        title: str,
        warm: WarmProcess | None = None,
    ) -> None:
        self.script = script
        self.title = title
        self.config = config
        self.log_path = log_path
        self.env = env
        self.warm = warm
        self.stopped = False
        self.pid: int | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self.returncode: int | None = None

    async def start(self) -> None:
        if self.warm is not None:
            self.warm.launch(self.script, self.config, self.log_path, self.env, self.title)
            self.pid = self.warm.pid
            return
        command = [sys.executable, "-m", ROLEMAIN, self.title, str(self.script), str(self.config)]
        if SETPRIV:  # no Python between fork and exec: the cheap vfork path of subprocess
            command = [SETPRIV, "--pdeathsig", "KILL", "--", *command]
        with open(self.log_path, "ab") as out:
            self._proc = await asyncio.create_subprocess_exec(
                *command,
                cwd=str(self.config.parent),
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=None if SETPRIV else die_with_parent(signal.SIGKILL),
            )
        self.pid = self._proc.pid

    async def _exit(self) -> int:
        if self.warm is not None:
            code = await self.warm.wait()
        else:
            assert self._proc is not None
            code = await self._proc.wait()
        self.returncode = code
        return code

    async def wait(self) -> int:
        """Wait for the child's exit, then remove whatever it left running in its group."""
        assert self.pid is not None
        code = await self._exit()
        signal_group(self.pid, signal.SIGKILL)
        return code

    async def stop(self, grace: float) -> None:
        """SIGTERM the child's process group; SIGKILL it if still alive after `grace` seconds."""
        self.stopped = True
        if self.pid is None or self.returncode is not None:
            return
        signal_group(self.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(self._exit()), grace)
        except TimeoutError:
            signal_group(self.pid, signal.SIGKILL)
            await self._exit()
