"""Where a role records its run: dummy, local files, or MLflow."""

from flame_sdk.registries.base import Registry, RunIdentity
from flame_sdk.registries.dummy import DummyRegistry
from flame_sdk.registries.factory import SORTS, create_registry
from flame_sdk.registries.local import LocalRegistry
from flame_sdk.registries.mlflow_registry import MlflowRegistry

__all__ = [
    "SORTS",
    "DummyRegistry",
    "LocalRegistry",
    "MlflowRegistry",
    "Registry",
    "RunIdentity",
    "create_registry",
]
