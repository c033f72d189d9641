"""`flame.privacy.dp.DifferentialPrivacy`: our SDK's `GaussianDP`."""

from flame_sdk.privacy.dp import GaussianDP

DifferentialPrivacy = GaussianDP

__all__ = ["DifferentialPrivacy"]
