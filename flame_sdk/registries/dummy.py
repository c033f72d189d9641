"""`dummy` registry: records nothing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from flame_sdk.registries.base import Registry, Weights


class DummyRegistry(Registry):
    """Every call is a no-op; `load_model` finds nothing."""

    sort: ClassVar[str] = "dummy"

    def setup_run(self) -> None:
        pass

    def save_metrics(self, step: int, metrics: Mapping[str, Any]) -> None:
        pass

    def save_params(self, params: Mapping[str, Any]) -> None:
        pass

    def save_model(
        self, name: str, weights: Mapping[str, np.ndarray], model: Any = None
    ) -> int | None:
        return None

    def load_model(self, name: str, version: int | str = "latest") -> Weights | None:
        return None

    def close(self) -> None:
        pass
