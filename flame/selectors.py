"""`flame.selectors.selector_provider`: end selectors by sort (`default`, `fedbuff`, ...)."""

from flame.provider import Provider
from flame_sdk.selectors import Selector, create_selector

selector_provider: Provider[Selector] = Provider(create_selector)
