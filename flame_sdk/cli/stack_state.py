"""Bookkeeping of `flame up`: pid files (pid + start time), spawning process groups, stopping."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import psutil

from flame_common.processes import signal_group
from flame_common.settings import FlameSettings


class Stack:
    """The run and log directories of one FLAME_HOME."""

    def __init__(self, settings: FlameSettings) -> None:
        self.settings = settings
        self.run_dir = settings.home / "run"
        self.log_dir = settings.home / "logs"

    def _pidfile(self, part: str) -> Path:
        return self.run_dir / f"{part}.pid"

    def record(self, part: str, proc: psutil.Process, **extra: Any) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        info = {"pid": proc.pid, "started": proc.create_time(), **extra}
        self._pidfile(part).write_text(json.dumps(info))

    def info(self, part: str) -> dict[str, Any] | None:
        try:
            return dict(json.loads(self._pidfile(part).read_text()))
        except (OSError, ValueError):
            return None

    def process(self, part: str) -> psutil.Process | None:
        """The recorded process if it is still the one we started (pids get reused)."""
        info = self.info(part)
        if info is None:
            return None
        try:
            proc = psutil.Process(int(info["pid"]))
            if abs(proc.create_time() - float(info["started"])) > 1e-3:
                return None
            return None if proc.status() == psutil.STATUS_ZOMBIE else proc
        except (psutil.Error, KeyError, ValueError):
            return None

    def forget(self, part: str) -> None:
        self._pidfile(part).unlink(missing_ok=True)

    def spawn(self, part: str, argv: list[str], env: dict[str, str]) -> psutil.Process:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / f"{part}.log", "ab") as log:
            popen = subprocess.Popen(
                argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        proc = psutil.Process(popen.pid)
        self.record(part, proc)
        return proc

    def log_tail(self, part: str, lines: int = 5) -> str:
        try:
            text = (self.log_dir / f"{part}.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, parts: list[str], grace: float) -> list[str]:
        """SIGTERM the parts' process groups together, SIGKILL those alive after `grace`.

        Returns the parts that were running."""
        running: list[tuple[str, psutil.Process]] = []
        for part in parts:
            proc = self.process(part)
            self.forget(part)
            if proc is not None:
                if not signal_group(proc.pid, signal.SIGTERM):
                    proc.terminate()
                running.append((part, proc))
        _, alive = psutil.wait_procs([proc for _, proc in running], timeout=grace)
        for proc in alive:
            signal_group(proc.pid, signal.SIGKILL)
        psutil.wait_procs(alive, timeout=5)
        return [part for part, _ in running]
