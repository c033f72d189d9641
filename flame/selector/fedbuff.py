"""`flame.selector.fedbuff.FedBuffSelector`: our SDK's `FedBuffSelector`."""

from flame_sdk.selectors.fedbuff import FedBuffSelector

__all__ = ["FedBuffSelector"]
