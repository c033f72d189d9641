"""Flame's horizontal FL modes (`syncfl`, `asyncfl`, `coord_syncfl`)."""
