"""Run the role code as a child process in its own process group; stop it politely, then firmly."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
from pathlib import Path

from flame_common.processes import die_with_parent, signal_group
from schemas.task import LOG_TAIL_BYTES

# util-linux `setpriv --pdeathsig KILL -- python ...` arms the parent-death signal and execs the
# role code, so spawning needs no `preexec_fn` (which forces a full fork of this process).
SETPRIV = shutil.which("setpriv") if sys.platform.startswith("linux") else None


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
    """One `python <role>/main.py <config>` child; output goes to `log_path`."""

    def __init__(self, script: Path, config: Path, log_path: Path, env: dict[str, str]) -> None:
        self.script = script
        self.config = config
        self.log_path = log_path
        self.env = env
        self.stopped = False
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    async def start(self) -> None:
        command = [sys.executable, str(self.script), str(self.config)]
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

    async def wait(self) -> int:
        """Wait for the child's exit, then remove whatever it left running in its group."""
        assert self._proc is not None
        code = await self._proc.wait()
        self._signal_group(signal.SIGKILL)
        return code

    def _signal_group(self, sig: signal.Signals) -> None:
        assert self._proc is not None
        signal_group(self._proc.pid, sig)

    async def stop(self, grace: float) -> None:
        """SIGTERM the child's process group; SIGKILL it if still alive after `grace` seconds."""
        self.stopped = True
        if self._proc is None or self._proc.returncode is not None:
            return
        self._signal_group(signal.SIGTERM)
        try:
            await asyncio.wait_for(self._proc.wait(), grace)
        except TimeoutError:
            self._signal_group(signal.SIGKILL)
            await self._proc.wait()
