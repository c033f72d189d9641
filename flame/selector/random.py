"""`flame.selector.random.RandomSelector`: our SDK's `RandomSelector`."""

from flame_sdk.selectors.default import RandomSelector

__all__ = ["RandomSelector"]
