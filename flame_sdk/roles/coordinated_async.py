"""Top aggregator, middle aggregator and trainer of coordinated asynchronous hierarchical FL."""

from __future__ import annotations

import time
from typing import Any

from flame_sdk.channels import Channel
from flame_sdk.roles.async_coordinator import (
    MIDDLE_TO_TRAINER,
    POLL_SECONDS,
    REQ_COORDINATED_ENDS,
    RES_COORDINATED_ENDS,
    TOP_TO_MIDDLE,
)
from flame_sdk.roles.async_middle_aggregator import AsyncMiddleAggregator
from flame_sdk.roles.async_top_aggregator import AsyncTopAggregator
from flame_sdk.roles.base import Role
from flame_sdk.roles.coordinated import AssignedEnds
from flame_sdk.roles.coordinator import COORDINATE
from flame_sdk.roles.trainer import Trainer
from flame_sdk.roles.waits import JOIN_TIMEOUT, UPSTREAM_TIMEOUT, PeerWaitError, wait_seconds
from flame_sdk.selectors import END_RECVD, END_SENT
from flame_sdk.wire import Key, Message


class CoordinatorClient(Role):
    """What the coordinated async roles share: the coordinator channel (func tag `coordinate`),
    the selector of the data channel of `data_tag` (the ends the coordinator gave), and the
    end of the coordination (EOT from the coordinator, or the coordinator gone)."""

    data_tag = "distribute"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.selection = AssignedEnds()
        self.selection.assigned = []
        self.coordination_over = False
        self._coordinator: str | None = None
        self._seq = 0

    @classmethod
    def get_func_tags(cls) -> tuple[str, ...]:
        return (*super().get_func_tags(), COORDINATE)

    async def internal_init(self) -> None:
        await super().internal_init()
        self.cm.get_by_tag(self.data_tag).selector = self.selection

    async def coordinator(self) -> str:
        """The coordinator's id, once it is present (`joinTimeout`, else `PeerWaitError`)."""
        if self._coordinator is None:
            channel = self.cm.get_by_tag(COORDINATE)
            limit = wait_seconds(self.config, JOIN_TIMEOUT)
            if not await channel.await_join(1, limit):
                raise PeerWaitError(
                    f"no coordinator on channel {channel.name!r} for {limit:g} s ({JOIN_TIMEOUT})"
                )
            self._coordinator = sorted(channel.all_ends())[0]
        return self._coordinator

    def _over(self, reason: str) -> None:
        self.coordination_over = True
        self.selection.assigned = []
        self.log.info("end of coordination", reason=reason)


class CoordinatedSender(CoordinatorClient):
    """An aggregator whose ends below are picked by the coordinator (`request_ends`)."""

    request_channel = TOP_TO_MIDDLE
    _in_flight: set[str]

    async def request_ends(self, channel: Channel) -> None:
        """Ask the coordinator for new ends to send the model to; they become the selection.

        The request reports every end given so far as `sent` (in flight) or `recvd`. The answer
        is awaited up to `upstreamTimeout`; EOT or the coordinator's departure ends the
        coordination (no new ends from then on)."""
        if self.coordination_over:
            return
        coordinator = await self.coordinator()
        control = self.cm.get_by_tag(COORDINATE)
        known = {*channel.all_ends(), *(self.selection.assigned or [])}
        states = {end: END_SENT if end in self._in_flight else END_RECVD for end in known}
        self._seq += 1
        request = {"channel": self.request_channel, "seq": self._seq, "ends": states}
        await control.send(coordinator, {REQ_COORDINATED_ENDS: request})
        limit = wait_seconds(self.config, UPSTREAM_TIMEOUT)
        while (message := await control.recv(coordinator, limit)) is not None:
            if message.get(Key.EOT):
                self._over("EOT from the coordinator")
                return
            reply = message.get(RES_COORDINATED_ENDS)
            if isinstance(reply, dict) and reply.get("seq") == self._seq:
                ends = reply.get("ends")
                ends = ends if isinstance(ends, list) else []
                self.selection.assigned = [e for e in ends if isinstance(e, str)]
                return
        if control.has(coordinator):
            raise PeerWaitError(
                f"coordinator {coordinator} sent no answer for {limit:g} s ({UPSTREAM_TIMEOUT})"
            )
        self._over("the coordinator left")


