"""The data-sampler port: a trainer half picks the samples of a round, an aggregator half steers."""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike

JSONScalar = float | int | str | bool | None
Metadata = dict[str, JSONScalar]
"""Sampler metadata: plain JSON scalars, carried in the `datasampler_metadata` message field."""


class TrainerSampler(abc.ABC):
    """The trainer half. Per round: `sample` first, then `record_*` while training, then
    `get_metadata` for the upload; `handle_metadata_from_aggregator` with each new model."""

    sort: ClassVar[str]

    @abc.abstractmethod
    def sample(self, num_samples: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """Sorted int64 indices into a dataset of `num_samples` to train on this round
        (`rng` overrides the sampler's own generator)."""

    @abc.abstractmethod
    def record_losses(self, indices: ArrayLike, losses: ArrayLike) -> None:
        """Per-sample losses of the samples at dataset positions `indices` (first epoch)."""

    @abc.abstractmethod
    def record_batch_time(self, seconds: float) -> None:
        """The wall time of one training batch."""

    @abc.abstractmethod
    def get_metadata(self) -> Metadata:
        """What to send up with this round's update."""

    @abc.abstractmethod
    def handle_metadata_from_aggregator(self, meta: Mapping[str, Any]) -> None:
        """Take the metadata that came down with the model."""


class AggregatorSampler(abc.ABC):
    """The aggregator half: folds in the trainers' metadata, computes what goes down."""

    sort: ClassVar[str]

    @abc.abstractmethod
    def get_metadata(self, round: int, selected_ends: Sequence[str]) -> Metadata:
        """What to send down with round `round`'s model to `selected_ends`."""

    @abc.abstractmethod
    def handle_metadata_from_trainer(
        self, meta: Mapping[str, Any], end: str, round_duration: float | None
    ) -> None:
        """Take one trainer's metadata; `round_duration` is the seconds from sending it the
        model to receiving its update (None when unknown)."""


@dataclass(frozen=True)
class DataSampler:
    """Both halves of one sort: a trainer uses `.trainer`, an aggregator `.aggregator`."""

    trainer: TrainerSampler
    aggregator: AggregatorSampler


def number(meta: Mapping[str, Any], key: str, who: str) -> float:
    """`meta[key]` as a finite float; ValueError naming `who` and the field otherwise."""
    if key not in meta:
        raise ValueError(f"{who}: metadata lacks {key!r}")
    value = meta[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{who}: metadata {key!r} must be a finite number, got {value!r}")
    return float(value)
