"""`flame.mode.composer`: Flame's `Composer` (runnable from plain code) and `CloneComposer`."""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

from flame.runtime import running_chain
from flame_sdk.composer import Composer as SdkComposer


class Composer(SdkComposer):
    """flame_sdk's composer whose `run()` also works where Flame calls it: from plain code
    (a role's own `run()`), it runs the chain on a new event loop and returns when it is done;
    on an event loop (flame-sim), it returns the coroutine to await. Tasklets run with the
    loop recorded for the blocking channel API (`flame.channel_manager`), in a thread of
    their own role: a tasklet blocked on a peer must not hold a thread its peer needs, so a
    shared executor (flame-sim's) is not used."""

    def __init__(self) -> None:
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="flame-role")
        super().__init__()

    @property
    def executor(self) -> Executor:
        return self._thread

    @executor.setter
    def executor(self, value: Executor | None) -> None:
        """Ignored: this composer's tasklets keep their role's own thread."""

    def run(self) -> Any:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self._run_chain())
        return self._run_chain()

    async def _run_chain(self) -> None:
        try:
            await running_chain(super().run)
        finally:
            self._thread.shutdown(wait=False)


def CloneComposer(composer: SdkComposer) -> SdkComposer:
    """Flame's way to add tasklets to an existing chain: `with CloneComposer(c): ...`."""
    return composer
