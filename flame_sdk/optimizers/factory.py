"""`create_optimizer(sort, kwargs)`: validate the kwargs of a sort and build its optimizer."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import Field

from flame_common.kwargs import ProviderKwargs, build_provider
from flame_sdk.optimizers.base import Optimizer
from flame_sdk.optimizers.fedavg import FedAvg, FedProx
from flame_sdk.optimizers.fedbuff import FedBuff
from flame_sdk.optimizers.feddyn import FedDyn
from flame_sdk.optimizers.fedopt import FedAdaGrad, FedAdam, FedYogi
from flame_sdk.optimizers.robust import Krum, Median, TrimmedMean
from flame_sdk.optimizers.scaffold import Scaffold

DEFAULT_SORT = "fedavg"


class _NoKwargs(ProviderKwargs):
    pass


class _FedOptKwargs(ProviderKwargs):
    beta_1: float = Field(0.9, ge=0, lt=1)
    beta_2: float = Field(0.99, ge=0, lt=1)
    eta: float = Field(1e-2, gt=0)
    tau: float = Field(1e-3, gt=0)


class _FedProxKwargs(ProviderKwargs):
    mu: float = Field(ge=0)


class _FedDynKwargs(ProviderKwargs):
    alpha: float = Field(gt=0)


class _ScaffoldKwargs(ProviderKwargs):
    k: int = Field(ge=1)


class _TrimmedMeanKwargs(ProviderKwargs):
    beta: float = Field(0.1, ge=0, lt=0.5)


class _KrumKwargs(ProviderKwargs):
    f: int = Field(ge=0)
    m: int = Field(1, ge=1)


_SORTS: dict[str, tuple[type[ProviderKwargs], Callable[..., Optimizer]]] = {
    "fedavg": (_NoKwargs, FedAvg),
    "fedadagrad": (_FedOptKwargs, FedAdaGrad),
    "fedadam": (_FedOptKwargs, FedAdam),
    "fedyogi": (_FedOptKwargs, FedYogi),
    "fedprox": (_FedProxKwargs, FedProx),
    "feddyn": (_FedDynKwargs, FedDyn),
    "scaffold": (_ScaffoldKwargs, Scaffold),
    "fedbuff": (_NoKwargs, FedBuff),
    "median": (_NoKwargs, Median),
    "trimmedmean": (_TrimmedMeanKwargs, TrimmedMean),
    "krum": (_KrumKwargs, Krum),
}

SORTS = tuple(_SORTS)


def create_optimizer(sort: str, kwargs: Mapping[str, Any] | None = None) -> Optimizer:
    """Build optimizer `sort` ("" means fedavg); ValueError for an unknown sort or bad kwargs."""
    return build_provider("optimizer", _SORTS, sort or DEFAULT_SORT, kwargs)
