"""Data samplers through the roles: metadata down with the model, up with the update."""

from __future__ import annotations

import uuid
from pathlib import Path
from statistics import fmean
from typing import Any

import numpy as np
import pytest
from structlog.testing import capture_logs

from flame_sdk.config import Config, ConfigError
from flame_sdk.datasamplers import (
    DefaultAggregatorSampler,
    DefaultTrainerSampler,
    FedBalancerAggregator,
    FedBalancerTrainer,
    Metadata,
)
from flame_sdk.optimizers import Regularizer
from flame_sdk.roles import (
    AsyncMiddleAggregator,
    AsyncTopAggregator,
    MiddleAggregator,
    TopAggregator,
    Trainer,
)
from flame_sdk.simulation import JobOverrides, expand, run_roles
from flame_sdk.wire import Key, Message
from tests.sdk.helpers import task_config

N = 60
"""Samples per trainer."""
SCALES = {"t1": 1.0, "t2": 1.5, "t3": 2.0}
BATCH = 4
BATCH_SECONDS = 2.0
"""Recorded per batch, never slept: any deadline of a few seconds covers fewer samples than
`N`, so the loss threshold alone decides a selection."""
LSS = 0.25
FEDBALANCER = {"sort": "fedbalancer", "kwargs": {"w": 1, "lss": LSS}}
HIERARCHICAL = Path(__file__).resolve().parents[2] / "examples" / "hierarchical"


def _losses(end: str, round: int) -> np.ndarray:
    """The per-sample losses of `end` in `round`: fixed per sample, falling as 1/round²."""
    return np.linspace(1.0, 2.0, N) * SCALES.get(end, 1.0) / round**2


class SamplingTrainer(Trainer):
    """Trains on the sampler's pick and records what it fetched, sampled and was steered by."""

    def initialize(self) -> None:
        self.model = {"w": np.zeros(2)}
        self.fetched: list[dict[str, Any]] = []  # every message's fields but the weights
        self.picked: list[np.ndarray] = []
        self.steering: list[tuple[int, float, float | None]] = []  # round, LT, deadline

    def load_data(self) -> None:
        """The N samples are implicit: `_losses` gives their losses."""

    def accept_global(self, sender: str, message: Message) -> None:
        self.fetched.append({k: v for k, v in message.items() if k != Key.WEIGHTS})
        super().accept_global(sender, message)

    def train(self) -> None:
        sampler = self.datasampler
        if isinstance(sampler, FedBalancerTrainer):
            self.steering.append((self.round, sampler.loss_threshold, sampler.deadline))
        idx = sampler.sample(N)
        losses = _losses(self.config.taskid, self.round)
        for start in range(0, len(idx), BATCH):
            batch = idx[start : start + BATCH]
            sampler.record_losses(batch, losses[batch])
            sampler.record_batch_time(BATCH_SECONDS)
        self.model["w"] = self.model["w"] + 1.0
        self.dataset_size = len(idx)
        self.picked.append(idx)

    def evaluate(self) -> None:
        """Nothing to evaluate."""


class MisreportingSampler(FedBalancerTrainer):
    """Reports a negative `selected_len`, which the aggregator half rejects."""

    def get_metadata(self) -> Metadata:
        return {**super().get_metadata(), "selected_len": -1}


class MisreportingTrainer(SamplingTrainer):
    async def internal_init(self) -> None:
        await super().internal_init()
        self.datasampler = MisreportingSampler(p=1.0, noise_factor=0.0, epochs=1, batch_size=BATCH)


class RecordingAggregator(TopAggregator):
    """Records every update's fields and, per round, the sampler metadata it sent down."""

    def initialize(self) -> None:
        self.model = {"w": np.zeros(2)}
        self.folded: list[tuple[int, str, dict[str, Any]]] = []
        self.sent: list[dict[str, Any]] = []

    def load_data(self) -> None:
        """No data."""

    def train(self) -> None:
        """No server training."""

    def evaluate(self) -> None:
        """Nothing to evaluate."""

    async def distribute(self) -> None:
        await super().distribute()
        sampler = self.datasampler
        if isinstance(sampler, FedBalancerAggregator):
            self.sent.append(
                {"loss_threshold": sampler.loss_threshold, "deadline": sampler.deadline}
            )

    async def fold(self, aggregation: Any, end: str, message: Message | None) -> int | None:
        if message is not None:
            fields = {k: v for k, v in message.items() if k != Key.WEIGHTS}
            self.folded.append((self.round, end, {**fields, Key.WEIGHTS: None}))
        return await super().fold(aggregation, end, message)


class Region(MiddleAggregator):
    """A plain middle aggregator."""


