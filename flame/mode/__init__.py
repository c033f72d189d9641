"""Flame's modes (`flame.mode.*`): role base classes mapped onto flame_sdk's roles."""
