"""The half of a role that reports to the aggregator above: fetch its model, upload updates."""

from __future__ import annotations

import asyncio
from typing import Any

from flame_sdk.channels import RECV, SEND
from flame_sdk.roles.base import Role
from flame_sdk.roles.waits import (
    JOIN_TIMEOUT,
    REJOIN_TIMEOUT,
    UPSTREAM_TIMEOUT,
    PeerWaitError,
    wait_seconds,
)
from flame_sdk.weights import Weights, weights_digest
from flame_sdk.wire import Key, Message

FETCH_RETRY_SECONDS = 0.2


class AggregatorClient(Role):
    """The half of trainers and middle aggregators that talks to the aggregator above them.

    `fetch` receives the global model (or EOT with the final one) on the channel of func tag
    `fetch`, and ends the role with `PeerWaitError` when no aggregator is present for
    `joinTimeout` seconds (`rejoinTimeout` once the one it had left) or the present one sends
    nothing for `upstreamTimeout` seconds;
    `send_upstream` sends an update to that aggregator on the `upload` channel.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._aggregator: str | None = None
        self._last_aggregator: str | None = None
        self._fetched = False

    async def fetch(self) -> None:
        """Wait for the next global model; EOT (with the final model) ends the role's work."""
        self._fetched = False
        channel = self.cm.get_by_tag("fetch")
        wait = JOIN_TIMEOUT if self._last_aggregator is None else REJOIN_TIMEOUT
        join_limit = wait_seconds(self.config, wait)
        if not await channel.await_join(1, join_limit):
            raise PeerWaitError(
                f"no aggregator on channel {channel.name!r} for {join_limit:g} s ({wait}); "
                f"last aggregator: {self._last_aggregator or 'none'}"
            )
        end = self._aggregator if self._aggregator and channel.has(self._aggregator) else None
        end = end or await channel.one_end(RECV)
        limit = wait_seconds(self.config, UPSTREAM_TIMEOUT)
        message = None if end is None else await channel.recv(end, limit)
        if end is not None and message is None and channel.has(end):
            raise PeerWaitError(
                f"aggregator {end} on channel {channel.name!r} sent nothing for {limit:g} s "
                f"({UPSTREAM_TIMEOUT})"
            )
        if end is None or message is None:
            self._aggregator = None
            await asyncio.sleep(FETCH_RETRY_SECONDS)
            return
        self._aggregator = self._last_aggregator = end
        self.accept_global(end, message)

    def accept_global(self, sender: str, message: Message) -> None:
        """Take a message of the aggregator: a new global model, or EOT with the final one."""
        weights = message.get(Key.WEIGHTS)
        if message.get(Key.EOT):
            digest = None if weights is None else weights_digest(weights)
            self.log.info("end of training received", final_model=digest is not None, digest=digest)
            if weights is not None:
                self._take_global(weights)
            self._work_done = True
            return
        if weights is None:
            self.log.warning("message without weights ignored", sender=sender)
            return
        self._take_global(weights)
        self._round = int(message.get(Key.ROUND) or self._round)
        self._fetched = True

    def _take_global(self, weights: Weights) -> None:
        self.weights = weights
        self.set_weights(weights)

    def fetch_failed(self) -> bool:
        """Continue-function of `fetch`: retry when nothing usable arrived."""
        return not self._fetched and not self._work_done

    async def send_upstream(self, message: dict[str, Any]) -> None:
        channel = self.cm.get_by_tag("upload")
        end = self._aggregator if self._aggregator and channel.has(self._aggregator) else None
        end = end or await channel.one_end(SEND)
        if end is None:
            self.log.warning("no aggregator to upload to; update dropped", round=self._round)
            return
        await channel.send(end, message)
