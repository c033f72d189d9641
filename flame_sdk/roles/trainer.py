"""Trainer (sync and async FL): fetch the global model, train, evaluate, upload the delta."""

from __future__ import annotations

from typing import Any

from flame_sdk.composer import Loop, Tasklet
from flame_sdk.optimizers import create_optimizer
from flame_sdk.privacy import create_privacy
from flame_sdk.roles.upstream import Upstream
from flame_sdk.weights import subtract
from flame_sdk.wire import Key


class Trainer(Upstream):
    """Chain: internal_init >> load_data >> initialize >> loop(fetch >> train >> evaluate >>
    upload >> save_metrics), until the aggregator sends EOT (which carries the final model).

    Set `self.dataset_size` (the FedAvg weight) in `load_data` or `train`. With a torch model,
    add `self.regularizer_term()` to the loss to train with the optimizer's client term (FedProx).
    """

    func_tags = ("fetch", "upload")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dataset_size = 0
        self.regularizer: Any = None
        self.privacy: Any = None

    async def internal_init(self) -> None:
        await super().internal_init()
        cfg = self.config
        optimizer = create_optimizer(cfg.optimizer.sort or "fedavg", dict(cfg.optimizer.kwargs))
        self.regularizer = optimizer.regularizer
        self.privacy = create_privacy(cfg.privacy.sort or "default", dict(cfg.privacy.kwargs))

    def regularizer_term(self, model: Any = None) -> Any:
        """The optimizer's client term for a torch `model` (default `self.model`), to add to the
        loss in `train`: a scalar tensor against the global weights this round started from,
        e.g. FedProx's `(mu/2)·‖w - w_t‖²` (zero for FedAvg). See `flame_sdk.torch_terms`."""
        if self.weights is None or self.regularizer is None:
            raise RuntimeError("regularizer_term is available in train(), after a model arrived")
        from flame_sdk.torch_terms import loss_term

        return loss_term(self.regularizer, self.model if model is None else model, self.weights)

    async def upload(self) -> None:
        """Send `local - fetched` (after privacy) with the sample count and model version."""
        if self.weights is None:
            return
        delta = self.privacy.apply(subtract(self.get_weights(), self.weights, in_place=True))
        await self.send_upstream(
            {
                Key.WEIGHTS: delta,
                Key.DATASET_SIZE: int(self.dataset_size),
                Key.MODEL_VERSION: self._round,
            }
        )

    def compose(self) -> None:
        with self.composer:
            init = Tasklet("internal_init", self.internal_init)
            load = Tasklet("load_data", self.load_data)
            initialize = Tasklet("initialize", self.initialize)
            fetch = Tasklet("fetch", self.fetch)
            fetch.set_continue_fn(self.fetch_failed)
            train = Tasklet("train", self.train)
            evaluate = Tasklet("evaluate", self.evaluate)
            upload = Tasklet("upload", self.upload)
            save = Tasklet("save_metrics", self.save_metrics)
            loop = Loop(lambda: self._work_done)
            init >> load >> initialize >> loop(fetch >> train >> evaluate >> upload >> save)
