"""Fork server: imports modules once, then forks one `python <script> <args>` per request.

Run as `python -m flame_sdk.simulation.forkserver [module ...]`. The server imports the modules,
freezes the garbage collector (so that no child ever traverses the inherited objects and their
pages stay shared copy-on-write) and serves one JSON object per line:
- in (stdin):  `{"id": n, "script": path, "argv": [...], "cwd": dir, "env": {...}, "log": path}`;
- out (stdout): `{"ready": <server pid>}` once, then `{"id": n, "pid": p}` per request and
  `{"exited": p, "code": c}` when a child ends (`c` < 0: killed by signal -c).
A child runs the script as `__main__` with `sys.argv = [script, *argv]`, its directory first
on `sys.path`, in `cwd` with exactly `env`, stdout and stderr appended to `log`. The server
holds no threads when it forks. End of input ends the server once its children are gone.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import runpy
import select
import signal
import sys
import traceback
from typing import Any


def _send(message: dict[str, Any]) -> None:
    data = (json.dumps(message) + "\n").encode()
    while data:
        data = data[os.write(1, data) :]


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def _child(request: dict[str, Any], inherited: list[int]) -> int:
    """Become the requested script (in the forked child); returns its exit code."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for fd in inherited:
        os.close(fd)
    null = os.open(os.devnull, os.O_RDONLY)
    log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(null)
    os.close(log)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    script = str(request["script"])
    sys.argv = [script, *request["argv"]]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        return _exit_code(exc)
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


def _fork(request: dict[str, Any], inherited: list[int]) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        code = _child(request, inherited)
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _reap(children: set[int]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            children.clear()
            return
        if pid == 0:
            return
        children.discard(pid)
        _send({"exited": pid, "code": os.waitstatus_to_exitcode(status)})


def serve(modules: list[str]) -> None:
    for name in modules:
        importlib.import_module(name)
    gc.collect()
    gc.freeze()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    children: set[int] = set()
    pending, stdin_open = b"", True
    _send({"ready": os.getpid()})
    while stdin_open or children:
        watched = [wake_r, 0] if stdin_open else [wake_r]
        try:
            ready, _, _ = select.select(watched, [], [])
        except InterruptedError:
            continue
        if wake_r in ready:
            os.read(wake_r, 4096)
        _reap(children)
        if 0 in ready:
            chunk = os.read(0, 65536)
            stdin_open = bool(chunk)
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in filter(None, lines):
                request = json.loads(line)
                pid = _fork(request, [wake_r, wake_w])
                children.add(pid)
                _send({"id": request["id"], "pid": pid})


if __name__ == "__main__":
    serve(sys.argv[1:])
