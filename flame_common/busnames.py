"""Broker names of one namespace; imports no broker library (agents use it on their start path)."""

from __future__ import annotations

from dataclasses import dataclass

from flame_common.settings import FlameSettings


@dataclass(frozen=True)
class BusNames:
    """All broker names of one namespace."""

    namespace: str

    @property
    def events_exchange(self) -> str:
        """Topic exchange: every event, routing key = event type."""
        return f"{self.namespace}.events"

    @property
    def agents_exchange(self) -> str:
        """Direct exchange: messages for one agent, routing key = task id."""
        return f"{self.namespace}.agents"

    @property
    def dead_letters(self) -> str:
        """Exchange and queue of messages no consumer could handle (`flame_common.topology`)."""
        return f"{self.namespace}.dead-letters"

    @property
    def command_queue(self) -> str:
        """RPC queue of the controller (job commands)."""
        return f"{self.namespace}.controller.commands"

    def queue(self, consumer: str) -> str:
        """Durable queue of one consumer (e.g. 'controller.events', 'deployer.default')."""
        return f"{self.namespace}.{consumer}"

    def agent_queue(self, task_id: str) -> str:
        return f"{self.namespace}.agent.{task_id}"


def names(settings: FlameSettings) -> BusNames:
    return BusNames(settings.namespace)
