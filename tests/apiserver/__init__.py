"""Tests of the Flame REST API (flame_apiserver)."""
