"""Middle aggregator of 3-tier async FL (FedBuff): buffers its trainers, uploads to the top."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from flame_sdk.channels import SEND
from flame_sdk.optimizers import create_optimizer
from flame_sdk.roles.aggregator import Aggregator, run_sized
from flame_sdk.roles.aggregator_client import AggregatorClient
from flame_sdk.roles.base import OptionalUserMethods, Until
from flame_sdk.roles.waits import ROUND_TIMEOUT, wait_seconds
from flame_sdk.weights import subtract
from flame_sdk.wire import Key, Message

DEFAULT_TRAINER_WAIT_SECONDS = 60.0
IDLE_SECONDS = 0.05


class AsyncMiddleAggregator(OptionalUserMethods, AggregatorClient, Aggregator):
    """Chain: internal_init >> load_data >> initialize >> loop(fetch >> begin_buffer >>
    loop(distribute >> aggregate) >> upload >> evaluate >> save_metrics) >> end_of_training.

    For each global model (version r) fetched from the top it sends that model to its trainers
    that are not in flight (selector, e.g. `fedbuff` with `c`), folds in the first update to
    arrive with the FedBuff rule until `aggGoal` updates (a per-role mapping is allowed), then
    uploads `buffer result - global` with `DATASET_SIZE` = the sum of the buffered updates'
    sizes and `MODEL_VERSION` = r. Updates still in flight are folded into a later buffer.
    EOT from the top ends the work at once (even mid-buffer) and its final model is forwarded
    to the trainers. Without trainers for `trainerWaitTime` seconds (default 60) it uploads
    what it has (or an empty update) and waits for the next model. Trainers in flight that send
    nothing for `roundTimeout` seconds (default 600) are no longer waited for (they get the next
    model again). No `rounds` needed.
    A job whose optimizer has a per-client protocol (`feddyn`, `scaffold`) or whose data
    sampler steers the trainers (`fedbalancer`) is refused.
    """

    func_tags = ("fetch", "upload", "distribute", "aggregate")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.refuse_client_protocol("an async middle aggregator")
        self.refuse_datasampler("an async middle aggregator")
        self.agg_goal = max(1, int(self.config.hyperparameter("aggGoal", 1)))
        self._in_flight: set[str] = set()
        self._aggregation: Any = None
        self._examples = 0
        self._no_trainer = False
        self._watch: asyncio.Task[Message | None] | None = None
        self._early: Message | None = None

    async def internal_init(self) -> None:
        await super().internal_init()
        self.optimizer = create_optimizer("fedbuff", {})

    async def fetch(self) -> None:
        """Take the model the top sent while a buffer was open, else wait for the next one."""
        if self._early is None or self._aggregator is None:
            await super().fetch()
            return
        message, self._early = self._early, None
        self._fetched = False
        self.accept_global(self._aggregator, message)

    async def begin_buffer(self) -> None:
        """Open a buffer on the fetched model; watch the top for EOT while it fills."""
        assert self.weights is not None
        self._aggregation = self.optimizer.begin(self.weights, self._round)
        self._examples = 0
        self._no_trainer = False
        top = self.cm.get_by_tag("fetch")
        if self._aggregator is not None:
            self._watch = asyncio.ensure_future(top.recv(self._aggregator))

    async def distribute(self) -> None:
        """Send the buffer's model to the trainers that are not in flight."""
        assert self.weights is not None
        wait = float(self.config.hyperparameter("trainerWaitTime", DEFAULT_TRAINER_WAIT_SECONDS))
        channel = await self.await_ends(timeout=wait)
        if channel.empty():
            self.log.warning("no trainer joined; buffer closed", round=self._round)
            self._no_trainer = True
            return
        channel.set_property("round", self._round)
        self._in_flight &= set(channel.all_ends())
        fresh = [e for e in await channel.ends(SEND) if e not in self._in_flight]
        if fresh:
            self._in_flight.update(fresh)
            message: dict[str, Any] = {
                Key.WEIGHTS: self.weights,
                Key.ROUND: self._round,
                Key.MODEL_VERSION: self._round,
            }
            await channel.multicast(fresh, message)

    async def aggregate(self) -> None:
        """Fold in the first trainer update to arrive, unless the top speaks first."""
        channel = self.cm.get_by_tag("aggregate")
        waiting = sorted(self._in_flight)
        limit = wait_seconds(self.config, ROUND_TIMEOUT)
        update = asyncio.ensure_future(
            channel.recv_any(waiting, limit) if waiting else asyncio.sleep(IDLE_SECONDS)
        )
        watched = [self._watch] if self._watch is not None else []
        await asyncio.wait([update, *watched], return_when=asyncio.FIRST_COMPLETED)
        if not update.done():
            update.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await update
        elif (got := update.result()) is not None:
            end, message = got
            self._in_flight.discard(end)
            self._examples += await self.fold(self._aggregation, end, message) or 0
        elif waiting:
            self.log.warning(
                "no update within roundTimeout; the silent ends are no longer in flight",
                ends=waiting,
                seconds=limit,
                round=self._round,
            )
            self._in_flight.difference_update(waiting)
        if self._watch is not None and self._watch.done():
            self._from_top(self._watch.result())

    def _from_top(self, message: Message | None) -> None:
        """The top spoke while the buffer was open: EOT ends the work, a model is kept for later."""
        self._watch = None
        if message is None:
            self.log.warning("top aggregator left while the buffer was open", round=self._round)
        elif message.get(Key.EOT):
            assert self._aggregator is not None
            self.accept_global(self._aggregator, message)
        else:
            self._early = message

    def buffer_closed(self) -> bool:
        return (
            self._aggregation.count >= self.agg_goal
            or self._no_trainer
            or self._work_done
            or self._early is not None
        )

    async def upload(self) -> None:
        """Send `result - global` with the buffered updates' total size (nothing after EOT)."""
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        if self._work_done:
            return
        assert self.weights is not None
        count = self._aggregation.count
        aggregation = self._aggregation
        result = await run_sized(aggregation.base, aggregation.result) if count else None
        delta = None if result is None else subtract(result, self.weights)
        self.update_metrics({"updates": count, "examples": self._examples})
        await self.send_upstream(
            {Key.WEIGHTS: delta, Key.DATASET_SIZE: self._examples, Key.MODEL_VERSION: self._round}
        )

    async def cleanup(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        await super().cleanup()

    def compose(self) -> None:
        self.compose_rounds(
            (
                "fetch",
                "begin_buffer",
                Until(self.buffer_closed, "distribute", "aggregate"),
                "upload",
                "evaluate",
                "save_metrics",
            ),
            finish=("end_of_training",),
            retry={"fetch": self.fetch_failed},
        )
