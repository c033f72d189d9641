"""Process titles: what `ps -eo args` shows for each Flame process, and reading them back."""

from __future__ import annotations

import ctypes
import re
from dataclasses import dataclass

import setproctitle

_PR_SET_NAME = 15
TASK_CHARS = 12  # task ids are shown shortened to this many characters
ZYGOTE = "flame-zygote"  # the local deployer's fork server of flamelets
FLAMELET = "flamelet"
ROLE = "flame-role"
IDLE = "(idle)"  # a role process waiting for its task's code
_FLAMELET_TITLE = re.compile(
    r"^flamelet job=(?P<job>\S+) task=(?P<task>\S+)(?: role=(?P<role>\S+))?"
)
_ROLE_TITLE = re.compile(r"^flame-role (?P<role>\S+) task=(?P<task>\S+) job=(?P<job>\S+)")


def set_process_name(name: bytes) -> None:
    """Name this process (`ps -o comm`, psutil's `name()`; 15 bytes at most)."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_NAME, name, 0, 0, 0)


def set_title(title: str) -> None:
    """Show `title` as this process's command line; its first word becomes the process name."""
    setproctitle.setproctitle(title)
    set_process_name(title.split(" ", 1)[0].encode()[:15])


def flamelet_title(job_id: str, task_id: str, role: str | None = None) -> str:
    title = f"{FLAMELET} job={job_id} task={task_id[:TASK_CHARS]}"
    return f"{title} role={role}" if role else title


def role_title(role: str, job_id: str, task_id: str) -> str:
    """`flame-role <role> task=<id12> job=<job>`; `role` is `IDLE` until the task's code runs."""
    return f"{ROLE} {role} task={task_id[:TASK_CHARS]} job={job_id}"


@dataclass(frozen=True)
class Titled:
    """What a flamelet or role process title says (`kind` is FLAMELET or ROLE)."""

    kind: str
    job_id: str
    task_id: str  # shortened to TASK_CHARS
    role: str | None


def parse(args: str) -> Titled | None:
    """Read a flamelet or role process title (`ps -o args`); None for any other process."""
    if match := _FLAMELET_TITLE.match(args):
        return Titled(FLAMELET, match["job"], match["task"], match["role"])
    if match := _ROLE_TITLE.match(args):
        role = match["role"]
        return Titled(ROLE, match["job"], match["task"], None if role == IDLE else role)
    return None
