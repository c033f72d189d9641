"""ChannelManager: joins a task's channels over their backends and routes backend events."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flame_common.logs import get_logger
from flame_sdk.backends.base import Backend, Scope
from flame_sdk.channels.channel import Channel
from flame_sdk.config import Config, ConfigError
from flame_sdk.wire import DEFAULT_MAX_MESSAGE_BYTES

log = get_logger(__name__)

BackendFactory = Callable[[str, str, str, str, dict[str, Any]], Backend]

OUTAGE_TIMEOUT = "brokerOutageTimeout"
"""Hyperparameter: seconds a broker backend keeps reconnecting before it gives up (default 60)."""
SHARED_MEMORY = "sharedMemory"
"""Hyperparameter: false keeps model payloads of same-host peers on the broker (default true)."""


def _default_backend_factory(
    sort: str, broker: str, job_id: str, end_id: str, options: dict[str, Any]
) -> Backend:
    from flame_sdk.backends import create_backend

    return create_backend(sort, broker, job_id, end_id, **options)


def _default_selector(sort: str, kwargs: dict[str, Any]) -> Any:
    from flame_sdk.selectors import create_selector

    return create_selector(sort, kwargs)


class ChannelManager:
    """The channels of one process; one backend instance per (sort, broker) pair."""

    def __init__(
        self,
        config: Config,
        backend_factory: BackendFactory | None = None,
        selector_factory: Callable[[str, dict[str, Any]], Any] | None = None,
    ) -> None:
        self.config = config
        self._backend_factory = backend_factory or _default_backend_factory
        self._selector_factory = selector_factory or _default_selector
        self._backends: dict[tuple[str, str], Backend] = {}
        self._channels: dict[str, Channel] = {}
        self._tags = config.func_tag_map()
        self.max_message_bytes = int(
            config.hyperparameters.get("maxMessageBytes", DEFAULT_MAX_MESSAGE_BYTES)
        )

    def _backend(self, sort: str, broker: str) -> Backend:
        key = (sort, broker)
        if key not in self._backends:
            options: dict[str, Any] = {}
            if sort != "local":
                if (outage := self.config.hyperparameter(OUTAGE_TIMEOUT)) is not None:
                    options["outage_timeout"] = float(outage)
                if (shared := self.config.hyperparameter(SHARED_MEMORY)) is not None:
                    if not isinstance(shared, bool):
                        raise ConfigError(f"hyperparameter {SHARED_MEMORY} must be true or false")
                    options["shared_memory"] = shared
            backend = self._backend_factory(
                sort, broker, self.config.job.id, self.config.taskid, options
            )
            backend.bind(self._on_join, self._on_leave, self._on_message)
            self._backends[key] = backend
        return self._backends[key]

    async def join_all(self) -> None:
        for channel in self.config.channels:
            await self.join(channel.name)

    async def join(self, name: str) -> Channel:
        """Join one channel of the config (idempotent)."""
        if name in self._channels and self._channels[name].joined:
            return self._channels[name]
        spec = self.config.channel(name)
        scope = Scope(
            job_id=self.config.job.id,
            channel=name,
            group=self.config.group_of(spec),
            me=self.config.role,
            other=self.config.peer_role(spec),
            end_id=self.config.taskid,
        )
        backend = self._backend(*self.config.backend_of(spec))
        selector = self._selector_factory(
            self.config.selector.sort or "default", dict(self.config.selector.kwargs)
        )
        channel = Channel(scope, backend, selector, self.max_message_bytes)
        self._channels[name] = channel
        await backend.connect()
        channel.joined = True
        await backend.join(scope)
        log.info("channel joined", channel=name, group=scope.group, role=scope.me)
        return channel

    def get(self, name: str) -> Channel:
        try:
            return self._channels[name]
        except KeyError:
            raise ConfigError(f"channel '{name}' is not joined") from None

    def get_by_tag(self, tag: str) -> Channel:
        """The channel carrying a func tag of this role (e.g. 'fetch', 'distribute')."""
        if tag not in self._tags:
            raise ConfigError(
                f"role '{self.config.role}' has no channel with func tag '{tag}' "
                f"(tags: {sorted(self._tags)})"
            )
        return self.get(self._tags[tag])

    def has_tag(self, tag: str) -> bool:
        return tag in self._tags

    async def leave(self, name: str) -> None:
        channel = self._channels.pop(name, None)
        if channel is not None:
            await channel.leave()

    async def close(self) -> None:
        """Leave every channel and close the backends."""
        for name in list(self._channels):
            try:
                await self.leave(name)
            except Exception:
                log.exception("leaving channel failed", channel=name)
        backends, self._backends = list(self._backends.values()), {}
        for backend in backends:
            try:
                await backend.close()
            except Exception:
                log.exception("closing backend failed", sort=backend.sort)

    @property
    def backends(self) -> list[Backend]:
        """The backend instances in use (e.g. to simulate a crash with LocalBackend.kill)."""
        return list(self._backends.values())

    def stats(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for channel in self._channels.values():
            for key, value in channel.stats.items():
                total[key] = total.get(key, 0) + value
        return total

    def _route(self, scope: Scope) -> Channel | None:
        channel = self._channels.get(scope.channel)
        if channel is None or channel.scope.group != scope.group:
            log.warning("event for an unknown channel dropped", channel=scope.channel)
            return None
        return channel

    async def _on_join(self, scope: Scope, end_id: str) -> None:
        if (channel := self._route(scope)) is not None:
            channel.on_join(end_id)

    async def _on_leave(self, scope: Scope, end_id: str) -> None:
        if (channel := self._route(scope)) is not None:
            channel.on_leave(end_id)

    async def _on_message(self, scope: Scope, end_id: str, data: bytes | bytearray) -> None:
        if (channel := self._route(scope)) is not None:
            channel.on_message(end_id, data)
