"""Flame (cisco-open/flame) compatibility layer: Flame's module paths over flame_sdk."""
