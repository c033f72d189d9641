"""Coordinated async hierarchical FL: FedBuff selection by the coordinator, remap on departure."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flame_sdk.config import Config, ConfigError
from flame_sdk.roles import Role
from flame_sdk.roles.async_coordinator import AsyncCoordinator, parse_request
from flame_sdk.roles.coordinator import WITH_MIDDLE
from flame_sdk.simulation import JobOverrides, SimulationResult, expand
from flame_sdk.simulation.loader import load_role_class

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "coord_async"


def _build(hp: dict[str, Any], victim: type[Role] | None = None) -> list[Role]:
    """The example's roles; the first middle aggregator is of class `victim` when given."""
    overrides = JobOverrides(job_id=f"sim-{uuid.uuid4().hex[:8]}", hyperparameters=hp)
    roles: list[Role] = []
    for wire in expand(EXAMPLE, overrides):
        cls = load_role_class(EXAMPLE / wire["role"] / "main.py")
        if victim is not None and wire["role"] == "middle-aggregator":
            cls, victim = type("Victim", (victim, cls), {}), None
        roles.append(cls(Config.load(wire)))
    return roles


def _watch(roles: list[Role]) -> tuple[AsyncCoordinator, dict[str, list[tuple[int, str]]]]:
    """Check the coordinator's selections as they happen; record who folded which trainer
    (`folded[middle]`, and `folded["all"]` in order) and which trainers a departure freed
    (`folded["freed"]`: (position in `folded["all"]` at the time, trainer))."""
    (coordinator,) = [r for r in roles if isinstance(r, AsyncCoordinator)]
    select = coordinator.select

    def checked(tag: str, requester: str, candidates: str, states: Any) -> list[str]:
        chosen = select(tag, requester, candidates, states)
        in_flight = coordinator.selectors[tag].in_flight
        assert all(len(ends) <= coordinator.concurrency for ends in in_flight.values())
        if tag == WITH_MIDDLE:  # a trainer is in flight with one middle aggregator at a time
            flat = [end for ends in in_flight.values() for end in ends]
            assert len(flat) == len(set(flat)), in_flight
        return chosen

    coordinator.select = checked  # type: ignore[method-assign]
    folded: dict[str, list[tuple[int, str]]] = {}
    selector = coordinator.selectors[WITH_MIDDLE]
    reset = selector.reset

    def recording_reset(requester: str) -> None:  # its trainers in flight, when freed
        held = sorted(selector.in_flight.get(requester, ()))
        folded.setdefault("freed", []).extend((len(folded.get("all", [])), e) for e in held)
        reset(requester)

    selector.reset = recording_reset  # type: ignore[method-assign]
    for middle in (r for r in roles if r.config.role == "middle-aggregator"):
        fold = middle.fold  # type: ignore[attr-defined]

        async def recording(
            agg: Any, end: str, msg: Any, fold: Any = fold, m: Role = middle
        ) -> Any:
            if msg is not None:
                folded.setdefault(m.config.taskid, []).append((m.round, end))
                folded.setdefault("all", []).append((m.round, end))
            return await fold(agg, end, msg)

        middle.fold = recording  # type: ignore[attr-defined]
    return coordinator, folded


async def _run(roles: list[Role], skip: Role | None = None) -> None:
    tasks = {role: asyncio.create_task(role.arun()) for role in roles}
    try:
        await asyncio.wait_for(asyncio.gather(*(t for r, t in tasks.items() if r is not skip)), 60)
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)


def _assert_final_model_everywhere(result: SimulationResult, skip: Role | None = None) -> None:
    (top,) = result.by_role("top-aggregator")
    final = top.get_weights()
    for role in result.by_role("middle-aggregator") + result.by_role("trainer"):
        if role is not skip:
            assert role.work_done and role.weights is not None, role.config.taskid
            np.testing.assert_array_equal(role.weights["2.bias"], final["2.bias"])


async def test_coordinated_fedbuff_converges_within_the_concurrency() -> None:
    roles = _build({"rounds": 20})
    coordinator, folded = _watch(roles)
    await _run(roles)
    result = SimulationResult(roles)
    (top,) = result.by_role("top-aggregator")
    accuracies = [h["test_accuracy"] for h in top.metrics_history]
    assert len(accuracies) == 20 and all(h["updates"] == 2 for h in top.metrics_history)
    assert accuracies[0] < 0.5 and accuracies[-1] >= 0.8, accuracies
    middles = sorted(r.config.taskid for r in result.by_role("middle-aggregator"))
    assert sorted(set(folded) - {"all"}) == middles
    assert coordinator.work_done and coordinator.departed == []
    _assert_final_model_everywhere(result)


class CrashingMiddle(Role):
    """Uploads once, then crashes (its peers learn it at once, as through liveness)."""

    async def upload(self) -> None:
        await super().upload()  # type: ignore[misc]
        backend = self.cm.backends[0]
        backend.liveness_timeout = 0.0  # type: ignore[attr-defined]
        await backend.kill()  # type: ignore[attr-defined]
        await asyncio.Event().wait()


async def test_the_trainers_of_a_departed_middle_aggregator_go_to_the_other() -> None:
    roles = _build({"rounds": 20}, victim=CrashingMiddle)
    coordinator, folded = _watch(roles)
    victim = next(r for r in roles if isinstance(r, CrashingMiddle))
    await _run(roles, skip=victim)
    result = SimulationResult(roles)
    (top,) = result.by_role("top-aggregator")
    assert len(top.metrics_history) == 20
    assert coordinator.departed == [victim.config.taskid]
    (survivor,) = [r for r in result.by_role("middle-aggregator") if r is not victim]
    freed = folded["freed"]  # the victim's trainers in flight when it left: it had asked again
    assert freed
    later = {end for _, end in folded["all"][freed[0][0] :]}
    assert {end for _, end in freed} <= later, (freed, later)  # each trained for the survivor
    assert folded[survivor.config.taskid][-1] == folded["all"][-1]
    _assert_final_model_everywhere(result, skip=victim)


def test_requests_and_concurrency_are_checked() -> None:
    request = {"channel": "top_to_middle", "seq": 1, "ends": {"m0": "sent"}}
    assert parse_request({"req_coordinated_ends": request}) == ("top_to_middle", 1, {"m0": "sent"})
    for bad in ({**request, "seq": True}, {**request, "ends": {"m0": "lost"}}, "x"):
        assert parse_request({"req_coordinated_ends": bad}) is None
    wire = next(w for w in expand(EXAMPLE) if w["role"] == "coordinator")
    for value in (0, "2", None):
        config = {**wire, "hyperparameters": {**wire["hyperparameters"], "concurrency": value}}
        with pytest.raises(ConfigError, match="concurrency"):
            AsyncCoordinator(Config.load(config))
