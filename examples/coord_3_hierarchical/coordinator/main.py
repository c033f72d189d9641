"""Coordinator: each round deals trainers to leaf and leaf to middle aggregators (round-robin)."""

from __future__ import annotations

import sys

from flame_sdk.roles.lifl import LiflCoordinator


class DigitsCoordinator(LiflCoordinator):
    """Uses the base class's chain as is (pairing from the hyperparameters)."""


if __name__ == "__main__":
    role = DigitsCoordinator(sys.argv[1])
    role.compose()
    role.run()
