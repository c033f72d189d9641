"""`default`: train on every sample, exchange no metadata."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike

from flame_sdk.datasamplers.base import AggregatorSampler, DataSampler, Metadata, TrainerSampler


class DefaultTrainerSampler(TrainerSampler):
    """Identity: all indices; the recording calls are accepted and ignored."""

    sort: ClassVar[str] = "default"

    def sample(self, num_samples: int, rng: np.random.Generator | None = None) -> np.ndarray:
        return np.arange(num_samples, dtype=np.int64)

    def record_losses(self, indices: ArrayLike, losses: ArrayLike) -> None:
        pass

    def record_batch_time(self, seconds: float) -> None:
        pass

    def get_metadata(self) -> Metadata:
        return {}

    def handle_metadata_from_aggregator(self, meta: Mapping[str, Any]) -> None:
        pass


class DefaultAggregatorSampler(AggregatorSampler):
    """Sends nothing down and ignores what comes up."""

    sort: ClassVar[str] = "default"

    def get_metadata(self, round: int, selected_ends: Sequence[str]) -> Metadata:
        return {}

    def handle_metadata_from_trainer(
        self, meta: Mapping[str, Any], end: str, round_duration: float | None
    ) -> None:
        pass


def default_sampler() -> DataSampler:
    """Both identity halves."""
    return DataSampler(DefaultTrainerSampler(), DefaultAggregatorSampler())