class CoordinatedAsyncTopAggregator(CoordinatedSender, AsyncTopAggregator):
    """AsyncTopAggregator (FedBuff) whose middle aggregators are picked by the coordinator.

    Chain: the `AsyncTopAggregator` chain, `distribute` first asking the coordinator for new
    middle aggregators (at most `concurrency` in flight), and `coordinate_end` before
    `end_of_training`: EOT to the coordinator, which ends the coordination. The final model
    goes to every middle aggregator with EOT, as in `AsyncTopAggregator`.
    """

    async def distribute(self) -> None:
        await self.request_ends(self.cm.get_by_tag("distribute"))
        await super().distribute()

    async def coordinate_end(self) -> None:
        if not self.coordination_over:
            await self.cm.get_by_tag(COORDINATE).send(await self.coordinator(), {Key.EOT: True})
            self._over("training done")

    def compose(self) -> None:
        super().compose()
        self.insert_tasklet("coordinate_end", before="end_of_training")


class CoordinatedAsyncMiddleAggregator(CoordinatedSender, AsyncMiddleAggregator):
    """AsyncMiddleAggregator (FedBuff) whose trainers are picked by the coordinator.

    Chain: the `AsyncMiddleAggregator` chain, `distribute` first asking the coordinator for new
    trainers (at most `concurrency` in flight, none of them in flight elsewhere). The top's EOT
    ends it and its final model goes to every trainer, as in `AsyncMiddleAggregator`.
    """

    request_channel = MIDDLE_TO_TRAINER

    async def distribute(self) -> None:
        await self.request_ends(self.cm.get_by_tag("distribute"))
        await super().distribute()


class CoordinatedAsyncTrainer(CoordinatorClient, Trainer):
    """Trainer that trains for whichever middle aggregator the coordinator gave it to.

    Chain: the `Trainer` chain. `fetch` takes the next model from any middle aggregator (only the
    one that was given this trainer sends it one) and `upload` goes back to that one (dropped,
    with a warning, if it left meanwhile). EOT with the final model comes from the middle
    aggregators; after the coordinator's EOT with no middle aggregator left, the work ends
    without one. No model for `upstreamTimeout` seconds ends it with `PeerWaitError`.
    """

    data_tag = "fetch"

    async def fetch(self) -> None:
        self._fetched = False
        channel = self.cm.get_by_tag("fetch")
        limit = wait_seconds(self.config, UPSTREAM_TIMEOUT)
        deadline = time.monotonic() + limit
        while (got := await self._next_model(channel)) is None:
            if self.coordination_over and channel.empty():
                self.log.warning("no middle aggregator left to send the final model")
                self._work_done = True
                return
            if time.monotonic() > deadline:
                raise PeerWaitError(
                    f"no model on channel {channel.name!r} for {limit:g} s ({UPSTREAM_TIMEOUT})"
                )
        sender, message = got
        self._aggregator = self._last_aggregator = sender
        self.selection.assigned = [sender]
        self.accept_global(sender, message)

    async def _next_model(self, channel: Channel) -> tuple[str, Message] | None:
        """A message of any middle aggregator within `POLL_SECONDS`; notes the coordinator's
        EOT or departure meanwhile."""
        ends = channel.all_ends()
        got = await channel.recv_any(ends, POLL_SECONDS) if ends else None
        if not ends:
            await channel.await_join(1, POLL_SECONDS)
        if not self.coordination_over:
            control = self.cm.get_by_tag(COORDINATE)
            coordinator = await self.coordinator()
            if not control.has(coordinator):
                self._over("the coordinator left")
            elif (note := await control.recv(coordinator, 0)) is not None and note.get(Key.EOT):
                self._over("EOT from the coordinator")
        if got is None or got[1] is None:
            return None
        return got[0], got[1]
