"""Flame's distributed mode: ring all-reduce among trainers, no aggregator."""
