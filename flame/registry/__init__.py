"""Flame's model registries: our SDK's (`flame_sdk.registries`) under Flame's paths."""
