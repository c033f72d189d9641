"""Top aggregator of synchronous FL: one round = distribute, aggregate, train, evaluate."""

from __future__ import annotations

from typing import Any

from flame_sdk.optimizers import create_optimizer
from flame_sdk.roles.aggregator import Aggregator


class TopAggregator(Aggregator):
    """Chain: internal_init >> load_data >> initialize >> loop(distribute >> aggregate >> train
    >> evaluate >> save_metrics >> inc_round) >> end_of_training >> save_params >> save_model.

    Runs `hyperparameters.rounds` rounds; the final model is saved to the registry as
    `"<job name>-<job id>"` and sent to every trainer with EOT.
    """

    func_tags = ("distribute", "aggregate")
    job_level = True  # its evaluation of the global model is the job's curve

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dataset: Any = None
        self._rounds = int(self.config.hyperparameters["rounds"])

    @property
    def rounds(self) -> int:
        return self._rounds

    async def internal_init(self) -> None:
        await super().internal_init()
        cfg = self.config
        self.optimizer = create_optimizer(
            cfg.optimizer.sort or "fedavg", dict(cfg.optimizer.kwargs)
        )
        self._work_done = self._round > self._rounds

    async def distribute(self) -> None:
        channel = await self.await_ends()
        self.weights = self.get_weights()
        self._ends = await self.send_model(channel, self.weights)

    async def aggregate(self) -> None:
        assert self.weights is not None
        result, total, count = await self.collect(self._ends, self.weights)
        self.update_metrics({"updates": count, "examples": total})
        if result is None:
            self.log.warning("no update this round; model unchanged", round=self._round)
            return
        self.weights = result
        self.set_weights(result)

    async def inc_round(self) -> None:
        self._round += 1
        self._work_done = self._round > self._rounds
        self.cm.get_by_tag("distribute").set_property("round", self._round)

    async def save_params(self) -> None:
        await self.call_registry("save_params", dict(self.config.hyperparameters))

    async def save_model(self) -> None:
        if self.weights is None:
            return
        name = f"{self.config.job.name}-{self.config.job.id}"
        await self.call_registry("save_model", name, self.weights, self.model)

    def compose(self) -> None:
        self.compose_rounds(
            ("distribute", "aggregate", "train", "evaluate", "save_metrics", "inc_round"),
            setup=("load_base_model",),
            finish=("end_of_training", "save_params", "save_model"),
        )
