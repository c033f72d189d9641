"""Trainer (sync and async FL): fetch the global model, train, evaluate, upload the delta."""

from __future__ import annotations

from typing import Any, ClassVar

from flame_sdk.datasamplers import DefaultTrainerSampler, TrainerSampler
from flame_sdk.optimizers import ScaffoldTerm, create_optimizer
from flame_sdk.privacy import create_privacy
from flame_sdk.roles.aggregator_client import AggregatorClient
from flame_sdk.weights import subtract
from flame_sdk.wire import EXTRAS_PREFIX, STATE_PREFIX, Key, Message, pack_groups, unpack_groups


class Trainer(AggregatorClient):
    """Chain: internal_init >> load_data >> initialize >> loop(fetch >> train >> evaluate >>
    upload >> save_metrics), until the aggregator sends EOT (which carries the final model).

    Set `self.dataset_size` (the FedAvg weight) in `load_data` or `train`. With a torch model,
    add `self.regularizer_term()` to the loss to train with the optimizer's client term (FedProx,
    FedDyn, SCAFFOLD); numpy models use `self.regularizer.term` / `.gradient` against
    `self.weights`. Each new global model hands `self.regularizer` this trainer's coefficient
    and the server state (FedDyn alpha_i, SCAFFOLD omega_i and control; no coefficient in round 1,
    when the aggregator has not seen the dataset sizes yet, so the neutral default holds).
    `upload` sends the regularizer's extras (SCAFFOLD's control delta) with the delta.
    SCAFFOLD needs `self.learning_rate` (the local learning rate; train exactly `k` local steps).
    For the `oort` selector, set `self.stat_utility` in `train`, e.g. to
    `flame_sdk.selectors.statistical_utility(per_sample_losses, self.dataset_size)`; it is sent
    with every update while set.

    `self.datasampler` (the job's `datasampler`, see `flame_sdk.datasamplers`) picks the samples
    of a round. In `train`, every round: `idx = self.datasampler.sample(len(data))` first, then
    train on `data[idx]` only and set `self.dataset_size = len(idx)` (the samples this update
    learned from); in the first epoch `self.datasampler.record_losses(batch_idx, losses)` with
    the dataset positions of a batch and its per-sample losses, and after every batch
    `self.datasampler.record_batch_time(seconds)`. The `default` sampler returns every index and
    ignores the `record_*` calls, so one loop serves both sorts. Each new model hands the
    sampler the aggregator's metadata (ignored with a warning when malformed); `upload` sends
    the sampler's metadata with the delta when there is any.
    """

    func_tags: ClassVar[tuple[str, ...]] = ("fetch", "upload")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dataset_size = 0
        self.learning_rate: float | None = None
        self.stat_utility: float | None = None
        self.regularizer: Any = None
        self.privacy: Any = None
        self.datasampler: TrainerSampler = DefaultTrainerSampler()

    async def internal_init(self) -> None:
        await super().internal_init()
        cfg = self.config
        optimizer = create_optimizer(cfg.optimizer.sort or "fedavg", dict(cfg.optimizer.kwargs))
        self.regularizer = optimizer.regularizer
        self.privacy = create_privacy(cfg.privacy.sort or "default", dict(cfg.privacy.kwargs))
        self.datasampler = self.build_datasampler().trainer

    def accept_global(self, sender: str, message: Message) -> None:
        """Take the aggregator's message; a new model also brings the regularizer's inputs and
        the data sampler's metadata."""
        super().accept_global(sender, message)
        if self._fetched:
            coefficient = message.get(Key.COEFFICIENT)
            self.regularizer.receive(coefficient, unpack_groups(message, STATE_PREFIX))
            meta = message.get(Key.DATASAMPLER_METADATA)
            if meta is not None:
                try:
                    self.datasampler.handle_metadata_from_aggregator(meta)
                except ValueError as exc:
                    self.log.warning("datasampler metadata ignored", sender=sender, reason=str(exc))

    def regularizer_term(self, model: Any = None) -> Any:
        """The optimizer's client term for a torch `model` (default `self.model`), to add to the
        loss in `train`: a scalar tensor against the global weights this round started from,
        e.g. FedProx's `(mu/2)·‖w - w_t‖²` (zero for FedAvg). See `flame_sdk.torch_terms`."""
        if self.weights is None or self.regularizer is None:
            raise RuntimeError("regularizer_term is available in train(), after a model arrived")
        from flame_sdk.torch_terms import loss_term

        return loss_term(self.regularizer, self.model if model is None else model, self.weights)

    async def upload(self) -> None:
        """Send `local - fetched` (after privacy) with the sample count, model version, the
        regularizer's extras and, when set, the Oort statistical utility and the data sampler's
        metadata."""
        if self.weights is None:
            return
        local = self.get_weights()
        extras = self.regularizer.after_training(self.weights, local, self._learning_rate())
        delta = self.privacy.apply(subtract(local, self.weights, in_place=True))
        message: dict[str, Any] = {
            Key.WEIGHTS: delta,
            Key.DATASET_SIZE: int(self.dataset_size),
            Key.MODEL_VERSION: self._round,
            **pack_groups(EXTRAS_PREFIX, extras),
        }
        if self.stat_utility is not None:
            message[Key.STAT_UTILITY] = float(self.stat_utility)
        meta = self.datasampler.get_metadata()
        if meta:
            message[Key.DATASAMPLER_METADATA] = meta
        await self.send_upstream(message)

    def _learning_rate(self) -> float:
        """`self.learning_rate`; only SCAFFOLD's control update needs it (the others ignore it)."""
        if self.learning_rate is not None:
            return float(self.learning_rate)
        if isinstance(self.regularizer, ScaffoldTerm):
            raise RuntimeError(
                "scaffold needs the local learning rate: set self.learning_rate in the trainer"
            )
        return 0.0

    def compose(self) -> None:
        self.compose_rounds(
            ("fetch", "train", "evaluate", "upload", "save_metrics"),
            retry={"fetch": self.fetch_failed},
        )
