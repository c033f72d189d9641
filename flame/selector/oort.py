"""`flame.selector.oort.OortSelector`: our SDK's `OortSelector`."""

from flame_sdk.selectors.oort import OortSelector

__all__ = ["OortSelector"]
