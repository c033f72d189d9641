"""Coordinator: FedBuff selection for the top aggregator and for each middle aggregator."""

from __future__ import annotations

import sys

from flame_sdk.roles.async_coordinator import AsyncCoordinator


class DigitsCoordinator(AsyncCoordinator):
    """Uses the base class's chain as is (`concurrency` from the hyperparameters)."""


if __name__ == "__main__":
    role = DigitsCoordinator(sys.argv[1])
    role.compose()
    role.run()
