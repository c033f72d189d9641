"""Warm starts: a child forked at agent start-up later becomes `python <role>/main.py <config>`.

The agent forks it before it creates any thread, event loop or connection, so the child holds
nothing of the agent's but the modules it imported. The child waits on a pipe for one request;
given one, it sets itself up as the interpreter would for `python main.py config` (argv,
`sys.path[0]`, `__main__`, environment, working directory, unbuffered output to the task log,
default signal handlers, its own session, SIGKILL when the agent dies), drops the locals of
every frame it was forked under (the agent's settings, task key and fork request, with the
broker login: frames of a process that ends in `os._exit` and never resume) and runs the script.
That skips the interpreter start-up and the imports the agent already paid for. When the
agent closes the pipe without a request, the child exits at once.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import gc
import io
import json
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from flame_common.forking import exit_code
from flame_common.titles import set_title
from flamelet import script

_PR_SET_PDEATHSIG = 1


def available() -> bool:
    """Warm starts need Linux (pidfd, PR_SET_PDEATHSIG) and a process without other threads."""
    return (
        sys.platform.startswith("linux")
        and hasattr(os, "pidfd_open")
        and threading.active_count() == 1
    )


class WarmProcess:
    """The agent's handle on its warm child: `launch()` it once, then `wait()` for its exit."""

    def __init__(self, pid: int, request_fd: int) -> None:
        self.pid = pid
        self._request_fd: int | None = request_fd
        self._pidfd = os.pidfd_open(pid)
        self._exited: asyncio.Future[int] | None = None
        self.code: int | None = None

    @classmethod
    def fork(cls, title: str) -> WarmProcess:
        """Fork the warm child, shown as `title` (call before any thread, loop or connection)."""
        for stream in (sys.stdout, sys.stderr):  # the child must not inherit buffered output
            stream.flush()
        parent = os.getpid()
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, which never returns
            os.close(write_fd)
            code = 1
            try:
                set_title(title)
                code = _serve(read_fd, parent, sys._getframe(1))
            finally:
                os._exit(code)
        os.close(read_fd)
        return cls(pid, write_fd)

    def launch(
        self, script: Path, config: Path, log_path: Path, env: dict[str, str], title: str
    ) -> None:
        """Turn the child into `python <script> <config>` in the config's directory, titled."""
        if self._request_fd is None:
            raise OSError("the warm process was already used")
        request = {
            "title": title,
            "argv": [str(script), str(config)],
            "cwd": str(config.parent),
            "env": env,
            "log": str(log_path),
        }
        data = json.dumps(request).encode()
        try:
            while data:
                data = data[os.write(self._request_fd, data) :]
        except BrokenPipeError:  # the child is gone (killed); wait() reports how
            pass
        finally:
            self.close()

    def close(self) -> None:
        """Send no request: an unused child exits at once."""
        if self._request_fd is not None:
            os.close(self._request_fd)
            self._request_fd = None

    async def wait(self) -> int:
        """The exit code, as `subprocess` reports it (negative: killed by that signal)."""
        if self._exited is None:
            loop = asyncio.get_running_loop()
            self._exited = loop.create_future()
            loop.add_reader(self._pidfd, self._on_exit, loop)
        return await asyncio.shield(self._exited)

    def _on_exit(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.remove_reader(self._pidfd)
        self.reap()
        assert self._exited is not None and self.code is not None
        self._exited.set_result(self.code)

    def reap(self) -> None:
        """Collect the child's exit code (blocks until it exits)."""
        self.close()
        if self.code is None:
            _, status = os.waitpid(self.pid, 0)
            self.code = os.waitstatus_to_exitcode(status)
            os.close(self._pidfd)


# --- in the child ---------------------------------------------------------------------------


def _serve(read_fd: int, parent: int, callers: FrameType | None) -> int:
    """Wait for the request, then run the role script; returns the exit code.

    `callers`: the frame that forked this child; its locals and its callers' are dropped.
    """
    os.setsid()  # own process group: the agent stops the role code by group
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:  # the agent died before the death signal was armed
        return 1
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with os.fdopen(read_fd, "rb") as pipe:
        data = pipe.read()
    if not data:
        return 0
    request: dict[str, Any] = json.loads(data)
    _forget(callers)
    sys.orig_argv = [sys.executable, *request["argv"]]
    set_title(request["title"])
    _redirect(request["log"])
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    argv = list(request["argv"])
    try:
        script.run(argv)
        code = 0
    except SystemExit as exc:
        code = exit_code(exc)
    except BaseException:
        script.report_uncaught(argv[0])  # what the interpreter does with an uncaught exception
        code = 1
    _finalize()
    return code


def _forget(frame: FrameType | None) -> None:
    """Set every local of `frame` and of its callers to None (module frames are left alone)."""
    while frame is not None:
        if frame.f_locals is not frame.f_globals:
            scope = frame.f_locals
            for name in list(scope):
                scope[name] = None
            if sys.version_info < (3, 13):  # write the snapshot back (3.13: a live proxy)
                ctypes.pythonapi.PyFrame_LocalsToFast(ctypes.py_object(frame), ctypes.c_int(0))
        frame = frame.f_back
    gc.collect()


def _redirect(log: str) -> None:
    """stdin from /dev/null; stdout and stderr appended to `log`, unbuffered (`python -u`)."""
    null = os.open(os.devnull, os.O_RDONLY)
    out = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(null)
    os.close(out)
    # sys.stdin keeps reading fd 0 (nothing was ever read from it), now /dev/null
    for fd, name in ((1, "stdout"), (2, "stderr")):
        stream = io.TextIOWrapper(
            io.FileIO(fd, "w", closefd=False),
            encoding="utf-8",
            errors="backslashreplace",
            write_through=True,
        )
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


def _finalize() -> None:
    """What interpreter shutdown does: join non-daemon threads, run atexit handlers, flush."""
    main = threading.main_thread()
    for thread in threading.enumerate():
        if thread is not main and not thread.daemon:
            thread.join()
    with contextlib.suppress(Exception):
        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
