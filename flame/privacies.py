"""`flame.privacies.privacy_provider`: trainer-side privacy by sort (`default`, `dp`)."""

from flame.provider import Provider
from flame_sdk.privacy import Privacy, create_privacy

privacy_provider: Provider[Privacy] = Provider(create_privacy)
