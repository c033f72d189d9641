"""`create_optimizer(sort, kwargs)`: validate the kwargs of a sort and build its optimizer."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from flame_common.kwargs import build_provider
from flame_sdk.optimizers.base import Optimizer
from flame_sdk.optimizers.fedavg import FedAvg, FedProx
from flame_sdk.optimizers.fedbuff import FedBuff
from flame_sdk.optimizers.feddyn import FedDyn
from flame_sdk.optimizers.fedgft import FedGFT
from flame_sdk.optimizers.fedopt import FedAdaGrad, FedAdam, FedYogi
from flame_sdk.optimizers.robust import Krum, Median, TrimmedMean
from flame_sdk.optimizers.scaffold import Scaffold

_BUILDERS: dict[str, Callable[..., Optimizer]] = {
    "fedavg": FedAvg,
    "fedadagrad": FedAdaGrad,
    "fedadam": FedAdam,
    "fedyogi": FedYogi,
    "fedprox": FedProx,
    "feddyn": FedDyn,
    "scaffold": Scaffold,
    "fedbuff": FedBuff,
    "fedgft": FedGFT,
    "median": Median,
    "trimmedmean": TrimmedMean,
    "krum": Krum,
}

SORTS = tuple(_BUILDERS)


def create_optimizer(sort: str, kwargs: Mapping[str, Any] | None = None) -> Optimizer:
    """Build optimizer `sort` ("" means fedavg); ValueError for an unknown sort or bad kwargs."""
    return build_provider("optimizer", _BUILDERS, sort, kwargs)
