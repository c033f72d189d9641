"""The `BrokerAccounts` port: a login per running job on each data-plane broker, for its data only.

Adapters: `RabbitAccounts` (`rabbit_accounts.py`, RabbitMQ's management HTTP API),
`MosquittoAccounts` (`mosquitto_accounts.py`, Mosquitto's dynamic-security plugin) and
`MemoryAccounts` (here; for unit tests). `JobAccounts` gives a job the same login on every broker
whose adapter is on; the controller opens it when the job starts and closes it when the job ends;
`sweep` closes the accounts of jobs that are no longer open.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from flame_common.datanames import data_resources

USER_INFIX = ".job."  # user names are `<namespace>.job.<job id>`


@dataclass(frozen=True)
class BrokerLogin:
    """A job's broker user and its random password (never logged, never in an event); `sorts`:
    the `job_brokers` sorts on which the user exists (their hosts are served with the login)."""

    user: str
    password: str = field(repr=False)
    sorts: tuple[str, ...] = ()


class BrokerAccountsError(Exception):
    """A broker refused or failed an account request (names the operation, never a password)."""


def user_name(namespace: str, job_id: str) -> str:
    return f"{namespace}{USER_INFIX}{job_id}"


def new_login(namespace: str, job_id: str, sorts: Collection[str] = ()) -> BrokerLogin:
    return BrokerLogin(
        user_name(namespace, job_id), secrets.token_urlsafe(24), tuple(sorted(sorts))
    )


def jobs_of(namespace: str, users: Collection[str]) -> set[str]:
    """The jobs of `namespace` among broker user names."""
    prefix = f"{namespace}{USER_INFIX}"
    return {u.removeprefix(prefix) for u in users if u.startswith(prefix)}


class Accounts(Protocol):
    """What `sweep` needs: the jobs that have users, and closing them."""

    async def close(self, job_id: str) -> None:
        """Delete the job's user (absent: nothing to do)."""
        ...

    async def jobs(self) -> set[str]:
        """Jobs that have a user (of this namespace)."""
        ...


class BrokerAccounts(Accounts, Protocol):
    """Users of jobs on one broker; each may use only its job's data plane there."""

    sort: str  # the `job_brokers` sort whose hosts these users log in to

    async def open(self, job_id: str, login: BrokerLogin) -> None:
        """Create (or reset) the job's user `login.user`, password `login.password`, with the
        permissions of the job's data plane."""
        ...


async def sweep(accounts: Accounts, open_jobs: Collection[str]) -> list[str]:
    """Close the accounts of jobs not in `open_jobs` (left by a crash); returns those jobs."""
    stale = sorted((await accounts.jobs()) - set(open_jobs))
    for job_id in stale:
        await accounts.close(job_id)
    return stale


class JobAccounts:
    """A job's one login (same user and password) on every broker of `brokers`."""

    def __init__(self, namespace: str, brokers: Sequence[BrokerAccounts]) -> None:
        self.namespace = namespace
        self.brokers = tuple(brokers)
        self.sorts = frozenset(b.sort for b in self.brokers)

    async def open(self, job_id: str) -> BrokerLogin:
        """A fresh login of the job on every broker; when one broker refuses, the users already
        made are deleted again (a failure there is left to the sweep) and the error raised."""
        login = new_login(self.namespace, job_id, self.sorts)
        opened = await asyncio.gather(
            *(b.open(job_id, login) for b in self.brokers), return_exceptions=True
        )  # side by side: a job start waits for the slowest broker, not for their sum
        failures = [r for r in opened if isinstance(r, BaseException)]
        if failures:
            for broker in self.brokers:
                with contextlib.suppress(Exception):
                    await broker.close(job_id)
            raise failures[0]
        return login

    async def close(self, job_id: str) -> None:
        """Delete the job's user on every broker; the first failure is raised after trying all."""
        closed = await asyncio.gather(
            *(b.close(job_id) for b in self.brokers), return_exceptions=True
        )
        failures = [r for r in closed if isinstance(r, BaseException)]
        if failures:
            raise failures[0]

    async def jobs(self) -> set[str]:
        found: set[str] = set()
        for broker in self.brokers:
            found |= await broker.jobs()
        return found


class MemoryAccounts:
    """`BrokerAccounts` in a dict: user -> (password, permission regex)."""

    def __init__(self, namespace: str = "flame", sort: str = "rabbitmq") -> None:
        self.namespace = namespace
        self.sort = sort
        self.users: dict[str, tuple[str, str]] = {}

    async def open(self, job_id: str, login: BrokerLogin) -> None:
        self.users[login.user] = (login.password, data_resources(job_id))

    async def close(self, job_id: str) -> None:
        self.users.pop(user_name(self.namespace, job_id), None)

    async def jobs(self) -> set[str]:
        return jobs_of(self.namespace, self.users)
