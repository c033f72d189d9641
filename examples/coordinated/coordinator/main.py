"""Coordinator: each round pairs the trainers with the middle aggregators that are alive."""

from __future__ import annotations

import sys

from flame_sdk.roles.coordinator import Coordinator


class DigitsCoordinator(Coordinator):
    """Uses the base class's chain as is (pairing from the hyperparameters)."""


if __name__ == "__main__":
    role = DigitsCoordinator(sys.argv[1])
    role.compose()
    role.run()
