"""Flame's contract: pydantic v2 models for resources, task config, events, commands and errors."""
