"""The built-in providers a model spec names, with each sort's kwargs: one catalogue for the SDK.

The SDK's factories build optimizers, selectors, privacy transforms and data samplers from
these kwargs models, and the control plane checks a job's model spec against the same catalogue
before it creates the job (`model_spec_errors`), so a misspelt sort or kwarg is a 400 at
creation instead of every task failing later. Pydantic only: no numpy, no SDK imports.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from schemas.base import CommentedModel
from schemas.job import ModelSpec

M = TypeVar("M", bound=BaseModel)


class ProviderKwargs(CommentedModel):
    """Base for a provider's kwargs: `//` comment keys dropped, other unknown names rejected,
    frozen once parsed."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoKwargs(ProviderKwargs):
    """A provider without kwargs."""


class IgnoredKwargs(BaseModel):
    """A provider that takes no kwargs and ignores any it is given."""

    model_config = ConfigDict(extra="ignore", frozen=True)


# --- optimizers ----------------------------------------------------------------------------


class FedOptKwargs(ProviderKwargs):
    beta_1: float = Field(0.9, ge=0, lt=1)
    beta_2: float = Field(0.99, ge=0, lt=1)
    eta: float = Field(1e-2, gt=0)
    tau: float = Field(1e-3, gt=0)


class FedProxKwargs(ProviderKwargs):
    mu: float = Field(ge=0)


class FedDynKwargs(ProviderKwargs):
    alpha: float = Field(gt=0)


class ScaffoldKwargs(ProviderKwargs):
    k: int = Field(ge=1)


class FedGFTKwargs(ProviderKwargs):
    fair: Literal["SP", "EOP", "CAL"]
    gamma: float | Literal["auto"] = Field(union_mode="left_to_right")
    reg: Literal["l2", "id"] = "l2"

    @field_validator("gamma")
    @classmethod
    def _non_negative(cls, gamma: float | str) -> float | str:
        if isinstance(gamma, float) and not (gamma >= 0 and math.isfinite(gamma)):
            raise ValueError("gamma must be a finite number >= 0 or 'auto'")
        return gamma


class TrimmedMeanKwargs(ProviderKwargs):
    beta: float = Field(0.1, ge=0, lt=0.5)


class KrumKwargs(ProviderKwargs):
    f: int = Field(ge=0)
    m: int = Field(1, ge=1)


OPTIMIZERS: dict[str, type[BaseModel]] = {
    "fedavg": NoKwargs,
    "fedadagrad": FedOptKwargs,
    "fedadam": FedOptKwargs,
    "fedyogi": FedOptKwargs,
    "fedprox": FedProxKwargs,
    "feddyn": FedDynKwargs,
    "scaffold": ScaffoldKwargs,
    "fedbuff": NoKwargs,
    "fedgft": FedGFTKwargs,
    "median": NoKwargs,
    "trimmedmean": TrimmedMeanKwargs,
    "krum": KrumKwargs,
}

# --- selectors -----------------------------------------------------------------------------


class SeededKwargs(ProviderKwargs):
    seed: int | None = None


class RandomKwargs(SeededKwargs):
    k: int = Field(ge=1)


class FedBuffSelectorKwargs(SeededKwargs):
    c: int = Field(ge=1)


class OortKwargs(SeededKwargs):
    aggr_num: int = Field(ge=1)


SELECTORS: dict[str, type[BaseModel]] = {
    "default": NoKwargs,
    "random": RandomKwargs,
    "fedbuff": FedBuffSelectorKwargs,
    "oort": OortKwargs,
}

# --- privacy -------------------------------------------------------------------------------


class DPKwargs(ProviderKwargs):
    clip_threshold: float = Field(gt=0)
    noise_factor: float = Field(ge=0)
    seed: int | None = None


PRIVACY: dict[str, type[BaseModel]] = {"default": NoKwargs, "dp": DPKwargs}

# --- data samplers -------------------------------------------------------------------------


class FedBalancerKwargs(ProviderKwargs):
    w: int = Field(default=20, ge=1)
    lss: float = Field(default=0.05, ge=0, le=1)
    dss: float = Field(default=0.05, ge=0, le=1)
    p: float = Field(default=1.0, ge=0, le=1)
    noise_factor: float = Field(default=0.0, ge=0)
    seed: int | None = None


DATASAMPLERS: dict[str, type[BaseModel]] = {
    "default": IgnoredKwargs,
    "fedbalancer": FedBalancerKwargs,
}
# Hyperparameters a data sampler reads besides its kwargs (positive integers).
DATASAMPLER_HYPERPARAMETERS: dict[str, tuple[str, ...]] = {"fedbalancer": ("epochs", "batchSize")}

# kind -> (sort used when the spec names none, sort -> kwargs model)
CATALOGUE: dict[str, tuple[str, dict[str, type[BaseModel]]]] = {
    "optimizer": ("fedavg", OPTIMIZERS),
    "selector": ("default", SELECTORS),
    "privacy": ("default", PRIVACY),
    "datasampler": ("default", DATASAMPLERS),
}


def parse_kwargs(kind: str, sort: str, model: type[M], kwargs: Mapping[str, Any] | None) -> M:
    """Build `model` from `kwargs`; ValueError naming the provider and each bad kwarg."""
    try:
        return model.model_validate(dict(kwargs or {}))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<kwargs>'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ValueError(f"{kind} {sort!r}: bad kwargs: {problems}") from None


def sort_name(kind: str, sort: str) -> str:
    """`sort`, or the kind's default for ""; ValueError for an unknown sort (listing the known)."""
    default, sorts = CATALOGUE[kind]
    name = sort or default
    if name not in sorts:
        raise ValueError(f"unknown {kind} sort {name!r}; known: {', '.join(sorts)}")
    return name


def kwargs_model(kind: str, sort: str) -> type[BaseModel]:
    """The kwargs model of `sort` ("" = the kind's default); ValueError for an unknown sort."""
    return CATALOGUE[kind][1][sort_name(kind, sort)]


def model_spec_errors(spec: ModelSpec) -> list[str]:
    """What is wrong with the providers `spec` names (empty when every one would build)."""
    errors: list[str] = []
    for kind in CATALOGUE:
        plugin = getattr(spec, kind)
        try:
            parse_kwargs(kind, plugin.sort, kwargs_model(kind, plugin.sort), plugin.kwargs)
        except ValueError as exc:
            errors.append(str(exc))
    missing = [
        name
        for name in DATASAMPLER_HYPERPARAMETERS.get(spec.datasampler.sort, ())
        if name not in spec.hyperparameters
    ]
    if missing:
        errors.append(
            f"datasampler {spec.datasampler.sort!r} needs hyperparameter(s) {', '.join(missing)}"
        )
    return errors
