"""Role chains: the shared spine (`compose_rounds`, `Until`), `insert_tasklet`, stable names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flame_sdk import roles
from flame_sdk.composer import ComposerError
from flame_sdk.roles.base import OptionalUserMethods, Role, Until
from flame_sdk.simulation.expand import expand
from tests.sdk.helpers import task_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SPINE = "internal_init load_data initialize"
TOP_END = "end_of_training save_params save_model"

# every mode: (example, role, its chain, its round loop), by tasklet name; users edit chains by
# these names, so they stay stable
CHAINS: dict[str, tuple[str, str, str, str]] = {
    "Trainer": (
        "two_tier_fedavg",
        "trainer",
        f"{SPINE} fetch train evaluate upload save_metrics",
        "fetch train evaluate upload save_metrics",
    ),
    "TopAggregator": (
        "two_tier_fedavg",
        "aggregator",
        f"{SPINE} load_base_model distribute aggregate train evaluate save_metrics inc_round "
        f"{TOP_END}",
        "distribute aggregate train evaluate save_metrics inc_round",
    ),
    "MiddleAggregator": (
        "hierarchical",
        "middle-aggregator",
        f"{SPINE} fetch distribute aggregate upload evaluate save_metrics end_of_training",
        "fetch distribute aggregate upload evaluate save_metrics",
    ),
    "AsyncTopAggregator": (
        "async_fedbuff",
        "aggregator",
        f"{SPINE} load_base_model begin_version distribute aggregate finish_version train "
        f"evaluate save_metrics inc_round {TOP_END}",
        "begin_version distribute aggregate finish_version train evaluate save_metrics inc_round",
    ),
    "AsyncMiddleAggregator": (
        "async_hierarchical",
        "middle-aggregator",
        f"{SPINE} fetch begin_buffer distribute aggregate upload evaluate save_metrics "
        "end_of_training",
        "fetch begin_buffer distribute aggregate upload evaluate save_metrics",
    ),
    "DistributedTrainer": (
        "distributed",
        "trainer",
        f"{SPINE} load_base_model member_check train ring_allreduce evaluate save_metrics "
        f"inc_round {TOP_END}",
        "member_check train ring_allreduce evaluate save_metrics inc_round",
    ),
    "Coordinator": (
        "coordinated",
        "coordinator",
        f"{SPINE} await_ends check_liveness pair assign save_metrics inc_round end_of_training",
        "check_liveness pair assign save_metrics inc_round",
    ),
    "CoordinatedTopAggregator": (
        "coordinated",
        "top-aggregator",
        f"{SPINE} load_base_model coordinate distribute aggregate train evaluate save_metrics "
        f"inc_round coordinate_end {TOP_END}",
        "coordinate distribute aggregate train evaluate save_metrics inc_round",
    ),
    "CoordinatedMiddleAggregator": (
        "coordinated",
        "middle-aggregator",
        f"{SPINE} coordinate fetch distribute aggregate upload evaluate save_metrics "
        "end_of_training",
        "coordinate fetch distribute aggregate upload evaluate save_metrics",
    ),
    "CoordinatedTrainer": (
        "coordinated",
        "trainer",
        f"{SPINE} coordinate fetch train evaluate upload save_metrics",
        "coordinate fetch train evaluate upload save_metrics",
    ),
    "HybridTrainer": (
        "hybrid",
        "trainer",
        f"{SPINE} fetch train ring_allreduce evaluate upload save_metrics",
        "fetch train ring_allreduce evaluate upload save_metrics",
    ),
}


def _built(name: str) -> Role:
    example, role, _, _ = CHAINS[name]
    config = next(c for c in expand(EXAMPLES / example) if c["role"] == role)
    user = dict.fromkeys(("initialize", "load_data", "train", "evaluate"), lambda self: None)
    instance: Role = type(name, (getattr(roles, name),), user)(config)
    instance.compose()
    return instance


@pytest.mark.parametrize("name", sorted(CHAINS))
def test_every_mode_keeps_its_chain_and_round_loop(name: str) -> None:
    role = _built(name)
    composer = role.composer
    _, _, chain, rounds = CHAINS[name]
    assert composer.chain() == chain.split()
    outer = composer.get_tasklet("save_metrics").loops[-1]
    assert [t.alias for t in outer.members()] == rounds.split()
    assert not outer.check()
    role._work_done = True
    assert outer.check()


def test_retry_functions_stay_on_their_tasklets() -> None:
    middle = _built("CoordinatedMiddleAggregator")
    get = middle.composer.get_tasklet
    assert get("fetch").cont_fn == middle.fetch_failed  # type: ignore[attr-defined]
    assert get("distribute").cont_fn == middle.no_trainer  # type: ignore[attr-defined]
    assert get("coordinate").cont_fn == middle.idle  # type: ignore[attr-defined]
    async_top = _built("AsyncTopAggregator")
    inner = async_top.composer.get_tasklet("distribute").loops[0]
    assert [t.alias for t in inner.members()] == ["distribute", "aggregate"]
    assert inner.check == async_top.goal_reached  # type: ignore[attr-defined]


class Recorder(OptionalUserMethods, Role):
    """A role whose tasklets only record their calls: two rounds of two inner steps each."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[str] = []
        self.steps = 0
        self.retried = False

    async def internal_init(self) -> None:
        self.calls.append("internal_init")

    async def begin(self) -> None:
        self.calls.append("begin")
        self.steps = 0

    async def step(self) -> None:
        self.calls.append("step")
        self.steps += 1

    async def check(self) -> None:
        self.calls.append("check")

    def retry_once(self) -> bool:
        self.retried = not self.retried
        return self.retried

    async def inc_round(self) -> None:
        self.calls.append("inc_round")
        self._round += 1
        self._work_done = self._round > 2

    async def report(self) -> None:
        self.calls.append("report")

    def compose(self) -> None:
        self.compose_rounds(
            ("begin", Until(lambda: self.steps >= 2, "step"), "check", "inc_round"),
            finish=("report",),
            retry={"check": self.retry_once},
        )


async def test_compose_rounds_runs_the_spine_inner_loops_and_retries() -> None:
    role = Recorder(task_config("trainer", "t1"))
    role.compose()
    await role.composer.run()
    one_round = ["begin", "step", "step", "check"]  # `check` restarts the round once
    assert role.calls == [
        "internal_init",
        *one_round,
        *one_round,
        "inc_round",
        *one_round,
        *one_round,
        "inc_round",
        "report",
    ]


def test_insert_tasklet_joins_the_loop_of_its_neighbour() -> None:
    role = Recorder(task_config("trainer", "t1"))
    role.compose()
    role.insert_tasklet("after_step", after="step", fn=role.check)
    role.insert_tasklet("first", before="begin", fn=role.check)
    get = role.composer.get_tasklet
    assert role.composer.chain()[:5] == [
        "internal_init",
        "load_data",
        "initialize",
        "first",
        "begin",
    ]
    assert get("after_step").loops == get("step").loops
    assert get("first").loops == get("begin").loops and get("first").exits_to is not None


def test_insert_tasklet_refuses_unclear_or_unknown_places() -> None:
    role = Recorder(task_config("trainer", "t1"))
    role.compose()
    with pytest.raises(ComposerError, match="exactly one of before= and after="):
        role.insert_tasklet("report2", fn=role.report)
    with pytest.raises(ComposerError, match="exactly one of before= and after="):
        role.insert_tasklet("report3", before="begin", after="step", fn=role.report)
    with pytest.raises(ComposerError, match="no tasklet named 'nowhere'"):
        role.insert_tasklet("report4", after="nowhere", fn=role.report)
