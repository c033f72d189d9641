"""Zygote: a process that has imported the flamelet once and forks one flamelet per request.

Run by the local deployer as `python -m flamelet.zygote`. It holds no threads, event loop or
connections when it forks, so each child starts clean, skipping the interpreter start-up and
the imports. Protocol, one JSON object per line:
- in (stdin):  `{"id": n, "argv": [...], "env": {...}, "log": "<path>"}`;
- out (stdout): `{"ready": <zygote pid>}` once, then `{"id": n, "pid": p}` or
  `{"id": n, "error": "..."}` per request, and `{"exited": p, "code": c}` when a child ends
  (`c` < 0: killed by signal -c, as in `subprocess`).
Each child is a session leader with `PR_SET_PDEATHSIG` = SIGTERM (it stops when the zygote
dies); the zygote ignores SIGTERM/SIGINT (its deployer stops it by closing stdin) and dies
with the deployer (the deployer sets its PR_SET_PDEATHSIG). End of input ends the zygote.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib
import json
import os
import select
import signal
import sys
import threading
import traceback
from typing import Any

import flamelet.main
from flamelet.manifest import tls_context

_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15
NAME = b"flame-zygote"  # process names (`ps -o comm`, psutil's name()) of the zygote...
CHILD_NAME = b"flamelet"  # ...and of its children, whose command line is the zygote's
# Imported lazily by httpx/httpcore on the first request: load them here, once for all children.
LAZY_MODULES = ("anyio._backends._asyncio", "httpcore._backends.anyio", "httpcore._async")


def warm_up() -> None:
    """Do once what every flamelet would do before its first real work (no I/O, no threads)."""
    for name in LAZY_MODULES:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    tls_context()
    gc.freeze()  # children's collections skip what the zygote made (fewer copied pages)


def _send(fd: int, message: dict[str, Any]) -> None:
    data = (json.dumps(message) + "\n").encode()
    while data:
        data = data[os.write(fd, data) :]


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def _run_child(request: dict[str, Any], zygote_pid: int, inherited: list[int]) -> int:
    """In the forked child: become a fresh flamelet process, run its main, return its exit code."""
    os.setsid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    libc.prctl(_PR_SET_NAME, CHILD_NAME, 0, 0, 0)
    if os.getppid() != zygote_pid:  # the zygote died before the death signal was armed
        return 1
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGCHLD, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    null = os.open(os.devnull, os.O_RDONLY)
    log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    for fd in {null, log, *inherited}:
        os.close(fd)
    os.environ.clear()
    os.environ.update(request["env"])
    argv = [str(a) for a in request["argv"]]
    sys.argv = ["flamelet", *argv]
    try:
        flamelet.main.main(argv)
        return 0
    except SystemExit as exc:
        return _exit_code(exc)
    except BaseException:
        traceback.print_exc()
        return 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()


class Zygote:
    """The fork loop: requests on `inp`, replies and exit reports on `out`."""

    def __init__(self, inp: int, out: int) -> None:
        self.inp = inp
        self.out = out
        self.pid = os.getpid()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._buffer = b""

    def serve(self) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.set_wakeup_fd(self._wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # only wakes select via the wakeup fd
        _send(self.out, {"ready": self.pid})
        while True:
            ready, _, _ = select.select([self.inp, self._wake_r], [], [])
            if self._wake_r in ready:
                with contextlib.suppress(BlockingIOError):
                    while os.read(self._wake_r, 4096):
                        pass
            self._reap()
            if self.inp in ready:
                data = os.read(self.inp, 1 << 16)
                if not data:
                    return
                self._buffer += data
                *lines, self._buffer = self._buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        self._handle(line)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            _send(self.out, {"exited": pid, "code": os.waitstatus_to_exitcode(status)})

    def _handle(self, line: bytes) -> None:
        try:
            request = json.loads(line)
        except ValueError as exc:
            _send(self.out, {"id": None, "error": f"bad request: {exc}"})
            return
        if not isinstance(request, dict):
            request = {}
        argv, env, log = request.get("argv"), request.get("env"), request.get("log")
        if not (isinstance(argv, list) and isinstance(env, dict) and isinstance(log, str)):
            error = "bad request: needs 'argv' (list), 'env' (object) and 'log' (path)"
            _send(self.out, {"id": request.get("id"), "error": error})
            return
        inherited = [self.inp, self.out, self._wake_r, self._wake_w]
        try:
            pid = os.fork()
        except OSError as exc:
            _send(self.out, {"id": request.get("id"), "error": f"fork failed: {exc}"})
            return
        if pid == 0:
            code = 1
            try:
                code = _run_child(request, self.pid, inherited)
            finally:
                os._exit(code)
        _send(self.out, {"id": request.get("id"), "pid": pid})


def main() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_NAME, NAME, 0, 0, 0)
    warm_up()
    if threading.active_count() != 1:  # forking a threaded process is unsafe: refuse to serve
        sys.exit(f"zygote: {threading.active_count()} threads after warm-up, cannot fork safely")
    inp, out = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    Zygote(inp, out).serve()


if __name__ == "__main__":
    main()
