"""Transforms a trainer applies to its update before upload: identity and Gaussian DP."""

from flame_sdk.privacy.base import NoPrivacy, Privacy
from flame_sdk.privacy.dp import GaussianDP
from flame_sdk.privacy.factory import SORTS, create_privacy

__all__ = ["SORTS", "GaussianDP", "NoPrivacy", "Privacy", "create_privacy"]
