"""`create_datasampler(sort, kwargs, hyperparameters)`: validate kwargs and build both halves."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from flame_common.kwargs import build_provider
from flame_sdk.datasamplers.base import DataSampler
from flame_sdk.datasamplers.default import default_sampler
from flame_sdk.datasamplers.fedbalancer import fedbalancer_sampler


def _training_hyperparameter(hyperparameters: Mapping[str, Any], name: str) -> int:
    if name not in hyperparameters:
        raise ValueError(f"datasampler 'fedbalancer': hyperparameter {name!r} is required")
    value = hyperparameters[name]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"datasampler 'fedbalancer': hyperparameter {name!r} must be a positive integer, "
            f"got {value!r}"
        )
    return value


def _default(hyperparameters: Mapping[str, Any]) -> DataSampler:
    return default_sampler()


def _fedbalancer(hyperparameters: Mapping[str, Any], **kwargs: Any) -> DataSampler:
    return fedbalancer_sampler(
        epochs=_training_hyperparameter(hyperparameters, "epochs"),
        batch_size=_training_hyperparameter(hyperparameters, "batchSize"),
        **kwargs,
    )


_BUILDERS: dict[str, Callable[..., DataSampler]] = {
    "default": _default,
    "fedbalancer": _fedbalancer,
}

SORTS = tuple(_BUILDERS)


def create_datasampler(
    sort: str,
    kwargs: Mapping[str, Any] | None = None,
    hyperparameters: Mapping[str, Any] | None = None,
) -> DataSampler:
    """Build data sampler `sort` ("" means default) from its kwargs and the job's (per-role
    resolved) hyperparameters; ValueError for an unknown sort, a bad kwarg or a missing or bad
    `epochs` / `batchSize` (fedbalancer)."""
    training = dict(hyperparameters or {})
    builders = {name: partial(build, training) for name, build in _BUILDERS.items()}
    return build_provider("datasampler", builders, sort, kwargs)
