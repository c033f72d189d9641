"""Ready-made role code for the benchmark workloads (each module imports its own framework)."""
