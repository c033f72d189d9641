"""Zygote: a process that has imported the flamelet once and forks one flamelet per request.

Run by the local deployer as `python -m flamelet.zygote`; it serves the protocol of
`flame_common.forking` on stdin/stdout (`{"id": n, "argv": [...], "env": {...}, "log": path}`
in, pids, errors and exit codes out). It holds no threads, event loop or connections when it
forks, so each child starts clean, skipping the interpreter start-up and the imports. Unlike
the simulation's fork server, each child is a session leader with `PR_SET_PDEATHSIG` = SIGTERM
(a deployer stops flamelets by process group, and they must not outlive the zygote); the zygote
ignores SIGTERM/SIGINT (its deployer stops it by closing stdin), dies with the deployer (the
deployer sets its PR_SET_PDEATHSIG), and ends at once at end of input.
"""

from __future__ import annotations

import signal
import sys

import flamelet.main
from flame_common.forking import ForkLoop, Request, warm_import
from flame_common.processes import hide_from_peers
from flame_common.settings import FlameSettings
from flame_common.titles import ZYGOTE, set_title
from flamelet.http import tls_context

CHILD_NAME = b"flamelet"  # children's name until the flamelet titles itself with its task


def warm_up() -> None:
    """Do once what every flamelet would do before its first real work (no I/O, no threads),
    and import what role code will (`FLAME_WARM_IMPORTS`)."""
    tls_context()
    # Settings and argument parsing compile regexes and fill lazy caches on first use.
    settings = FlameSettings()
    flamelet.main.parser()
    for name in settings.warm_imports:
        try:
            warm_import(name)  # with what its first use imports lazily
        except Exception as exc:  # role code that needs it fails with its own error
            print(f"zygote: warm import {name} skipped: {exc!r}", file=sys.stderr, flush=True)


def run_flamelet(request: Request) -> None:
    """In the forked child: run `flamelet <argv...>`."""
    argv = [str(a) for a in request["argv"]]
    sys.argv = ["flamelet", *argv]
    flamelet.main.main(argv)


def main() -> None:
    hide_from_peers()  # flamelets inherit it: their secrets arrive in the fork requests
    set_title(ZYGOTE)  # also its process name (`ps -o comm`, psutil's name())
    warm_up()
    ignore = (signal.SIGTERM, signal.SIGINT)
    ForkLoop(run_flamelet, session=True, ignore=ignore, child_name=CHILD_NAME).serve()


if __name__ == "__main__":
    main()
