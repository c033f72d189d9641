"""ASGI middleware: slash-tolerant paths (no redirects) and a request-body size cap."""

from __future__ import annotations

import json
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from schemas.errors import ErrorCode

_SLASHES = re.compile(r"/{2,}")
_RAW_SLASHES = re.compile(rb"/{2,}")


def normalize_path(path: str) -> str:
    """`/users//u/designs/` -> `/users/u/designs`; the root stays `/`."""
    path = _SLASHES.sub("/", path)
    return path.rstrip("/") or "/"


class SlashTolerance:
    """Serve `/x/` and `//x` like `/x` (Flame clients always add trailing slashes)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = normalize_path(scope["path"])
            if path != scope["path"]:
                raw = scope.get("raw_path") or scope["path"].encode()
                raw_path = _RAW_SLASHES.sub(b"/", raw).rstrip(b"/") or b"/"
                scope = {**scope, "path": path, "raw_path": raw_path}
        await self.app(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


class BodyLimit:
    """Answer 413 once a request body exceeds its cap (Content-Length or streamed bytes):
    `max_bytes` for multipart uploads (code zips), `max_json_bytes` for any other body."""

    def __init__(self, app: ASGIApp, max_bytes: int, max_json_bytes: int | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_json_bytes = max_bytes if max_json_bytes is None else max_json_bytes

    def _cap(self, scope: Scope) -> int:
        for name, value in scope.get("headers", []):
            if name == b"content-type" and value.lower().startswith(b"multipart/form-data"):
                return self.max_bytes
        return self.max_json_bytes

    async def _reject(self, send: Send, cap: int) -> None:
        body = json.dumps(
            {
                "code": ErrorCode.TOO_LARGE.value,
                "message": f"request body is larger than {cap} bytes",
            }
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = self._cap(scope)
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > cap:
                await self._reject(send, cap)
                return
        received = 0
        exceeded = False
        replied = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    exceeded = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            # The app may turn the aborted read into its own error; answer 413 instead.
            nonlocal replied
            if not exceeded:
                await send(message)
            elif not replied:
                replied = True
                await self._reject(send, cap)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _BodyTooLarge:
            if not replied:
                await self._reject(send, cap)
