"""`flame.registry.local.LocalRegistryClient`: our SDK's `LocalRegistry`."""

from flame_sdk.registries.local import LocalRegistry

LocalRegistryClient = LocalRegistry

__all__ = ["LocalRegistryClient"]
