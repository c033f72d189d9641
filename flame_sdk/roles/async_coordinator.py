"""Coordinator of coordinated async hierarchical FL: FedBuff selection for the aggregators."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

from flame_sdk.config import ConfigError
from flame_sdk.roles.coordinator import WITH_MIDDLE, WITH_TOP, WITH_TRAINER, ControlRole
from flame_sdk.roles.waits import UPSTREAM_TIMEOUT, PeerWaitError, wait_seconds
from flame_sdk.selectors import END_RECVD, END_SENT, END_STATE, REQUESTER, SEND, STATE, End
from flame_sdk.selectors.fedbuff import FedBuffSelector
from flame_sdk.wire import Key, Message

REQ_COORDINATED_ENDS = "req_coordinated_ends"
"""Aggregator -> coordinator: `{"channel": TOP_TO_MIDDLE | MIDDLE_TO_TRAINER, "seq": int,
"ends": {end id: "sent" | "recvd"}}`, the requester's view of the ends it was given."""
RES_COORDINATED_ENDS = "res_coordinated_ends"
"""Coordinator -> aggregator: `{"seq": the request's seq, "ends": [new end ids to send to]}`."""
TOP_TO_MIDDLE, MIDDLE_TO_TRAINER = "top_to_middle", "middle_to_trainer"

POLL_SECONDS = 0.2
MAX_REPORTED_ENDS = 100_000

_SERVED = {WITH_TOP: (TOP_TO_MIDDLE, WITH_MIDDLE), WITH_MIDDLE: (MIDDLE_TO_TRAINER, WITH_TRAINER)}
"""Requester channel -> (the request's channel name, the control channel of the candidates)."""


def parse_request(message: Message) -> tuple[str, int, dict[str, str]] | None:
    """(channel, seq, end states) of a REQ_COORDINATED_ENDS message; None if malformed."""
    request = message.get(REQ_COORDINATED_ENDS)
    if not isinstance(request, dict):
        return None
    channel, seq, ends = request.get("channel"), request.get("seq"), request.get("ends")
    if not isinstance(channel, str) or isinstance(seq, bool) or not isinstance(seq, int):
        return None
    if not isinstance(ends, dict) or len(ends) > MAX_REPORTED_ENDS:
        return None
    if not all(state in (END_SENT, END_RECVD) for state in ends.values()):
        return None
    return channel, seq, ends


