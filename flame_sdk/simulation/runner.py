"""Run a whole job in one process: every task's role on one event loop over the local backend."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flame_sdk.config import Config
from flame_sdk.roles.aggregator import Aggregator
from flame_sdk.roles.base import Role
from flame_sdk.roles.memory import tune_malloc_for_simulation
from flame_sdk.simulation.executor import OrderedExecutor
from flame_sdk.simulation.expand import JobOverrides, expand
from flame_sdk.simulation.loader import load_role_class


@dataclass
class SimulationResult:
    """The finished role instances (their models, weights and metrics history)."""

    roles: list[Role] = field(default_factory=list)

    def by_role(self, name: str) -> list[Role]:
        return [r for r in self.roles if r.config.role == name]


async def run_roles(
    roles: list[Role],
    timeout: float | None = None,
    *,
    user_threads: int | None = None,
    fold_in_end_order: bool = True,
) -> None:
    """Run roles side by side; if one fails or time runs out, cancel the others and raise.

    The roles' user methods run on an `OrderedExecutor` of `user_threads` worker threads
    (default: the usable cores, at most 4): in call order, with results handed back in that
    order, and side by side only for methods that take long enough for PyTorch or NumPy to work
    outside the GIL (short ones only trade the GIL back and forth, slower than one after the
    other). Aggregators fold a round's updates in the order of their ends
    (`Aggregator.fold_in_end_order`; False: as they arrive, as deployed aggregators do). A
    synchronous run's results are thus
    the same for any thread count and timing. The event loop stays free
    while a user method runs. glibc's malloc is set to reuse freed blocks
    (`roles.memory.tune_malloc_for_simulation`): model-sized buffers come and go all the time.
    """
    tune_malloc_for_simulation()
    executor = OrderedExecutor(user_threads)
    for role in roles:
        role.composer.executor = executor
        if isinstance(role, Aggregator):
            role.fold_in_end_order = fold_in_end_order
    tasks = [
        asyncio.create_task(r.arun(), name=f"{r.config.role}:{r.config.taskid}") for r in roles
    ]
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), timeout)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        executor.shutdown(wait=False, cancel_futures=True)


def build_roles(example: Path, overrides: JobOverrides) -> list[Role]:
    """One role instance per task of the example's job, each built from its `<role>/main.py`."""
    roles: list[Role] = []
    for wire in expand(example, overrides):
        cls = load_role_class(example / wire["role"] / "main.py")
        roles.append(cls(Config.load(wire)))
    return roles


async def asimulate(
    example: str | Path,
    *,
    rounds: int | None = None,
    hyperparameters: dict[str, Any] | None = None,
    registry: dict[str, str] | None = None,
    job_id: str | None = None,
    timeout: float | None = 600.0,
    user_threads: int | None = None,
) -> SimulationResult:
    """Simulate the job of an example directory in this event loop (see `simulate`)."""
    hp = dict(hyperparameters or {})
    if rounds is not None:
        hp["rounds"] = rounds
    overrides = JobOverrides(
        job_id=job_id or f"sim-{uuid.uuid4().hex[:8]}",
        backend="local",
        registry=registry or {},
        hyperparameters=hp,
    )
    roles = build_roles(Path(example), overrides)
    await run_roles(roles, timeout, user_threads=user_threads)
    return SimulationResult(roles)


def simulate(example: str | Path, **kwargs: Any) -> SimulationResult:
    """Run every role of an example's job (N trainers included) in this process and wait.

    Keyword arguments: `rounds`, `hyperparameters` (merged over the modelSpec's), `registry`
    (`{"sort", "uri"}`), `job_id`, `timeout` (seconds, default 600), `user_threads` (see
    `run_roles`; the results do not depend on it).
    """
    return asyncio.run(asimulate(example, **kwargs))
