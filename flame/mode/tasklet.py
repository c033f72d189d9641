"""`flame.mode.tasklet`: Flame's `Tasklet` and `Loop` are flame_sdk's (same API)."""

from flame_sdk.composer import Loop, Tasklet

__all__ = ["Loop", "Tasklet"]
