"""A deployer's compute registration waits for the apiserver only so long, then says why."""

from __future__ import annotations

import time

import pytest

from flame_common.embedded import free_port
from flame_controller.deployers.registration import RegistrationError, register_compute
from schemas.compute import ComputeSpec


async def test_an_apiserver_that_never_answers_ends_the_wait_with_the_reason() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    with pytest.raises(RegistrationError, match=r"compute c1 not registered: .* within 1 s"):
        await register_compute(url, ComputeSpec(compute_id="c1"), "", patience=1.0)
    assert time.monotonic() - started < 5
