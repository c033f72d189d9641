"""The privacy port: a transform a trainer applies to its delta before upload."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

import numpy as np

if TYPE_CHECKING:
    import torch

Weights = dict[str, np.ndarray]


class Privacy(abc.ABC):
    """Transforms one update; returns new containers and never mutates its input."""

    sort: ClassVar[str]

    @abc.abstractmethod
    def apply(self, delta: Mapping[str, np.ndarray]) -> Weights:
        """Privatise a delta of named numpy arrays."""

    @abc.abstractmethod
    def apply_torch(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Privatise a delta given as a torch state dict (same math; torch imported lazily)."""


class NoPrivacy(Privacy):
    """Identity (`default`)."""

    sort: ClassVar[str] = "default"

    def apply(self, delta: Mapping[str, np.ndarray]) -> Weights:
        return dict(delta)

    def apply_torch(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return dict(state)
