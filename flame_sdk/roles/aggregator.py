"""The half of a role that serves the ends below: distribute the model, aggregate the updates."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from flame_sdk.channels import SEND, Channel
from flame_sdk.config import ConfigError
from flame_sdk.datasamplers import SORTS, AggregatorSampler, DefaultAggregatorSampler
from flame_sdk.optimizers import Optimizer, create_optimizer
from flame_sdk.roles.base import Role
from flame_sdk.roles.waits import JOIN_TIMEOUT, ROUND_TIMEOUT, PeerWaitError, wait_seconds
from flame_sdk.selectors import ROUND_DURATION, STAT_UTILITY
from flame_sdk.weights import Weights, nbytes, weights_digest
from flame_sdk.wire import EXTRAS_PREFIX, STATE_PREFIX, Key, Message, pack_groups, unpack_groups

INLINE_BYTES = 1 << 20
"""Aggregation work on models smaller than this runs on the event loop: it takes less time than
handing it to a worker thread and back."""

T = TypeVar("T")


async def run_sized(weights: Weights, fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)`, in a worker thread when `weights` (the model it works on) is large."""
    if nbytes(weights) < INLINE_BYTES:
        return fn(*args)
    return await asyncio.to_thread(fn, *args)


def has_client_protocol(optimizer: Optimizer) -> bool:
    """Whether `optimizer` sends its trainers per-client coefficients or server state (FedDyn,
    SCAFFOLD): its math then holds only for trainers that report to it directly, in rounds."""
    cls = type(optimizer)
    return (
        cls.client_coefficients is not Optimizer.client_coefficients
        or cls.server_state is not Optimizer.server_state
    )


