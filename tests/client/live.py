"""A real controller + apiserver (uvicorn) in their own event loop on a background thread."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Coroutine
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, TypeVar

import uvicorn

from flame_apiserver.app import create_app
from flame_apiserver.auth import token_hash
from flame_common.bus import make_broker, publish_event
from flame_common.embedded import free_port
from flame_common.settings import FlameSettings
from flame_controller.app import running_controller
from schemas.events import EventBase
from tests.support.wait import eventually

T = TypeVar("T")


class LiveStack:
    """Start with `start()`, run coroutines in its loop with `call()`, end with `stop()`.

    `token` is the apiserver's bootstrap admin token (as `flame up` makes one).
    """

    def __init__(self, settings: FlameSettings) -> None:
        self.port = free_port()
        self.token = secrets.token_urlsafe(32)
        self.settings = settings.with_overrides(
            api_port=self.port, admin_token_sha256=token_hash(self.token)
        )
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._exits = AsyncExitStack()
        self._server: uvicorn.Server | None = None
        self._serving: asyncio.Task[None] | None = None
        self._broker = make_broker(self.settings)

    def start(self) -> None:
        self._thread.start()
        self.call(self._start(), timeout=60)

    def stop(self) -> None:
        try:
            self.call(self._stop(), timeout=60)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
            self.loop.close()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def submit(self, coro: Coroutine[Any, Any, T]) -> Any:
        """Run `coro` in the stack's loop without waiting (a concurrent.futures.Future)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    async def publish(self, event: EventBase) -> None:
        await publish_event(self._broker, self.settings, event)

    async def _start(self) -> None:
        await self._exits.enter_async_context(running_controller(self.settings))
        config = uvicorn.Config(
            create_app(self.settings),
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            access_log=False,
            lifespan="on",
        )
        self._server = uvicorn.Server(config)
        serving = self._serving = asyncio.create_task(self._server.serve())
        server = self._server
        await eventually(lambda: server.started or serving.done(), what="the apiserver serving")
        if serving.done():
            raise RuntimeError(f"the apiserver did not start: {serving.exception()!r}")
        await self._broker.start()

    async def _stop(self) -> None:
        await self._broker.stop()
        if self._server is not None and self._serving is not None:
            self._server.should_exit = True
            await self._serving
        await self._exits.aclose()


def flamectl(
    *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the real flamectl in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "flame_sdk.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=Path(env.get("HOME", ".")),
    )
