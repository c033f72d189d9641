"""`flame.registry.dummy.DummyRegistryClient`: our SDK's `DummyRegistry`."""

from flame_sdk.registries.dummy import DummyRegistry

DummyRegistryClient = DummyRegistry

__all__ = ["DummyRegistryClient"]
