"""The registry port: where a role records metrics, hyperparameters and models of its run."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

Weights = dict[str, np.ndarray]


@dataclass(frozen=True)
class RunIdentity:
    """Which job/task/role a registry records for, and where (`uri`, sort-specific)."""

    uri: str
    job_id: str
    job_name: str
    task_id: str
    role: str
    job_level: bool = False  # its metrics are the job's own (the top aggregator's evaluation)


def check_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Metric values as floats; ValueError naming the first metric that is not a real number."""
    out: dict[str, float] = {}
    for name, value in metrics.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"metric name must be a non-empty string, got {name!r}")
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
            raise ValueError(f"metric {name!r} must be a real number, got {value!r}")
        out[name] = float(value)
    return out


class Registry(abc.ABC):
    """Records one run. Calls before `setup_run()` set the run up first; `close()` ends it."""

    sort: ClassVar[str]

    def __init__(self, identity: RunIdentity) -> None:
        self.identity = identity

    @abc.abstractmethod
    def setup_run(self) -> None:
        """Start (or reopen) this task's run; idempotent."""

    @abc.abstractmethod
    def save_metrics(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Record numeric metrics at `step` (round - 1 for FL roles)."""

    @abc.abstractmethod
    def save_params(self, params: Mapping[str, Any]) -> None:
        """Record the hyperparameters."""

    @abc.abstractmethod
    def save_model(
        self, name: str, weights: Mapping[str, np.ndarray], model: Any = None
    ) -> int | None:
        """Store weights under `name`; return the new version (None when nothing is kept)."""

    @abc.abstractmethod
    def load_model(self, name: str, version: int | str = "latest") -> Weights | None:
        """The weights of `name` at `version` ("latest" or a number), None when absent."""

    @abc.abstractmethod
    def close(self) -> None:
        """End the run (idempotent)."""


def parse_version(version: int | str) -> int | None:
    """None for "latest", else the positive version number; ValueError otherwise."""
    if version == "latest":
        return None
    if isinstance(version, bool) or not str(version).isdigit() or int(version) < 1:
        raise ValueError(f"model version must be 'latest' or a positive integer, got {version!r}")
    return int(version)
