"""`fedbalancer`: train on the samples still worth learning from, under a steered deadline.

Framework-free (numpy only): the user feeds the trainer half per-sample losses and per-batch
times; see README.md for the formulas and the deviations from Flame.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import fmean
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike

from flame_sdk.datasamplers.base import (
    AggregatorSampler,
    DataSampler,
    Metadata,
    TrainerSampler,
    number,
)

HISTORY = 5
"""Timings kept per end: its last HISTORY reports (as the FedBalancer authors do)."""

LOSS_HIGH_PERCENTILE = 80
_TRAINER = "fedbalancer trainer"
_AGGREGATOR = "fedbalancer aggregator"


class FedBalancerTrainer(TrainerSampler):
    """Picks the round's samples by loss threshold and deadline; reports loss statistics."""

    sort: ClassVar[str] = "fedbalancer"

    def __init__(
        self,
        *,
        p: float,
        noise_factor: float,
        epochs: int,
        batch_size: int,
        seed: int | None = None,
    ) -> None:
        self.p = p
        self.noise_factor = noise_factor
        self.epochs = epochs
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)
        self.loss_threshold = 0.0
        self.deadline: float | None = None
        self._losses: np.ndarray | None = None  # NaN until a loss is recorded
        self._selected = np.empty(0, np.int64)
        self._time_sum, self._time_count = 0.0, 0
        self._round_time_sum, self._round_time_count = 0.0, 0

    def sample(self, num_samples: int, rng: np.random.Generator | None = None) -> np.ndarray:
        if num_samples < 0:
            raise ValueError(f"{_TRAINER}: num_samples must not be negative, got {num_samples}")
        if self._losses is None:
            self._losses = np.full(num_samples, np.nan)
            selected = np.arange(num_samples, dtype=np.int64)
        elif len(self._losses) != num_samples:
            raise ValueError(
                f"{_TRAINER}: the dataset had {len(self._losses)} samples, now {num_samples}"
            )
        else:
            selected = self._select(self._losses, self.rng if rng is None else rng)
        self._selected = selected
        self._round_time_sum, self._round_time_count = 0.0, 0
        return selected.copy()

    def max_trainable(self) -> int | None:
        """Samples trainable for `epochs` within the deadline; None = no limit (no deadline yet
        or no batch time measured)."""
        if self.deadline is None or self._time_count == 0 or self._time_sum <= 0:
            return None
        mean_batch_time = self._time_sum / self._time_count
        batches = self.deadline / (self.epochs * mean_batch_time) - 1
        return int(batches * self.batch_size - 1)

    def _select(self, losses: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        total = len(losses)
        limit = self.max_trainable()
        if limit is None or limit > total:
            return np.arange(total, dtype=np.int64)
        is_under = losses < self.loss_threshold  # an unknown (NaN) loss counts as over
        under, over = np.flatnonzero(is_under), np.flatnonzero(~is_under)
        wanted = min(max(limit, len(over), 1), total)
        n_under = min(int(wanted * (1 - self.p)), len(under))
        n_under = max(n_under, wanted - len(over))  # a short set is topped up from the other
        picked = np.concatenate(
            [
                rng.choice(under, n_under, replace=False),
                rng.choice(over, wanted - n_under, replace=False),
            ]
        )
        return np.sort(picked).astype(np.int64)

    def record_losses(self, indices: ArrayLike, losses: ArrayLike) -> None:
        if self._losses is None:
            raise RuntimeError(f"{_TRAINER}: call sample() before record_losses()")
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        values = np.asarray(losses, dtype=np.float64).reshape(-1)
        if idx.shape != values.shape:
            raise ValueError(
                f"{_TRAINER}: {idx.size} indices but {values.size} losses in record_losses()"
            )
        if idx.size and (idx.min() < 0 or idx.max() >= len(self._losses)):
            raise ValueError(
                f"{_TRAINER}: record_losses() indices must lie in [0, {len(self._losses)})"
            )
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{_TRAINER}: record_losses() got a non-finite loss")
        self._losses[idx] = values

    def record_batch_time(self, seconds: float) -> None:
        if not (math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"{_TRAINER}: a batch time must be finite and >= 0, got {seconds}")
        self._time_sum += seconds
        self._time_count += 1
        self._round_time_sum += seconds
        self._round_time_count += 1

    def get_metadata(self) -> Metadata:
        if self._losses is None:
            raise RuntimeError(f"{_TRAINER}: call sample() at the start of every round")
        known = self._losses[np.isfinite(self._losses)]
        if known.size == 0:
            raise RuntimeError(
                f"{_TRAINER}: no per-sample loss recorded; call record_losses() in the first epoch"
            )
        if self._round_time_count == 0:
            raise RuntimeError(
                f"{_TRAINER}: no batch time recorded this round; call record_batch_time()"
            )
        batches = int(len(self._selected) / self.batch_size) + 1
        return {
            "loss_low": float(known.min()) + self._noise(),
            "loss_high": float(np.percentile(known, LOSS_HIGH_PERCENTILE)) + self._noise(),
            "selected_loss_sum": float(np.nansum(self._losses[self._selected])),
            "selected_len": len(self._selected),
            "epoch_train_duration": batches * self._round_time_sum / self._round_time_count,
        }

    def _noise(self) -> float:
        return float(self.rng.normal(0.0, self.noise_factor)) if self.noise_factor > 0 else 0.0

    def handle_metadata_from_aggregator(self, meta: Mapping[str, Any]) -> None:
        threshold = number(meta, "loss_threshold", _TRAINER)
        if "deadline" not in meta:
            raise ValueError(f"{_TRAINER}: metadata lacks 'deadline'")
        deadline = None if meta["deadline"] is None else number(meta, "deadline", _TRAINER)
        if deadline is not None and deadline <= 0:
            raise ValueError(f"{_TRAINER}: metadata 'deadline' must be positive, got {deadline}")
        self.loss_threshold, self.deadline = threshold, deadline


@dataclass(frozen=True)
class _Report:
    loss_low: float
    loss_high: float
    loss_sum: float
    length: int


class FedBalancerAggregator(AggregatorSampler):
    """Steers the loss threshold and the deadline from the trainers' reports."""

    sort: ClassVar[str] = "fedbalancer"

    def __init__(self, *, w: int, lss: float, dss: float, epochs: int) -> None:
        self.w = w
        self.lss = lss
        self.dss = dss
        self.epochs = epochs
        self.ltr = 0.0
        self.ddlr = 1.0
        self.loss_threshold = 0.0
        self.deadline: float | None = None
        self._benefits: deque[float] = deque(maxlen=2 * w)
        self._benefit_count = 0
        self._last_duration: dict[str, float] = {}
        self._epoch_times: dict[str, deque[float]] = {}
        self._comm_times: dict[str, deque[float]] = {}
        self._reports: list[_Report] = []

    def handle_metadata_from_trainer(
        self, meta: Mapping[str, Any], end: str, round_duration: float | None
    ) -> None:
        if round_duration is not None and not (
            math.isfinite(round_duration) and round_duration >= 0
        ):
            raise ValueError(f"{_AGGREGATOR}: bad round duration {round_duration!r} of {end}")
        length = meta.get("selected_len")
        if isinstance(length, bool) or not isinstance(length, int) or length < 0:
            raise ValueError(
                f"{_AGGREGATOR}: metadata 'selected_len' must be an integer >= 0, got {length!r}"
            )
        report = _Report(
            loss_low=number(meta, "loss_low", _AGGREGATOR),
            loss_high=number(meta, "loss_high", _AGGREGATOR),
            loss_sum=number(meta, "selected_loss_sum", _AGGREGATOR),
            length=length,
        )
        epoch_time = number(meta, "epoch_train_duration", _AGGREGATOR)
        self._reports.append(report)
        if round_duration is None:
            if end not in self._last_duration:
                return  # no timing for this end yet
            round_duration = self._last_duration[end]
        self._last_duration[end] = round_duration
        for history, value in (
            (self._epoch_times, epoch_time),
            (self._comm_times, round_duration - self.epochs * epoch_time),
        ):
            history.setdefault(end, deque(maxlen=HISTORY)).append(value)

    def get_metadata(self, round: int, selected_ends: Sequence[str]) -> Metadata:
        if round >= 2:
            self._update_ratios()
            self._update_loss_threshold()
            self._update_deadline(selected_ends)
            self._reports = []
        return {"loss_threshold": self.loss_threshold, "deadline": self.deadline}

    def _update_ratios(self) -> None:
        """Record the last round's benefit; every `w` of them, compare the last two windows."""
        length = sum(r.length for r in self._reports)
        if self.deadline is None or length == 0:
            return
        loss_sum = sum(r.loss_sum for r in self._reports)
        self._benefits.append(loss_sum / length / self.deadline)
        self._benefit_count += 1
        w = self.w
        if self._benefit_count < 2 * w or self._benefit_count % w:
            return
        benefits = list(self._benefits)
        if fmean(benefits[w:]) < fmean(benefits[:w]):
            self.ltr = min(self.ltr + self.lss, 1.0)
            self.ddlr = max(self.ddlr - self.dss, 0.0)
        else:
            self.ltr = max(self.ltr - self.lss, 0.0)
            self.ddlr = min(self.ddlr + self.dss, 1.0)

    def _update_loss_threshold(self) -> None:
        if not self._reports:
            return
        low = min(r.loss_low for r in self._reports)
        high = fmean(r.loss_high for r in self._reports)
        self.loss_threshold = low + (high - low) * self.ltr

    def _update_deadline(self, ends: Sequence[str]) -> None:
        low = self._peak_deadline(ends, 1)
        high = self._peak_deadline(ends, self.epochs)
        if low is not None and high is not None:
            self.deadline = low + (high - low) * self.ddlr

    def _peak_deadline(self, ends: Sequence[str], epochs: int) -> int | None:
        """The integer T > 0 maximising (#ends expected done by T) / T, the smallest on ties;
        None when no end has timings."""
        expected = [
            fmean(self._comm_times[end]) + epochs * fmean(self._epoch_times[end])
            for end in ends
            if end in self._comm_times
        ]
        best: int | None = None
        best_ratio = 0.0
        # the ratio only rises where the count does: at some ceil(expected time)
        for candidate in sorted({max(1, math.ceil(t)) for t in expected}):
            ratio = sum(t <= candidate for t in expected) / candidate
            if ratio > best_ratio:
                best, best_ratio = candidate, ratio
        return best


def fedbalancer_sampler(
    *,
    w: int,
    lss: float,
    dss: float,
    p: float,
    noise_factor: float,
    epochs: int,
    batch_size: int,
    seed: int | None = None,
) -> DataSampler:
    """Both FedBalancer halves from validated kwargs and training hyperparameters."""
    return DataSampler(
        FedBalancerTrainer(
            p=p, noise_factor=noise_factor, epochs=epochs, batch_size=batch_size, seed=seed
        ),
        FedBalancerAggregator(w=w, lss=lss, dss=dss, epochs=epochs),
    )
