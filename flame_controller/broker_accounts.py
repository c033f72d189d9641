"""The `BrokerAccounts` port: one broker user per running job, limited to its data plane.

Adapters: `RabbitAccounts` (`rabbit_accounts.py`, RabbitMQ's management HTTP API) and
`MemoryAccounts` (here; for unit tests). The controller opens a job's account when the job starts
and closes it when the job ends; `sweep` closes the accounts of jobs that are no longer open.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Protocol

from flame_common.datanames import data_resources

USER_INFIX = ".job."  # user names are `<namespace>.job.<job id>`


@dataclass(frozen=True)
class BrokerLogin:
    """A job's broker user and its random password (never logged, never in an event)."""

    user: str
    password: str = field(repr=False)


def user_name(namespace: str, job_id: str) -> str:
    return f"{namespace}{USER_INFIX}{job_id}"


def new_login(namespace: str, job_id: str) -> BrokerLogin:
    return BrokerLogin(user_name(namespace, job_id), secrets.token_urlsafe(24))


class BrokerAccounts(Protocol):
    """Broker users of jobs; each may use only `data_resources(job)` in the data-plane vhost."""

    async def open(self, job_id: str) -> BrokerLogin:
        """Create (or reset) the job's user with a fresh password and its permissions."""
        ...

    async def close(self, job_id: str) -> None:
        """Delete the job's user (absent: nothing to do)."""
        ...

    async def jobs(self) -> set[str]:
        """Jobs that have a user (of this namespace)."""
        ...


async def sweep(accounts: BrokerAccounts, open_jobs: Collection[str]) -> list[str]:
    """Close the accounts of jobs not in `open_jobs` (left by a crash); returns those jobs."""
    stale = sorted((await accounts.jobs()) - set(open_jobs))
    for job_id in stale:
        await accounts.close(job_id)
    return stale


class MemoryAccounts:
    """`BrokerAccounts` in a dict: user -> (password, permission regex)."""

    def __init__(self, namespace: str = "flame") -> None:
        self.namespace = namespace
        self.users: dict[str, tuple[str, str]] = {}

    async def open(self, job_id: str) -> BrokerLogin:
        login = new_login(self.namespace, job_id)
        self.users[login.user] = (login.password, data_resources(job_id))
        return login

    async def close(self, job_id: str) -> None:
        self.users.pop(user_name(self.namespace, job_id), None)

    async def jobs(self) -> set[str]:
        prefix = f"{self.namespace}{USER_INFIX}"
        return {u.removeprefix(prefix) for u in self.users if u.startswith(prefix)}
