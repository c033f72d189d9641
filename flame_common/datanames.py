"""A job's data plane: its RabbitMQ names (SDK backend, broker accounts) and broker URLs."""

from __future__ import annotations

import re
import secrets
from urllib.parse import quote, urlsplit, urlunsplit


def exchange_name(job_id: str) -> str:
    """The job's topic exchange."""
    return f"flame.data.{job_id}"


def queue_name(job_id: str) -> str:
    """A fresh name for the queue of one end's scope, under the job's exchange name."""
    return f"{exchange_name(job_id)}.q.{secrets.token_hex(8)}"


def data_resources(job_id: str) -> str:
    """The regex of every exchange and queue name of the job's data plane (broker permissions)."""
    return f"^{re.escape(exchange_name(job_id))}(\\..*)?$"


def without_credentials(url: str) -> str:
    """`url` (or a bare `[user:password@]host[:port]`) with its `user:password@` removed (what
    task configs store)."""
    if "://" not in url:
        return url.rpartition("@")[2]
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def with_credentials(url: str, user: str, password: str, *, scheme: str = "amqp") -> str:
    """`url` with `user:password@` as its credentials (what a job's agents are served); a bare
    `host[:port]` is read as `scheme://host[:port]`."""
    if "://" not in url:
        url = f"{scheme}://{url}"
    parts = urlsplit(without_credentials(url))
    userinfo = f"{quote(user, safe='')}:{quote(password, safe='')}"
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{parts.netloc}"))
