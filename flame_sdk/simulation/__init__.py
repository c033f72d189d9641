"""Simulation: a whole job (all roles of a TAG, N trainers) in one process, or one process per task."""

from flame_sdk.simulation.expand import JobOverrides, expand
from flame_sdk.simulation.runner import SimulationResult, asimulate, run_roles, simulate

__all__ = ["JobOverrides", "SimulationResult", "asimulate", "expand", "run_roles", "simulate"]
