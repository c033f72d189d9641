"""Client of the flamelet zygote (`flamelet.zygote`): forks warm flamelets instead of spawning.

A flamelet spawned from scratch spends ~0.4 s importing its modules; forked from the zygote it
starts at once. The zygote is a child of the deployer (it dies with it); its children are the
flamelets, each in its own session. If the zygote cannot start or dies, `spawn` raises
`ZygoteError` and the deployer spawns flamelets the plain way. The wire protocol is
`flame_common.forking`'s; this client stays apart from the simulation's (`ForkServer` in
`flame_sdk.simulation.processes`) because a deployer must outlive its zygote: it bounds every
wait, fails requests with `ZygoteError` and follows orphaned flamelets through pidfds.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sys
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

from flame_common.logs import get_logger
from flame_common.processes import die_with_parent, malloc_env, signal_group

log = get_logger(__name__)

READY_TIMEOUT = 60.0  # the zygote imports the flamelet first (slow on a busy machine)
REPLY_TIMEOUT = 10.0
# Reported for flamelets that outlived their zygote: they were sent SIGTERM (their death signal).
ORPHANED = -int(signal.SIGTERM)


class ZygoteError(RuntimeError):
    """The zygote is not available (did not start, died, or refused a request)."""


class ForkedProcess:
    """A flamelet forked by the zygote; `pid`, `returncode` and `wait()` as asyncio's Process."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._exited = asyncio.Event()

    def exited(self, code: int) -> None:
        if self.returncode is None:
            self.returncode = code
            self._exited.set()

    async def wait(self) -> int:
        await self._exited.wait()
        assert self.returncode is not None
        return self.returncode


class ZygoteClient:
    """Starts the zygote, sends it fork requests, and routes its exit reports to the children."""

    def __init__(self) -> None:
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[None] | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[ForkedProcess]] = {}
        self._children: dict[int, ForkedProcess] = {}
        self._closing = False

    async def start(self, warm_imports: Sequence[str] = ()) -> None:
        """Launch the zygote (returns before it is warm; `spawn` waits for that), importing
        `warm_imports` once for every role code below it."""
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        # malloc tunables are read at exec: the flamelets it forks, and their roles, inherit them
        env = malloc_env({k: v for k, v in os.environ.items() if not k.startswith("FLAME_")})
        if warm_imports:  # the only setting it gets: it holds no secret
            env["FLAME_WARM_IMPORTS"] = json.dumps(list(warm_imports))
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "flamelet.zygote",
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            preexec_fn=die_with_parent(signal.SIGKILL),
        )  # fmt: skip
        self._reader = asyncio.create_task(self._read())

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    async def spawn(self, argv: list[str], env: dict[str, str], log_path: Path) -> ForkedProcess:
        """Fork a flamelet running `flamelet <argv>` with `env`, output appended to `log_path`."""
        if self._proc is None or self._ready is None or self._proc.stdin is None:
            raise ZygoteError("the zygote was not started")
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), READY_TIMEOUT)
        except TimeoutError:
            raise ZygoteError(f"the zygote is not ready after {READY_TIMEOUT:g} s") from None
        request_id = next(self._ids)
        reply = self._pending[request_id] = asyncio.get_running_loop().create_future()
        request = {"id": request_id, "argv": argv, "env": env, "log": str(log_path)}
        try:
            self._proc.stdin.write(json.dumps(request).encode() + b"\n")
            await self._proc.stdin.drain()
            return await asyncio.wait_for(reply, REPLY_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            raise ZygoteError(f"the zygote did not answer: {exc or type(exc).__name__}") from None
        finally:
            self._pending.pop(request_id, None)

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        try:
            while line := await self._proc.stdout.readline():
                self._dispatch(json.loads(line))
        except (ValueError, OSError) as exc:
            log.error("zygote output unreadable", error=str(exc))
        finally:
            self._lost()

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "ready" in message:
            assert self._ready is not None
            if not self._ready.done():
                self._ready.set_result(None)
            log.info("zygote ready", pid=message["ready"])
        elif "exited" in message:
            child = self._children.pop(int(message["exited"]), None)
            if child is not None:
                child.exited(int(message["code"]))
        elif "pid" in message:
            pid = int(message["pid"])
            reply = self._pending.get(int(message["id"]))
            if reply is None or reply.done():  # its request timed out: nobody will track it
                log.warning("killing a flamelet forked too late", pid=pid)
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                signal_group(pid, signal.SIGKILL)
                return
            child = self._children[pid] = ForkedProcess(pid)
            reply.set_result(child)
        else:
            reply = self._pending.get(int(message.get("id") or 0))
            if reply is not None and not reply.done():
                reply.set_exception(ZygoteError(str(message.get("error", "no reply"))))

    def _lost(self) -> None:
        """The zygote is gone: fail what waits on it, follow its orphans until they are gone."""
        error = ZygoteError("the zygote exited")
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(error)
            self._ready.exception()  # retrieved: nobody may be waiting yet
        for reply in self._pending.values():
            if not reply.done():
                reply.set_exception(error)
        orphans, self._children = list(self._children.values()), {}
        if orphans and not self._closing:
            log.warning("zygote died; its flamelets were sent SIGTERM", count=len(orphans))
        for child in orphans:
            _follow(child)

    async def close(self) -> None:
        """End the zygote (closing its input); children it still has get SIGTERM."""
        self._closing = True
        if self._proc is None:
            return
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            await asyncio.wait_for(self._proc.wait(), 5)
        except TimeoutError:
            self._proc.kill()
            await self._proc.wait()
        if self._reader is not None:
            with suppress(asyncio.CancelledError):
                await self._reader


def _follow(child: ForkedProcess) -> None:
    """Resolve `child` once its process is gone (watched through a pidfd, no polling)."""
    try:
        fd = os.pidfd_open(child.pid)
    except ProcessLookupError:
        child.exited(ORPHANED)
        return
    loop = asyncio.get_running_loop()

    def _gone() -> None:
        loop.remove_reader(fd)
        os.close(fd)
        child.exited(ORPHANED)

    loop.add_reader(fd, _gone)
