"""Flame's end selectors: our SDK's (`flame_sdk.selectors`) under Flame's paths."""
