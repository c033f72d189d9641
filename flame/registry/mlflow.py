"""`flame.registry.mlflow.MLflowRegistryClient`: our SDK's `MlflowRegistry`."""

from flame_sdk.registries.mlflow_registry import MlflowRegistry

MLflowRegistryClient = MlflowRegistry

__all__ = ["MLflowRegistryClient"]
