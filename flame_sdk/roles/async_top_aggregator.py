"""Top aggregator of asynchronous FL (FedBuff): a new model version every `aggGoal` updates."""

from __future__ import annotations

import asyncio
from typing import Any

from flame_sdk.channels import SEND
from flame_sdk.roles.aggregator import run_sized
from flame_sdk.roles.base import Until
from flame_sdk.roles.top_aggregator import TopAggregator
from flame_sdk.roles.waits import ROUND_TIMEOUT, wait_seconds
from flame_sdk.wire import Key

IDLE_SECONDS = 0.05


class AsyncTopAggregator(TopAggregator):
    """Chain: ... >> loop(begin_version >> loop(distribute >> aggregate) >> finish_version >>
    train >> evaluate >> save_metrics >> inc_round) >> end_of_training >> save_params >> save_model.

    `distribute` sends the current model to ends that are not in flight (the selector, e.g.
    `fedbuff` with concurrency `c`, picks them); `aggregate` folds in the first update to arrive,
    with its `model_version` (staleness is the optimizer's business, e.g. `fedbuff`). After
    `hyperparameters.aggGoal` updates the version's result becomes the new global model.
    Updates that arrive after a version closed are folded into the next one. Ends in flight
    that send nothing for `roundTimeout` seconds (default 600) are no longer waited for (they
    get the current model again). Optimizers with a
    per-client protocol (`feddyn`, `scaffold`) and data samplers that steer the trainers
    (`fedbalancer`) need synchronous rounds and are refused.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.refuse_client_protocol("an async aggregator")
        self.refuse_datasampler("an async aggregator")
        self.agg_goal = max(1, int(self.config.hyperparameter("aggGoal", 1)))
        self._in_flight: set[str] = set()
        self._aggregation: Any = None

    async def begin_version(self) -> None:
        self.weights = self.get_weights()
        self._aggregation = self.optimizer.begin(self.weights, self._round)

    async def distribute(self) -> None:
        channel = await self.await_ends()
        assert self.weights is not None
        channel.set_property("round", self._round)
        self._in_flight &= set(channel.all_ends())
        fresh = [e for e in await channel.ends(SEND) if e not in self._in_flight]
        if fresh:
            self._in_flight.update(fresh)
            await channel.multicast(fresh, self._model_message())

    def _model_message(self) -> dict[str, Any]:
        return {Key.WEIGHTS: self.weights, Key.ROUND: self._round, Key.MODEL_VERSION: self._round}

    async def aggregate(self) -> None:
        channel = self.cm.get_by_tag("aggregate")
        waiting = sorted(self._in_flight)
        if not waiting:
            await asyncio.sleep(IDLE_SECONDS)
            return
        limit = wait_seconds(self.config, ROUND_TIMEOUT)
        got = await channel.recv_any(waiting, limit)
        if got is None:
            self.log.warning(
                "no update within roundTimeout; the silent ends are no longer in flight",
                ends=waiting,
                seconds=limit,
                round=self._round,
            )
            self._in_flight.difference_update(waiting)
            return
        end, message = got
        self._in_flight.discard(end)
        await self.fold(self._aggregation, end, message)

    def goal_reached(self) -> bool:
        return self._aggregation is not None and self._aggregation.count >= self.agg_goal

    async def finish_version(self) -> None:
        result = await run_sized(self._aggregation.base, self._aggregation.result)
        self.update_metrics({"updates": self._aggregation.count})
        if result is not None:
            self.weights = result
            self.set_weights(result)

    def compose(self) -> None:
        self.compose_rounds(
            (
                "begin_version",
                Until(self.goal_reached, "distribute", "aggregate"),
                "finish_version",
                "train",
                "evaluate",
                "save_metrics",
                "inc_round",
            ),
            setup=("load_base_model",),
            finish=("end_of_training", "save_params", "save_model"),
        )