class AsyncCoordinator(ControlRole):
    """Chain: internal_init >> load_data >> initialize >> await_ends >> loop(monitor >>
    coordinate) >> end_of_training.

    Holds two `fedbuff` selectors of concurrency `hyperparameters.concurrency` (seeded by
    `pairingSeed` when given): one picks middle aggregators for the top aggregator, one
    trainers for each middle aggregator, so each aggregator has at most `concurrency` ends in
    flight and a trainer is in flight with one middle aggregator at a time. `coordinate`
    answers the next REQ_COORDINATED_ENDS: the requester reports which of its ends are still in
    flight (`sent`) or answered (`recvd`), and gets the new ends it may send its model to (ends
    present on the coordinator's control channels). `monitor` frees the trainers of a middle
    aggregator that left, so the others take them over (`self.departed` lists such aggregators).
    The coordination ends when the top aggregator sends EOT (or leaves); EOT then goes to the
    middle aggregators and trainers. No request from any aggregator for `upstreamTimeout`
    seconds ends it with `PeerWaitError`. Before the first request it waits for `minEnds` (see
    `ControlRole`).
    """

    func_tags = (WITH_TOP, WITH_MIDDLE, WITH_TRAINER)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cfg = self.config
        concurrency = cfg.hyperparameter("concurrency")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigError(
                f"hyperparameters.concurrency must be a positive integer, got {concurrency!r}"
            )
        self.concurrency = concurrency
        seed = cfg.hyperparameter("pairingSeed")
        seed = None if seed is None else int(seed)
        self.selectors = {
            WITH_TOP: FedBuffSelector(concurrency, seed),
            WITH_MIDDLE: FedBuffSelector(concurrency, seed),
        }
        self.departed: list[str] = []
        self._middles: set[str] = set()
        self._listeners: dict[str, asyncio.Task[tuple[str, Message | None]]] = {}

    async def await_ends(self) -> None:
        await super().await_ends()
        self._middles = set(self.cm.get_by_tag(WITH_MIDDLE).all_ends())

    async def monitor(self) -> None:
        """Free the trainers of middle aggregators that left; end when the top is gone."""
        present = set(self.cm.get_by_tag(WITH_MIDDLE).all_ends())
        for gone in sorted(self._middles - present):
            self.selectors[WITH_MIDDLE].reset(gone)
            self.departed.append(gone)
            self.log.warning("middle aggregator left; its trainers go to the others", end=gone)
        self._middles = present
        if self.cm.get_by_tag(WITH_TOP).empty():
            self.log.error("the top aggregator is gone; ending the coordination")
            self._work_done = True

    async def _next_request(self, tag: str) -> tuple[str, Message | None]:
        """The next message (or departure) of any end of the control channel `tag`."""
        channel = self.cm.get_by_tag(tag)
        while True:
            ends = channel.all_ends()
            if not ends:
                await channel.await_join(1, POLL_SECONDS)
            elif (got := await channel.recv_any(ends, POLL_SECONDS)) is not None:
                return got

    async def coordinate(self) -> None:
        """Serve the next request of the top or a middle aggregator (or see an end leave)."""
        if self._work_done:
            return
        for tag in _SERVED:
            if tag not in self._listeners:
                self._listeners[tag] = asyncio.ensure_future(self._next_request(tag))
        limit = wait_seconds(self.config, UPSTREAM_TIMEOUT)
        done, _ = await asyncio.wait(
            self._listeners.values(), timeout=limit, return_when=asyncio.FIRST_COMPLETED
        )
        if not done:
            raise PeerWaitError(
                f"no request from an aggregator for {limit:g} s ({UPSTREAM_TIMEOUT})"
            )
        for tag, task in list(self._listeners.items()):
            if task.done():
                del self._listeners[tag]
                await self.serve(tag, *task.result())

    async def serve(self, tag: str, requester: str, message: Message | None) -> None:
        """Answer one message of `requester` on the control channel `tag`."""
        if message is None:
            return
        if tag == WITH_TOP and message.get(Key.EOT):
            self.log.info("the top aggregator ended the training")
            self._work_done = True
            return
        parsed = parse_request(message)
        channel_name, candidates = _SERVED[tag]
        if parsed is None or parsed[0] != channel_name:
            self.log.warning("malformed request ignored", requester=requester, channel=tag)
            return
        _, seq, states = parsed
        chosen = self.select(tag, requester, candidates, states)
        reply = {RES_COORDINATED_ENDS: {"seq": seq, "ends": chosen}}
        await self.cm.get_by_tag(tag).send(requester, reply)

    def select(
        self, tag: str, requester: str, candidates: str, states: Mapping[str, str]
    ) -> list[str]:
        """New ends for `requester` among those present on control channel `candidates`."""
        ends = {
            end: End(end, {END_STATE: states[end]} if end in states else {})
            for end in self.cm.get_by_tag(candidates).all_ends()
        }
        return self.selectors[tag].select(ends, {REQUESTER: requester, STATE: SEND})

    async def end_of_training(self) -> None:
        """Tell the middle aggregators and trainers that the coordination is over."""
        for tag in (WITH_MIDDLE, WITH_TRAINER):
            await self.cm.get_by_tag(tag).broadcast({Key.EOT: True})
        self.log.info("end of coordination sent", departed=self.departed)

    async def cleanup(self) -> None:
        for task in self._listeners.values():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await super().cleanup()

    def compose(self) -> None:
        self.compose_rounds(
            ("monitor", "coordinate"), setup=("await_ends",), finish=("end_of_training",)
        )
