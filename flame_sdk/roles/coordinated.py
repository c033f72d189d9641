"""Top aggregator, middle aggregator and trainer of coordinated hierarchical sync FL."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from flame_sdk.channels import Channel
from flame_sdk.roles.base import Role
from flame_sdk.roles.coordinator import (
    COORDINATE,
    COORDINATED_ENDS,
    DEFAULT_LIVENESS_SECONDS,
    META_INFO_REQ,
    META_INFO_RES,
)
from flame_sdk.roles.middle_aggregator import MiddleAggregator
from flame_sdk.roles.top_aggregator import TopAggregator
from flame_sdk.roles.trainer import Trainer
from flame_sdk.roles.waits import JOIN_TIMEOUT, UPSTREAM_TIMEOUT, PeerWaitError, wait_seconds
from flame_sdk.selectors import Selector
from flame_sdk.wire import Key, Message

PRESENCE_POLL_SECONDS = 0.1


class AssignedEnds(Selector):
    """Selector of a coordinated data channel: the assigned ends that are present, in the
    coordinator's order; every end (sorted) while nothing is assigned."""

    sort = "coordinated"

    def __init__(self) -> None:
        self.assigned: list[str] | None = None

    def select(self, ends: Mapping[str, Any], props: Mapping[str, Any]) -> list[str]:
        if self.assigned is None:
            return sorted(ends)
        return [end for end in self.assigned if end in ends]


async def await_present(channel: Channel, ends: list[str], timeout: float) -> bool:
    """Wait until every one of `ends` is on `channel` (a join or a message makes an end
    present); False if `timeout` seconds passed first."""
    deadline = time.monotonic() + timeout
    while not all(channel.has(end) for end in ends):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        await channel.await_join(len(channel.all_ends()) + 1, min(remaining, PRESENCE_POLL_SECONDS))
    return True


def _ids(value: Any) -> list[str]:
    """The end ids of a COORDINATED_ENDS value (one id or a list of ids)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


class Coordinated(Role):
    """What the coordinated roles share: the coordinator channel (func tag `coordinate`) and
    the selector that restricts the data channel of `data_tag` to the assigned ends.

    Hyperparameter `livenessTimeout` (seconds, default 10) bounds the wait for assigned ends
    to appear on the data channel.
    """

    data_tag = "distribute"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.selection = AssignedEnds()
        self.liveness_timeout = float(
            self.config.hyperparameter("livenessTimeout", DEFAULT_LIVENESS_SECONDS)
        )
        self._coordinator: str | None = None
        self._coordination_over = False

    @classmethod
    def get_func_tags(cls) -> tuple[str, ...]:
        return (*super().get_func_tags(), COORDINATE)

    async def internal_init(self) -> None:
        await super().internal_init()
        self.cm.get_by_tag(self.data_tag).selector = self.selection

    async def instruction(self) -> Message | None:
        """The coordinator's next assignment, answering its META_INFO_REQs meanwhile; None
        (and the coordination is over) on EOT or when the coordinator left."""
        channel = self.cm.get_by_tag(COORDINATE)
        if self._coordinator is None:
            join_limit = wait_seconds(self.config, JOIN_TIMEOUT)
            if not await channel.await_join(1, join_limit):
                raise PeerWaitError(
                    f"no coordinator on channel {channel.name!r} for {join_limit:g} s "
                    f"({JOIN_TIMEOUT})"
                )
            self._coordinator = sorted(channel.all_ends())[0]
        limit = wait_seconds(self.config, UPSTREAM_TIMEOUT)
        while (message := await channel.recv(self._coordinator, limit)) is not None:
            if META_INFO_REQ in message:
                await channel.send(self._coordinator, {META_INFO_RES: message[META_INFO_REQ]})
            elif message.get(Key.EOT):
                break
            elif COORDINATED_ENDS in message:
                return message
        if message is None and channel.has(self._coordinator):
            raise PeerWaitError(
                f"coordinator {self._coordinator} on channel {channel.name!r} sent nothing for "
                f"{limit:g} s ({UPSTREAM_TIMEOUT})"
            )
        self._coordination_over = True
        self.log.info("end of coordination received")
        return None

    async def await_ends(self, timeout: float | None = None) -> Channel:
        """The data channel, once the assigned ends are on it (or `timeout` seconds passed,
        default `livenessTimeout`); replaces the aggregators' wait for `minEnds`."""
        channel = self.cm.get_by_tag(self.data_tag)
        ends = self.selection.assigned or []
        limit = self.liveness_timeout if timeout is None else timeout
        if not await await_present(channel, ends, limit):
            missing = [end for end in ends if not channel.has(end)]
            self.log.warning("assigned ends absent", round=self._round, missing=missing)
        return channel


