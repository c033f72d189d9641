"""The provider catalogue: job-time checks of a model spec, and the SDK factories built on it."""

from __future__ import annotations

import pytest

from flame_sdk.datasamplers import factory as datasamplers
from flame_sdk.optimizers import factory as optimizers
from flame_sdk.privacy import factory as privacy
from flame_sdk.selectors import factory as selectors
from schemas.job import ModelSpec
from schemas.plugins import CATALOGUE, model_spec_errors


@pytest.mark.parametrize(
    ("kind", "sdk"),
    [
        ("optimizer", optimizers.SORTS),
        ("selector", selectors.SORTS),
        ("privacy", privacy.SORTS),
        ("datasampler", datasamplers.SORTS),
    ],
)
def test_every_catalogued_sort_has_a_builder_and_back(kind: str, sdk: tuple[str, ...]) -> None:
    assert set(CATALOGUE[kind][1]) == set(sdk)


def test_a_valid_model_spec_has_no_errors() -> None:
    spec = ModelSpec.model_validate(
        {
            "optimizer": {"sort": "fedadam", "kwargs": {"eta": 0.1}},
            "selector": {"sort": "random", "kwargs": {"k": 2}},
            "privacy": {"sort": "dp", "kwargs": {"clip_threshold": 1.0, "noise_factor": 0.0}},
            "datasampler": {"sort": "fedbalancer", "kwargs": {"w": 5}},
            "hyperparameters": {"rounds": 3, "epochs": 1, "batchSize": 32},
        }
    )
    assert model_spec_errors(spec) == []
    assert model_spec_errors(ModelSpec()) == []  # every default


def test_errors_name_each_bad_provider() -> None:
    spec = ModelSpec.model_validate(
        {
            "optimizer": {"sort": "scaffold"},
            "selector": {"sort": "oracle"},
            "privacy": {"sort": "dp", "kwargs": {"clip_threshold": 1.0, "noise": 2}},
            "datasampler": {"sort": "fedbalancer"},
            "hyperparameters": {"epochs": 2},
        }
    )
    errors = model_spec_errors(spec)
    assert len(errors) == 4, errors
    assert errors[0].startswith("optimizer 'scaffold': bad kwargs: k: Field required")
    assert errors[1].startswith("unknown selector sort 'oracle'; known: default, random")
    assert "noise: Extra inputs are not permitted" in errors[2]
    assert "noise_factor: Field required" in errors[2]
    assert errors[3] == "datasampler 'fedbalancer' needs hyperparameter(s) batchSize"


def test_factories_use_the_catalogue_defaults_and_models() -> None:
    assert type(optimizers.create_optimizer("")).__name__ == "FedAvg"
    with pytest.raises(ValueError, match="optimizer 'fedprox': bad kwargs: mu"):
        optimizers.create_optimizer("fedprox", {"mu": -1})
    assert type(privacy.create_privacy("", {})).__name__ == "NoPrivacy"


def test_model_spec_registry_sorts_are_the_sdk_registries() -> None:
    from flame_sdk.registries import SORTS
    from schemas.job import REGISTRY_SORTS

    assert set(REGISTRY_SORTS) == set(SORTS)


def test_model_spec_names_its_own_registry_or_an_unknown_one_is_refused() -> None:
    from pydantic import ValidationError

    spec = ModelSpec.model_validate({"registry": {"sort": "dummy", "uri": ""}})
    assert spec.registry.sort == "dummy"
    assert ModelSpec().registry.sort == ""  # the platform's default
    with pytest.raises(ValidationError, match="unknown registry 'pickles'"):
        ModelSpec.model_validate({"registry": {"sort": "pickles"}})
