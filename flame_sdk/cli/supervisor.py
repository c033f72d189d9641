"""The supervisor `flame up` starts: runs the services, restarts a crashed one with backoff."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from flame_common.processes import die_with_parent, signal_group
from flame_common.settings import FlameSettings
from flame_common.titles import set_title
from flame_sdk.cli.services import SERVICES, Service, command, service_env
from flame_sdk.cli.stack_state import Stack

TITLE = "flame-supervisor"
STATE_FILE = "supervisor.json"  # under $FLAME_HOME/run
FIRST_DELAY = 1.0  # seconds before the first restart; doubles up to settings.restart_max_delay
TICK = 0.2


@dataclass
class RestartPolicy:
    """Backoff between restarts, and when to give up: `limit` crashes within `window` seconds."""

    max_delay: float
    limit: int
    window: float
    delay: float = FIRST_DELAY
    crashes: deque[float] = field(default_factory=deque)

    def after_exit(self, now: float, ran_for: float) -> float | None:
        """Seconds to wait before the next start, or None: leave the service down."""
        if ran_for >= self.window:  # it had been stable: start the backoff over
            self.delay = FIRST_DELAY
        self.crashes.append(now)
        while self.crashes and now - self.crashes[0] > self.window:
            self.crashes.popleft()
        if len(self.crashes) >= self.limit:
            return None
        delay, self.delay = self.delay, min(self.delay * 2, self.max_delay)
        return delay

    def reset(self) -> None:
        self.delay = FIRST_DELAY
        self.crashes.clear()


def exit_reason(returncode: int) -> str:
    """`killed by SIGKILL` or `exited with code 3`."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with code {returncode}"


@dataclass
class Child:
    """One supervised service: its process (when running) and its restart bookkeeping."""

    service: Service
    policy: RestartPolicy
    popen: subprocess.Popen[bytes] | None = None
    state: str = "starting"  # running | restarting | down | stopped
    since: float = 0.0  # wall-clock start of the current process
    started_at: float = 0.0  # monotonic start of the current process
    next_start: float = 0.0  # monotonic time of the pending restart
    restarts: int = 0
    last_exit: dict[str, Any] | None = None

    def view(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "pid": self.popen.pid if self.popen and self.state == "running" else None,
            "since": self.since if self.state == "running" else None,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
        }


class Supervisor:
    """Starts every service in its own process group, tied to this process's life."""

    def __init__(self, settings: FlameSettings, env: dict[str, str]) -> None:
        self.stack = Stack(settings)
        self.env = env
        self.grace = settings.stop_grace_seconds + 10
        self.children = [
            Child(s, RestartPolicy(settings.restart_max_delay, settings.restart_limit,
                                   settings.restart_window))
            for s in SERVICES
        ]  # fmt: skip
        self.stopping = False
        self.revive = False

    def _start(self, child: Child) -> None:
        name = child.service.name
        self.stack.log_dir.mkdir(parents=True, exist_ok=True)
        env = service_env(child.service, self.env)
        with open(self.stack.log_dir / f"{name}.log", "ab") as log:
            child.popen = subprocess.Popen(
                command(child.service), env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=die_with_parent(signal.SIGTERM),
            )  # fmt: skip
        self.stack.record(name, psutil.Process(child.popen.pid))
        child.state, child.since, child.started_at = "running", time.time(), time.monotonic()

    def _reap(self, child: Child) -> bool:
        """Notice an exited service and schedule its restart (or leave it down)."""
        if child.popen is None or child.state != "running":
            return False
        code = child.popen.poll()
        if code is None:
            return False
        now = time.monotonic()
        tail = self.stack.log_tail(child.service.name, 1)
        child.last_exit = {"reason": exit_reason(code), "at": time.time(), "log": tail}
        self.stack.forget(child.service.name)
        delay = child.policy.after_exit(now, now - child.started_at)
        if delay is None:
            child.state = "down"
        else:
            child.state, child.next_start = "restarting", now + delay
        return True

    def write_state(self) -> None:
        state = {
            "pid": os.getpid(),
            "at": time.time(),
            "services": {c.service.name: c.view() for c in self.children},
        }
        path = self.stack.run_dir / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        os.replace(tmp, path)

    def run(self) -> None:
        for child in self.children:
            self._start(child)
        self.write_state()
        while not self.stopping:
            changed = False
            for child in self.children:
                changed |= self._reap(child)
                if self.revive and child.state == "down":
                    child.policy.reset()
                    child.state, child.next_start = "restarting", 0.0
                    changed = True
                if child.state == "restarting" and time.monotonic() >= child.next_start:
                    child.restarts += 1
                    self._start(child)
                    changed = True
            self.revive = False
            if changed:
                self.write_state()
            time.sleep(TICK)
        self.shutdown()

    def shutdown(self) -> None:
        """SIGTERM every service's group together, SIGKILL what is alive after the grace."""
        running = [c.popen for c in self.children if c.popen and c.popen.poll() is None]
        for popen in running:
            signal_group(popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        for popen in running:
            try:
                popen.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                signal_group(popen.pid, signal.SIGKILL)
                popen.wait(timeout=5)
        for child in self.children:
            self.stack.forget(child.service.name)
            child.state = "stopped"
        self.write_state()


def main() -> None:
    """Entry point (`python -m flame_sdk.cli.supervisor`), started by `flame up` only."""
    settings = FlameSettings()
    set_title(TITLE)
    supervisor = Supervisor(settings, dict(os.environ))

    def _stop(signum: int, frame: Any) -> None:
        supervisor.stopping = True

    def _revive(signum: int, frame: Any) -> None:
        supervisor.revive = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGHUP, _revive)
    supervisor.run()
    sys.exit(0)


def read_state(run_dir: Path) -> dict[str, Any]:
    """The supervisor's last written state (empty when there is none)."""
    try:
        return dict(json.loads((run_dir / STATE_FILE).read_text()))
    except (OSError, ValueError):
        return {}


if __name__ == "__main__":
    main()
