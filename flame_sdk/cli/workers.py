"""The live workers of the local stack, read from the titles of the processes below its deployer.

A flamelet titles itself `flamelet job=<job> task=<id12> [role=<role>]` and its role code
`flame-role <role> task=<id12> job=<job>` (`flame_common.titles`); the deployer started both,
so only that process's descendants are read: another stack's workers on the machine never show.
"""

from __future__ import annotations

from dataclasses import dataclass

import psutil

from flame_common.titles import FLAMELET, ROLE, Titled, parse


@dataclass(frozen=True)
class Worker:
    job_id: str
    task_id: str  # its first characters, as in the title
    role: str | None  # None until the flamelet fetched its task
    pid: int  # the flamelet
    role_pid: int | None  # the role code, once it runs


def _title(proc: psutil.Process) -> Titled | None:
    try:
        return parse(" ".join(part for part in proc.cmdline() if part))
    except psutil.Error:  # gone meanwhile
        return None


def workers(deployer: psutil.Process) -> list[Worker]:
    """The flamelets below `deployer` with their role code, by job, task and pid."""
    try:
        below = deployer.children(recursive=True)
    except psutil.Error:
        return []
    titled = [(proc.pid, title) for proc in below if (title := _title(proc)) is not None]
    roles = {
        (t.job_id, t.task_id): pid for pid, t in titled if t.kind == ROLE and t.role is not None
    }
    found = [
        Worker(t.job_id, t.task_id, t.role, pid, roles.get((t.job_id, t.task_id)))
        for pid, t in titled
        if t.kind == FLAMELET
    ]
    return sorted(found, key=lambda w: (w.job_id, w.task_id, w.pid))