class CoordinatedTopAggregator(Coordinated, TopAggregator):
    """TopAggregator whose rounds take the middle aggregators the coordinator names.

    Chain: ... >> loop(coordinate >> distribute >> aggregate >> ...) >> coordinate_end >>
    end_of_training >> ... . `coordinate` answers the coordinator (this round may begin) and
    takes the round's middle aggregators; the model goes to those that are present within
    `livenessTimeout`. After the last round `coordinate_end` reports once more and waits for
    the coordinator's EOT; an EOT received earlier ends the rounds. The final model goes to
    every middle aggregator with EOT, as in `TopAggregator`. `minEnds` is not used.
    """

    async def coordinate(self) -> None:
        if self._coordination_over:
            return
        message = await self.instruction()
        if message is None:
            self._work_done = True
        elif self._work_done:
            self.log.warning("coordinator assigned a round past the last one; ending")
        else:
            self.selection.assigned = _ids(message.get(COORDINATED_ENDS))

    def compose(self) -> None:
        super().compose()
        self.insert_tasklet("coordinate", before="distribute")
        self.insert_tasklet("coordinate_end", before="end_of_training", fn=self.coordinate)


class CoordinatedMiddleAggregator(Coordinated, MiddleAggregator):
    """MiddleAggregator whose trainers are the ones the coordinator assigns each round.

    Chain: ... >> loop(coordinate >> fetch >> distribute >> aggregate >> upload >> ...) >>
    end_of_training. `coordinate` answers the coordinator's liveness requests and takes the
    round's trainers; with none it waits for the next round (the top does not expect it).
    The model goes to the assigned trainers present within `trainerWaitTime` (default 60 s).
    On the coordinator's EOT it fetches the top's EOT and forwards the final model to every
    trainer, as in `MiddleAggregator`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._idle = False

    async def coordinate(self) -> None:
        self._idle = False
        if self._coordination_over:  # back here: the fetch of the top's EOT failed
            self._end_without_final_model()
            return
        message = await self.instruction()
        if message is None:
            # the top's EOT brings the final model, unless the top is gone
            if self.cm.get_by_tag("fetch").empty():
                self._end_without_final_model()
            return
        self.selection.assigned = _ids(message.get(COORDINATED_ENDS))
        self._idle = not self.selection.assigned
        if self._idle:
            self.log.info("no trainer this round", round=message.get(Key.ROUND))

    def _end_without_final_model(self) -> None:
        """End the work; the trainers get EOT without a model (they keep their own)."""
        self.log.warning("the top aggregator left without sending the final model")
        self.weights = None
        self._work_done = True

    def idle(self) -> bool:
        """Continue-function of `coordinate`: no trainer this round, wait for the next one."""
        return self._idle

    def compose(self) -> None:
        super().compose()
        self.insert_tasklet("coordinate", before="fetch", retry=self.idle)


class CoordinatedTrainer(Coordinated, Trainer):
    """Trainer that fetches from and uploads to the middle aggregator the coordinator names.

    Chain: ... >> loop(coordinate >> fetch >> train >> evaluate >> upload >> save_metrics).
    `coordinate` takes the round's middle aggregator and waits up to `livenessTimeout` for it
    to be present (else the trainer sits the round out). After the coordinator's EOT the
    final model is fetched from the last middle aggregator (or any, if it is gone).
    """

    data_tag = "fetch"

    async def coordinate(self) -> None:
        if self._coordination_over:
            # back here after the coordination ended: no middle aggregator sent the final model
            self.log.warning("no final model arrived")
            self._work_done = True
            return
        message = await self.instruction()
        if message is None:
            # the final model comes from a middle aggregator, if any is left
            self.selection.assigned = None
            self._work_done = self.cm.get_by_tag("fetch").empty()
            return
        ends = _ids(message.get(COORDINATED_ENDS))[:1]
        self.selection.assigned = ends
        self._aggregator = ends[0] if ends else None
        await self.await_ends()

    def compose(self) -> None:
        super().compose()
        self.insert_tasklet("coordinate", before="fetch")
