"""`flame.channel_manager.ChannelManager`: Flame's blocking channel manager over our SDK's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flame.channel import Channel
from flame.config import as_flame_config
from flame.runtime import call, chain_loop
from flame_sdk.channels import ChannelManager as SdkChannelManager
from flame_sdk.config import Config as SdkConfig


class ChannelManager:
    """`cm = ChannelManager(); cm(config); cm.join_all(); cm.get_by_tag("fetch")`, as in
    Flame, from a role's tasklets. One per role (Flame's is a process-wide singleton, which
    would not let flame-sim run many roles in a process). Its channels close when the chain
    ends (or with `cleanup()`)."""

    def __init__(self) -> None:
        self._manager: SdkChannelManager | None = None
        self._channels: dict[str, Channel] = {}

    def __call__(self, config: SdkConfig | str | Path | dict[str, Any]) -> None:
        self._manager = SdkChannelManager(as_flame_config(config))

    @property
    def manager(self) -> SdkChannelManager:
        if self._manager is None:
            raise RuntimeError("call the channel manager with the config first: cm(config)")
        return self._manager

    def join_all(self) -> None:
        for spec in self.manager.config.channels:
            self.join(spec.name)

    def join(self, name: str) -> bool:
        if name not in self._channels:
            state = chain_loop()
            if self.manager not in state.managers:
                state.managers.append(self.manager)
            self._channels[name] = Channel(call(self.manager.join(name)))
        return True

    def leave(self, name: str) -> None:
        if self._channels.pop(name, None) is not None:
            call(self.manager.leave(name))

    def is_joined(self, name: str) -> bool:
        return name in self._channels

    def get(self, name: str) -> Channel | None:
        return self._channels.get(name)

    def get_by_tag(self, tag: str) -> Channel | None:
        name = self.manager.config.func_tag_map().get(tag)
        return None if name is None else self._channels.get(name)

    def cleanup(self) -> None:
        """Leave every channel (blocking)."""
        self._channels.clear()
        call(self.manager.close())

    # what our SDK's Role asks of `self.cm` ---------------------------------------------------
    def stats(self) -> dict[str, int]:
        return {} if self._manager is None else self._manager.stats()

    async def close(self) -> None:
        self._channels.clear()
        if self._manager is not None:
            await self._manager.close()
