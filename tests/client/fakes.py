"""An in-memory stand-in for the apiserver's HTTP surface (httpx.MockTransport), for unit tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

Handler = Callable[[httpx.Request], httpx.Response]


@dataclass
class FakeApi:
    """Routes `(METHOD, path)` to canned responses or handlers and records every request."""

    routes: dict[tuple[str, str], Handler] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)

    def on(self, method: str, path: str, status: int = 200, body: Any = None) -> None:
        self.routes[(method, path)] = lambda _req: json_response(status, body)

    def handle(self, method: str, path: str, handler: Handler) -> None:
        self.routes[(method, path)] = handler

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._dispatch)

    def _dispatch(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        handler = self.routes.get((request.method, raw_path(request)))
        if handler is None:
            return json_response(
                404, {"code": "not_found", "message": f"no route {request.url.path}"}
            )
        return handler(request)

    def sent(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and raw_path(r) == path]


def raw_path(request: httpx.Request) -> str:
    """The path as sent (percent-encoding kept), without the query."""
    return request.url.raw_path.split(b"?", 1)[0].decode()


def json_response(status: int, body: Any) -> httpx.Response:
    content = b"" if body is None else json.dumps(body).encode()
    return httpx.Response(status, content=content, headers={"content-type": "application/json"})


def sse_response(events: list[dict[str, Any]]) -> httpx.Response:
    """A complete SSE body: `id: <seq>`, `event: <type>`, `data: <json>` per event."""
    lines = []
    for ev in events:
        lines += [f"id: {ev['seq']}", f"event: {ev['type']}", f"data: {json.dumps(ev)}", ""]
    return httpx.Response(
        200,
        content=("\n".join(lines) + "\n").encode(),
        headers={"content-type": "text/event-stream"},
    )
