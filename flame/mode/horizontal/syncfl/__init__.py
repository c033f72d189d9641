"""Flame's synchronous FL mode: trainer, top aggregator, middle aggregator."""
