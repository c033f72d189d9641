"""Middle aggregator of hierarchical sync FL: trainer to its parent, aggregator to its group."""

from __future__ import annotations

from typing import Any

from flame_sdk.optimizers import create_optimizer
from flame_sdk.roles.aggregator import Aggregator
from flame_sdk.roles.aggregator_client import AggregatorClient
from flame_sdk.roles.base import OptionalUserMethods
from flame_sdk.weights import subtract
from flame_sdk.wire import Key

DEFAULT_TRAINER_WAIT_SECONDS = 60.0


class MiddleAggregator(OptionalUserMethods, AggregatorClient, Aggregator):
    """Chain: internal_init >> load_data >> initialize >> loop(fetch >> distribute >> aggregate
    >> upload >> evaluate >> save_metrics) >> end_of_training.

    Aggregates its trainers with FedAvg (any stateful server optimizer belongs to the top) and
    uploads `aggregate - global` weighted by the group's total sample count, so the top's FedAvg
    equals a flat FedAvg over every trainer. Without trainers for `trainerWaitTime` seconds
    (default 60) it uploads an empty update and waits for the next model. The user methods are
    optional here; `model` may stay None. A job whose optimizer has a per-client protocol
    (`feddyn`, `scaffold`) is refused with a ConfigError: it needs a two-tier topology.
    The aggregator half of the job's data sampler steers this aggregator's own trainers; no
    sampler metadata goes upstream, and any the top sends down is ignored.
    """

    func_tags = ("fetch", "upload", "distribute", "aggregate")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.refuse_client_protocol("a middle aggregator")
        self._update: dict[str, Any] | None = None
        self._skip_round = False

    async def internal_init(self) -> None:
        await super().internal_init()
        self.optimizer = create_optimizer("fedavg", {})

    async def distribute(self) -> None:
        assert self.weights is not None
        wait = float(self.config.hyperparameter("trainerWaitTime", DEFAULT_TRAINER_WAIT_SECONDS))
        self._skip_round = False
        channel = await self.await_ends(timeout=wait)
        if channel.empty():
            self.log.warning("no trainer joined; empty update sent", round=self._round)
            await self.send_upstream(
                {Key.WEIGHTS: None, Key.DATASET_SIZE: 0, Key.MODEL_VERSION: self._round}
            )
            self._skip_round = True
            return
        self._ends = await self.send_model(channel, self.weights)

    def no_trainer(self) -> bool:
        return self._skip_round

    async def aggregate(self) -> None:
        assert self.weights is not None
        result, total, count = await self.collect(self._ends, self.weights)
        self.update_metrics({"updates": count, "examples": total})
        delta = None if result is None else subtract(result, self.weights)
        self._update = {Key.WEIGHTS: delta, Key.DATASET_SIZE: total, Key.MODEL_VERSION: self._round}

    async def upload(self) -> None:
        if self._update is not None:
            await self.send_upstream(self._update)
            self._update = None

    def compose(self) -> None:
        self.compose_rounds(
            ("fetch", "distribute", "aggregate", "upload", "evaluate", "save_metrics"),
            finish=("end_of_training",),
            retry={"fetch": self.fetch_failed, "distribute": self.no_trainer},
        )
