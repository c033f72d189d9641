"""Flame's trainer-side privacy: our SDK's (`flame_sdk.privacy`) under Flame's paths."""
