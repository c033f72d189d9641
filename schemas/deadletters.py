"""A dead letter: a message no consumer could handle, moved aside by the broker."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class DeadLetter(BaseModel):
    """One message of `<ns>.dead-letters`, as `GET /deadletters` shows it."""

    message_id: str = ""
    routing_key: str = ""  # of an event: its type
    queue: str = ""  # the consumer queue it failed in
    reason: str = ""  # `delivery_limit` (failed every attempt), `rejected` (undecodable)
    count: int = 1  # times it was dead-lettered
    dead_lettered_at: datetime | None = None
    body: str = ""  # as text, cut to `BODY_CHARS`


BODY_CHARS = 4096
