"""Flame's server optimizers: our SDK's (`flame_sdk.optimizers`) under Flame's paths."""
