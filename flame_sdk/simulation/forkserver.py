"""Fork server: imports modules once, then forks one `python <script> <args>` per request.

Run as `python -m flame_sdk.simulation.forkserver [module ...]`. The server imports the modules
(with what their first use imports lazily: `flame_common.forking.warm_import`) and serves the
protocol of `flame_common.forking` on stdin/stdout; a request also names `"script"` and `"cwd"`:
`{"id": n, "script": path, "argv": [...], "cwd": dir, "env": {...}, "log": path}`. A child runs
the script as `__main__` with `sys.argv = [script, *argv]` and its directory first on
`sys.path`. Unlike the flamelet zygote, children stay in the caller's session (Ctrl-C of
`flame-sim` reaches them) and end of input ends the server once its children are gone.
"""

from __future__ import annotations

import os
import runpy
import sys

from flame_common.forking import ForkLoop, Request, warm_import


def run_script(request: Request) -> None:
    """In the forked child: run the request's script as `python <script> <argv...>` would."""
    script = str(request["script"])
    sys.argv = [script, *request["argv"]]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    runpy.run_path(script, run_name="__main__")


def serve(modules: list[str]) -> None:
    for name in modules:
        warm_import(name)
    ForkLoop(run_script, fields={"script": str, "cwd": str}, linger=True).serve()


if __name__ == "__main__":
    serve(sys.argv[1:])
