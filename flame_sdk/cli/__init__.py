"""Command-line shells over the SDK: `flamectl` and `flame` (local stack)."""