class Aggregator(Role):
    """The half of top and middle aggregators that serves the ends below them (trainers, or
    middle aggregators under a top): sends the global model to the selected ends on the
    `distribute` channel and aggregates the updates they send back on the `aggregate` channel.

    Hyperparameters: `minEnds` (ends to wait for before the first round, default 1; a
    per-role mapping is allowed), `joinTimeout` (seconds to wait for them, default 300; the
    rounds then go on with the ends present, and a role left without any end for that long
    ends with `PeerWaitError`), `roundTimeout` (seconds a round waits for updates, default
    600; it closes without the ends that did not answer).

    Per-client protocols: every end's dataset size is remembered from its accepted updates
    (positive sizes only; ends that left stay in the population). With those sizes the model
    message carries each end's `coefficient` (`optimizer.client_coefficients`, FedDyn alpha_i,
    SCAFFOLD omega_i), and always the optimizer's server state (`state.<name>` fields). Ends
    without a known size (everyone in round 1) get no coefficient and keep their neutral
    default: the sizes arrive with the first updates, not in an extra exchange before round 1.
    An update's `extras.<name>` fields go to `aggregation.add(..., extras=...)`. For Oort, an
    update's `stat_utility` and the seconds from sending that end the model to receiving its
    update (`round_duration`) become end properties of the distribute channel.

    Data sampler: `self.datasampler` is the aggregator half of the job's `datasampler`. Its
    metadata for a round goes with that round's model (when there is any), and an update's
    `datasampler_metadata` goes to it with the end's round duration; metadata it rejects is
    ignored with a warning.

    `fold_in_end_order` (a simulation sets it): a round's updates are folded in the order of
    their ends' ids rather than as they arrive (early ones are held until their turn), so that
    the sums, and thus the model, do not depend on thread timing.
    """

    fold_in_end_order = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.optimizer: Any = None
        self._ends: list[str] = []
        self._quorum_met = False
        self._sizes: dict[str, int] = {}
        self._sent_at: dict[str, float] = {}
        self.datasampler: AggregatorSampler = DefaultAggregatorSampler()

    async def internal_init(self) -> None:
        await super().internal_init()
        self.datasampler = self.build_datasampler().aggregator

    def refuse_client_protocol(self, role: str) -> None:
        """ConfigError when the job's optimizer has a per-client protocol this role cannot relay."""
        cfg = self.config
        sort = cfg.optimizer.sort or "fedavg"
        if has_client_protocol(create_optimizer(sort, dict(cfg.optimizer.kwargs))):
            raise ConfigError(
                f"optimizer '{sort}' needs a two-tier topology with synchronous rounds (trainers "
                f"reporting straight to a TopAggregator); {role} cannot carry its per-client "
                "coefficients and server state"
            )

    def refuse_datasampler(self, role: str) -> None:
        """ConfigError when the job's data sampler steers its trainers round by round, which
        `role` (sending models end by end, not in rounds) cannot do."""
        sort = self.config.datasampler.sort
        if sort in SORTS and sort != DefaultAggregatorSampler.sort:
            raise ConfigError(
                f"datasampler '{sort}' needs synchronous rounds (it steers the trainers from "
                f"each round's reports); {role} cannot run it"
            )

    async def await_ends(self, timeout: float | None = None) -> Channel:
        """Wait for at least one end; before the first round for `minEnds` (up to `joinTimeout`)."""
        channel = self.cm.get_by_tag("distribute")
        limit = wait_seconds(self.config, JOIN_TIMEOUT)
        if not self._quorum_met:
            wanted = int(self.config.hyperparameter("minEnds", 1) or 1)
            if not await channel.await_join(wanted, limit):
                have = len(channel.all_ends())
                self.log.warning("fewer ends than minEnds joined", wanted=wanted, have=have)
            self._quorum_met = True
        present = await channel.await_join(1, limit if timeout is None else timeout)
        if not present and timeout is None:
            raise PeerWaitError(
                f"no end on channel {channel.name!r} for {limit:g} s ({JOIN_TIMEOUT})"
            )
        return channel

    async def send_model(self, channel: Channel, weights: Weights) -> list[str]:
        """Send `weights` for the current round to the ends the selector picks."""
        channel.set_property("round", self._round)
        ends = await channel.ends(SEND)
        message: dict[str, Any] = {
            Key.WEIGHTS: weights,
            Key.ROUND: self._round,
            Key.MODEL_VERSION: self._round,
            **pack_groups(STATE_PREFIX, self.optimizer.server_state()),
            **self.model_fields(ends),
        }
        meta = self.datasampler.get_metadata(self._round, ends)
        if meta:
            message[Key.DATASAMPLER_METADATA] = meta
        coefficients = self.optimizer.client_coefficients(self._sizes) if self._sizes else {}
        self._sent_at = dict.fromkeys(ends, time.monotonic())
        if not coefficients:
            await channel.multicast(ends, message)
            return ends
        for end in ends:
            own = coefficients.get(end)
            await channel.send(end, message if own is None else {**message, Key.COEFFICIENT: own})
        return ends

    def model_fields(self, ends: list[str]) -> dict[str, Any]:
        """Fields a mode adds to the round's model message for `ends` (none by default)."""
        return {}

    async def fold(self, aggregation: Any, end: str, message: Message | None) -> int | None:
        """Add one update to `aggregation`; returns its sample count, None if it was skipped."""
        if message is None:
            self.log.info("end left before its update arrived", end=end, round=self._round)
            return None
        duration = self._round_duration(end)
        self._note_oort_properties(end, message, duration)
        self._note_datasampler_metadata(end, message, duration)
        delta = message.get(Key.WEIGHTS)
        size = int(message.get(Key.DATASET_SIZE) or 0)
        if delta is None:
            return None
        version = int(message.get(Key.MODEL_VERSION) or self._round)
        extras = unpack_groups(message, EXTRAS_PREFIX) or None
        try:
            await run_sized(delta, partial(aggregation.add, extras=extras), delta, size, version)
        except ValueError as exc:
            self.log.warning("update rejected", end=end, reason=str(exc))
            return None
        if size > 0:
            self._sizes[end] = size
        return size

    def _round_duration(self, end: str) -> float | None:
        """Seconds from sending `end` this round's model to now (None if it was not sent one)."""
        sent = self._sent_at.pop(end, None)
        return None if sent is None else time.monotonic() - sent

    def _note_oort_properties(self, end: str, message: Message, duration: float | None) -> None:
        """Oort's end properties: the update's `stat_utility` and this end's round duration."""
        channel = self.cm.get_by_tag("distribute")
        utility = message.get(Key.STAT_UTILITY)
        if utility is not None:
            channel.set_end_property(end, STAT_UTILITY, float(utility))
        if duration is not None:
            channel.set_end_property(end, ROUND_DURATION, duration)

    def _note_datasampler_metadata(
        self, end: str, message: Message, duration: float | None
    ) -> None:
        """Hand the update's data-sampler metadata to the aggregator half (warn if rejected)."""
        meta = message.get(Key.DATASAMPLER_METADATA)
        if meta is None:
            return
        try:
            self.datasampler.handle_metadata_from_trainer(meta, end, duration)
        except ValueError as exc:
            self.log.warning(
                "datasampler metadata ignored", end=end, round=self._round, reason=str(exc)
            )

    async def collect(self, ends: list[str], base: Weights) -> tuple[Weights | None, int, int]:
        """Aggregate this round's update of every end (stale ones skipped); (weights, Σn, count)."""
        channel = self.cm.get_by_tag("aggregate")
        aggregation = self.optimizer.begin(base, self._round)
        deadline = time.monotonic() + wait_seconds(self.config, ROUND_TIMEOUT)
        pending, total = dict.fromkeys(ends), 0
        turns = deque(sorted(pending) if self.fold_in_end_order else [])  # not folded yet, in order
        held: dict[str, Message | None] = {}  # arrived before their turn

        async def take(end: str, message: Message | None) -> None:
            nonlocal total
            if not turns:
                total += await self.fold(aggregation, end, message) or 0
                return
            held[end] = message
            while turns and turns[0] in held:
                first = turns.popleft()
                total += await self.fold(aggregation, first, held.pop(first)) or 0

        while pending:  # one arrival-ordered stream; again for the ends that sent a stale update
            stale: set[str] = set()
            remaining = max(0.0, deadline - time.monotonic())
            async for end, message in channel.recv_fifo(list(pending), timeout=remaining):
                if (
                    message is not None
                    and int(message.get(Key.MODEL_VERSION) or self._round) < self._round
                ):
                    self.log.info("stale update skipped", end=end, round=self._round)
                    stale.add(end)
                    continue
                del pending[end]
                await take(end, message)
            if pending.keys() - stale:
                self.log.warning(
                    "round deadline passed", round=self._round, missing=sorted(pending)
                )
                break
        for end in turns:  # the deadline passed: the held ones, still in order
            if end in held:
                total += await self.fold(aggregation, end, held.pop(end)) or 0
        result = await run_sized(base, aggregation.result)
        return result, total, aggregation.count

    async def end_of_training(self) -> None:
        """Tell every end that training is over; the message carries the final model."""
        channel = self.cm.get_by_tag("distribute")
        await channel.broadcast({Key.EOT: True, Key.WEIGHTS: self.weights, Key.ROUND: self._round})
        digest = None if self.weights is None else weights_digest(self.weights)
        self.log.info("end of training sent", ends=len(channel.all_ends()), digest=digest)
