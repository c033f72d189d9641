"""`flame.mode.composer`: Flame's `Composer` (runnable from plain code) and `CloneComposer`."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from flame.runtime import running_chain
from flame_sdk.composer import Composer as SdkComposer


class Composer(SdkComposer):
    """flame_sdk's composer whose `run()` also works where Flame calls it: from plain code
    (a role's own `run()`), it runs the chain on a new event loop and returns when it is done;
    on an event loop (flame-sim), it returns the coroutine to await. Tasklets run with the
    loop recorded for the blocking channel API (`flame.channel_manager`)."""

    def run(self) -> Any:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self._run_chain())
        return self._run_chain()

    def _run_chain(self) -> Coroutine[Any, Any, None]:
        return running_chain(super().run)


def CloneComposer(composer: SdkComposer) -> SdkComposer:
    """Flame's way to add tasklets to an existing chain: `with CloneComposer(c): ...`."""
    return composer
