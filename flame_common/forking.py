"""Pre-importing fork servers: import once, then fork one child per JSON request (Linux).

A server (`ForkLoop`) reads one JSON object per line and writes one per line:
- in:  `{"id": n, "argv": [...], "env": {...}, "log": path, ...}` plus the server's own
  required fields (e.g. `"script"`), and optionally `"cwd"`;
- out: `{"ready": <server pid>}` once, then `{"id": n, "pid": p}` or `{"id": n, "error": "..."}`
  per request, and `{"exited": p, "code": c}` when a child ends (`c` < 0: killed by signal -c,
  as in `subprocess`).
Each child starts with default signal handlers, stdin on /dev/null, stdout and stderr appended
to `log`, in `cwd` (when given) with exactly `env`, then runs the server's `entry(request)`;
its exit code is 0, its `SystemExit` code, or 1 after an uncaught exception (traceback logged).
With `session`, a child is also a session leader that gets SIGTERM when the server dies.
The server forks only while it holds no other thread, with its garbage collector frozen (no
child ever traverses the inherited objects, so their pages stay shared copy-on-write).
`warm_import` imports a module for the children, with what its first use would import lazily.
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
from collections.abc import Callable, Mapping
from typing import Any

from flame_common.titles import set_process_name

Request = dict[str, Any]
REQUIRED: dict[str, type] = {"argv": list, "env": dict, "log": str}
OPTIONAL: dict[str, type] = {"cwd": str}
_PR_SET_PDEATHSIG = 1
# What a module's first use imports later, in every child anew: PyTorch's optimizers import
# torch._dynamo (sympy and more) on their first step, ~0.7 s and ~60 MB private per process.
LAZY_COMPANIONS: dict[str, tuple[str, ...]] = {"torch": ("torch._dynamo",)}


def warm_import(name: str) -> None:
    """Import `name` in a fork server, and the modules its first use would import lazily
    (`LAZY_COMPANIONS`), so that children share them instead of each importing its own."""
    importlib.import_module(name)
    for companion in LAZY_COMPANIONS.get(name, ()):
        importlib.import_module(companion)


def send(fd: int, message: dict[str, Any]) -> None:
    """Write `message` as one JSON line to `fd`, whole."""
    data = (json.dumps(message) + "\n").encode()
    while data:
        data = data[os.write(fd, data) :]


def exit_code(exc: SystemExit) -> int:
    """The process exit code `sys.exit(x)` stands for (a message is printed, as Python does)."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


class ForkLoop:
    """Serves fork requests until end of input; `entry` is what each child runs.

    `fields`: request fields required besides `argv`, `env` and `log`, with their types.
    `session`: children are session leaders with `PR_SET_PDEATHSIG` = SIGTERM (they stop when
    the server dies). `linger`: at end of input, wait for the children (and report their exits)
    instead of ending at once. `ignore`: signals the server ignores (its children do not).
    `child_name`: the children's process name.
    """

    def __init__(
        self,
        entry: Callable[[Request], object],
        *,
        fields: Mapping[str, type] | None = None,
        session: bool = False,
        linger: bool = False,
        ignore: tuple[signal.Signals, ...] = (signal.SIGINT,),
        child_name: bytes | None = None,
    ) -> None:
        self.entry = entry
        self.fields = {**REQUIRED, **(fields or {})}
        self.session = session
        self.linger = linger
        self.ignore = ignore
        self.child_name = child_name
        self.pid = os.getpid()
        self.children: set[int] = set()
        self._buffer = b""

    def serve(self) -> None:
        """Serve stdin/stdout (both are moved aside: stray prints cannot corrupt the protocol)."""
        if threading.active_count() != 1:  # forking a threaded process is unsafe: refuse
            sys.exit(f"fork server: {threading.active_count()} threads, cannot fork safely")
        gc.collect()
        gc.freeze()
        for stream in (sys.stdout, sys.stderr):  # no child may inherit buffered output
            stream.flush()
        self.inp, self.out = os.dup(0), os.dup(1)
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
        os.close(null)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        for sig in self.ignore:
            signal.signal(sig, signal.SIG_IGN)
        signal.set_wakeup_fd(self._wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # only wakes select via the wakeup fd
        send(self.out, {"ready": self.pid})
        reading = True
        while reading or (self.linger and self.children):
            watched = [self.inp, self._wake_r] if reading else [self._wake_r]
            ready, _, _ = select.select(watched, [], [])
            if self._wake_r in ready:
                with contextlib.suppress(BlockingIOError):
                    while os.read(self._wake_r, 4096):
                        pass
            self._reap()
            if self.inp in ready:
                reading = self._read()

    def _read(self) -> bool:
        data = os.read(self.inp, 1 << 16)
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        lines.reverse()
        while lines:  # no iterator on the stack: a child drops `lines` (other requests' secrets)
            line = lines.pop()
            if line.strip():
                self._handle(line)
        return bool(data)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:  # none left
                self.children.clear()
                return
            if pid == 0:
                return
            self.children.discard(pid)
            send(self.out, {"exited": pid, "code": os.waitstatus_to_exitcode(status)})

    def _handle(self, line: bytes) -> None:
        try:
            request = json.loads(line)
        except ValueError as exc:
            send(self.out, {"id": None, "error": f"bad request: {exc}"})
            return
        if not isinstance(request, dict):
            request = {}
        known = {**OPTIONAL, **self.fields}
        wrong = [
            k
            for k, kind in known.items()
            if (k in self.fields or k in request) and not isinstance(request.get(k), kind)
        ]
        if wrong:
            need = ", ".join(f"{k!r} ({known[k].__name__})" for k in wrong)
            send(self.out, {"id": request.get("id"), "error": f"bad request: needs {need}"})
            return
        try:
            pid = os.fork()
        except OSError as exc:
            send(self.out, {"id": request.get("id"), "error": f"fork failed: {exc}"})
            return
        if pid == 0:
            code = 1
            try:
                code = self._child(request)
            finally:
                os._exit(code)
        self.children.add(pid)
        send(self.out, {"id": request.get("id"), "pid": pid})

    def _child(self, request: Request) -> int:
        """In the forked child: set the process up as the request says, run `entry`.

        The child keeps nothing of other requests (they may carry secrets in their `env`).
        """
        self._buffer = b""
        if self.session:
            os.setsid()
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
            if os.getppid() != self.pid:  # the server died before the death signal was armed
                return 1
        if self.child_name:
            set_process_name(self.child_name)
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        null = os.open(os.devnull, os.O_RDONLY)
        log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        for fd in {null, log, self.inp, self.out, self._wake_r, self._wake_w}:
            os.close(fd)
        if "cwd" in request:
            os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        try:
            self.entry(request)
            return 0
        except SystemExit as exc:
            return exit_code(exc)
        except BaseException:
            traceback.print_exc()
            return 1
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
