"""`flame.privacy.default.DefaultPrivacy`: our SDK's `NoPrivacy`."""

from flame_sdk.privacy.base import NoPrivacy

DefaultPrivacy = NoPrivacy

__all__ = ["DefaultPrivacy"]
