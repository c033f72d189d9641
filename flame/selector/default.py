"""`flame.selector.default.DefaultSelector`: our SDK's `DefaultSelector`."""

from flame_sdk.selectors.default import DefaultSelector

__all__ = ["DefaultSelector"]
