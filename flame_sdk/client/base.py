"""Shared plumbing of the resource clients: the transport and the user's URL prefix."""

from __future__ import annotations

from flame_sdk.client.http import Transport, segment


class Resource:
    """A small client of one REST resource, scoped to one user."""

    def __init__(self, transport: Transport, user: str) -> None:
        self._t = transport
        self._user = user

    def _path(self, *parts: str) -> str:
        """`/users/{user}/<parts...>` with each part percent-encoded."""
        return "/users/" + "/".join(segment(p) for p in (self._user, *parts))
