"""Flame REST API (FastAPI): the front door; never writes job or task state."""
