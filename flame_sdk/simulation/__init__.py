"""Simulation: a whole job (every role of a TAG) in one process, or one process per task."""

from flame_sdk.simulation.expand import JobOverrides, expand
from flame_sdk.simulation.runner import SimulationResult, asimulate, run_roles, simulate

__all__ = ["JobOverrides", "SimulationResult", "asimulate", "expand", "run_roles", "simulate"]