async def _run(
    datasampler: dict[str, Any] | None,
    rounds: int,
    trainer_classes: dict[str, type[SamplingTrainer]] | None = None,
) -> tuple[RecordingAggregator, list[SamplingTrainer], list[dict[str, Any]]]:
    job = uuid.uuid4().hex
    hp = {"rounds": rounds, "epochs": 1, "batchSize": BATCH, "minEnds": len(SCALES)}
    common: dict[str, Any] = {"hyperparameters": hp}
    if datasampler is not None:
        common["datasampler"] = datasampler
    classes = trainer_classes or {}
    with capture_logs() as logs:
        agg = RecordingAggregator(Config.load(task_config("aggregator", "agg", job, **common)))
        trainers = [
            classes.get(end, SamplingTrainer)(
                Config.load(task_config("trainer", end, job, **common))
            )
            for end in SCALES
        ]
        await run_roles([agg, *trainers], timeout=60)
    return agg, trainers, logs


def _models(trainer: SamplingTrainer) -> list[dict[str, Any]]:
    return [f for f in trainer.fetched if not f.get(Key.EOT)]


async def test_fedbalancer_metadata_travels_both_ways_and_steers_the_selection() -> None:
    rounds = 4
    agg, trainers, _ = await _run(FEDBALANCER, rounds)
    sampler = agg.datasampler
    assert isinstance(sampler, FedBalancerAggregator)
    assert [h["updates"] for h in agg.metrics_history] == [3] * rounds

    # down: round 1 has no deadline; from round 2 the trainers get (and use) the steering
    assert agg.sent[0] == {"loss_threshold": 0.0, "deadline": None}
    assert all(m["deadline"] is not None and m["deadline"] >= 1 for m in agg.sent[1:])
    assert agg.sent[1]["loss_threshold"] == min(_losses(end, 1).min() for end in SCALES)
    third = [_losses(end, 3) for end in SCALES]  # ltr = lss once the benefit dropped
    low, high = min(x.min() for x in third), fmean(float(np.percentile(x, 80)) for x in third)
    assert agg.sent[3]["loss_threshold"] == pytest.approx(low + (high - low) * LSS)
    for trainer in trainers:
        assert [m[Key.DATASAMPLER_METADATA] for m in _models(trainer)] == agg.sent
        assert trainer.steering == [
            (r + 1, m["loss_threshold"], m["deadline"]) for r, m in enumerate(agg.sent)
        ]

    # selection: everything until the threshold rises, then exactly the samples over it
    threshold = agg.sent[3]["loss_threshold"]
    for trainer in trainers:
        end = trainer.config.taskid
        over = np.flatnonzero(_losses(end, 3) >= threshold)
        assert [len(idx) for idx in trainer.picked[:3]] == [N] * 3
        np.testing.assert_array_equal(trainer.picked[3], over)
    assert len(trainers[0].picked[3]) == 34 < N  # t1 shrank
    examples = [sum(len(t.picked[r]) for t in trainers) for r in range(rounds)]
    assert [h["examples"] for h in agg.metrics_history] == examples

    # up: every update's metadata reached the aggregator half's per-end history
    for trainer in trainers:
        end = trainer.config.taskid
        ups = [fields[Key.DATASAMPLER_METADATA] for _, e, fields in agg.folded if e == end]
        assert [m["selected_len"] for m in ups] == [len(idx) for idx in trainer.picked]
        durations = [(len(idx) // BATCH + 1) * BATCH_SECONDS for idx in trainer.picked]
        assert [m["epoch_train_duration"] for m in ups] == durations
        assert list(sampler._epoch_times[end]) == durations
        assert sampler._last_duration[end] > 0


async def test_default_sampler_leaves_the_messages_unchanged() -> None:
    agg, trainers, logs = await _run(None, 2)
    assert isinstance(agg.datasampler, DefaultAggregatorSampler)
    for trainer in trainers:
        assert isinstance(trainer.datasampler, DefaultTrainerSampler)
        assert [set(m) for m in _models(trainer)] == [{Key.ROUND, Key.MODEL_VERSION}] * 2
        assert [len(idx) for idx in trainer.picked] == [N, N]
    assert len(agg.folded) == 6
    for _, _, fields in agg.folded:
        assert set(fields) == {Key.WEIGHTS, Key.DATASET_SIZE, Key.MODEL_VERSION}
    assert not [x for x in logs if x["event"] == "datasampler metadata ignored"]


async def test_malformed_metadata_from_a_trainer_is_logged_and_ignored() -> None:
    agg, _, logs = await _run(FEDBALANCER, 2, {"t3": MisreportingTrainer})
    assert [h["updates"] for h in agg.metrics_history] == [3, 3]
    ignored = [x for x in logs if x["event"] == "datasampler metadata ignored"]
    assert [(x["end"], x["round"], x["log_level"]) for x in ignored] == [
        ("t3", 1, "warning"),
        ("t3", 2, "warning"),
    ]
    assert all("selected_len" in x["reason"] for x in ignored)
    sampler = agg.datasampler
    assert isinstance(sampler, FedBalancerAggregator)
    assert set(sampler._epoch_times) == {"t1", "t2"}


def test_malformed_metadata_from_the_aggregator_is_logged_and_ignored() -> None:
    config = Config.load(task_config("trainer", "t1", datasampler=FEDBALANCER))
    trainer = SamplingTrainer(config)
    trainer.initialize()
    trainer.regularizer = Regularizer()
    trainer.datasampler = trainer.build_datasampler().trainer
    sampler = trainer.datasampler
    assert isinstance(sampler, FedBalancerTrainer)
    model = {"w": np.ones(2)}
    bad = {Key.WEIGHTS: model, Key.ROUND: 2, Key.DATASAMPLER_METADATA: {"loss_threshold": 0.5}}
    with capture_logs() as logs:
        trainer.accept_global("agg", bad)
    assert [(x["event"], x["log_level"]) for x in logs] == [
        ("datasampler metadata ignored", "warning")
    ]
    assert "'deadline'" in logs[0]["reason"]
    assert (sampler.loss_threshold, sampler.deadline) == (0.0, None)
    assert trainer.round == 2 and trainer.weights is model  # the model itself was taken
    good = {**bad, Key.DATASAMPLER_METADATA: {"loss_threshold": 0.5, "deadline": 3.0}}
    trainer.accept_global("agg", good)
    assert (sampler.loss_threshold, sampler.deadline) == (0.5, 3.0)


def _hierarchical(overrides: JobOverrides, role: str) -> list[Config]:
    return [
        Config.load({**config, "datasampler": FEDBALANCER})
        for config in expand(HIERARCHICAL, overrides)
        if config["role"] == role
    ]


def _region(role: Trainer | MiddleAggregator) -> str:
    return (role.config.group_association or {})["param-channel"]


class AsyncTop(AsyncTopAggregator):
    def initialize(self) -> None:
        self.model = {"w": np.zeros(2)}

    def load_data(self) -> None:
        """No data."""

    def train(self) -> None:
        """No server training."""

    def evaluate(self) -> None:
        """Nothing to evaluate."""


class AsyncRegion(AsyncMiddleAggregator):
    """A plain async middle aggregator."""


def test_async_aggregators_refuse_a_steering_datasampler() -> None:
    message = "datasampler 'fedbalancer' needs synchronous rounds"
    with pytest.raises(ConfigError, match=f"{message}.*an async aggregator"):
        AsyncTop(Config.load(task_config("aggregator", "agg", datasampler=FEDBALANCER)))
    (middle, _) = _hierarchical(JobOverrides(), "middle-aggregator")
    with pytest.raises(ConfigError, match=f"{message}.*an async middle aggregator"):
        AsyncRegion(middle)
    AsyncTop(Config.load(task_config("aggregator", "agg", datasampler={"sort": "default"})))
    RecordingAggregator(Config.load(task_config("aggregator", "agg", datasampler=FEDBALANCER)))


async def test_a_middle_aggregator_steers_its_trainers_and_sends_nothing_up() -> None:
    hp = {"rounds": 2, "epochs": 1, "batchSize": BATCH}
    overrides = JobOverrides(job_id=f"sim-{uuid.uuid4().hex[:8]}", hyperparameters=hp)
    (top,) = [RecordingAggregator(c) for c in _hierarchical(overrides, "top-aggregator")]
    middles = [Region(c) for c in _hierarchical(overrides, "middle-aggregator")]
    trainers = [SamplingTrainer(c) for c in _hierarchical(overrides, "trainer")]
    await run_roles([top, *middles, *trainers], timeout=60)

    assert [h["updates"] for h in top.metrics_history] == [2, 2]
    assert all(Key.DATASAMPLER_METADATA not in fields for _, _, fields in top.folded)
    top_sampler = top.datasampler
    assert isinstance(top_sampler, FedBalancerAggregator) and not top_sampler._epoch_times
    for trainer in trainers:
        down = [m[Key.DATASAMPLER_METADATA] for m in _models(trainer)]
        assert down[0] == {"loss_threshold": 0.0, "deadline": None}
        assert down[1]["deadline"] is not None
    for middle in middles:
        sampler = middle.datasampler
        assert isinstance(sampler, FedBalancerAggregator)
        group = {t.config.taskid for t in trainers if _region(t) == _region(middle)}
        assert len(group) == 2 and set(sampler._epoch_times) == group
