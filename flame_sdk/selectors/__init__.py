"""Which ends a channel talks to: default, random, fedbuff and oort selectors."""

from flame_sdk.selectors.base import (
    END_RECVD,
    END_SENT,
    END_STATE,
    RECV,
    REQUESTER,
    ROUND,
    SEND,
    STATE,
    End,
    EndState,
    Selector,
)
from flame_sdk.selectors.factory import SORTS, create_selector
from flame_sdk.selectors.oort import ROUND_DURATION, STAT_UTILITY, statistical_utility

__all__ = [
    "END_RECVD",
    "END_SENT",
    "END_STATE",
    "RECV",
    "REQUESTER",
    "ROUND",
    "ROUND_DURATION",
    "SEND",
    "SORTS",
    "STATE",
    "STAT_UTILITY",
    "End",
    "EndState",
    "Selector",
    "create_selector",
    "statistical_utility",
]
