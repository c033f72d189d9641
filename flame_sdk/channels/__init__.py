"""Channels of the data plane: ChannelManager, Channel and End over the backend port."""

from flame_sdk.channels.channel import RECV, SEND, Channel
from flame_sdk.channels.end import End
from flame_sdk.channels.manager import ChannelManager

__all__ = ["RECV", "SEND", "Channel", "ChannelManager", "End"]
