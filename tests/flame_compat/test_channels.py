"""A custom Flame mode (own chain, blocking channel API) runs over our async channels."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import uuid
from typing import Any

import numpy as np
import pytest
import torch

from flame import runtime
from flame.channel_manager import ChannelManager
from flame.config import Config
from flame.mode.composer import Composer
from flame.mode.message import MessageType
from flame.mode.role import Role
from flame.mode.tasklet import Loop, Tasklet
from flame.runtime import call, running_chain
from flame_sdk.simulation import run_roles
from tests.sdk.helpers import task_config

ROUNDS = 2


class CustomRole(Role):
    """What a Flame user writes for a mode of their own: internal_init, compose, run."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.cm: Any = None

    def internal_init(self) -> None:
        self.cm = ChannelManager()
        self.cm(self.config)
        self.cm.join_all()

    def initialize(self) -> None:
        pass

    def load_data(self) -> None:
        pass

    def train(self) -> None:
        pass

    def evaluate(self) -> None:
        pass

    def run(self) -> None:
        self.composer.run()


class Doubler(CustomRole):
    """Receives a tensor, sends it back doubled with a sample count, until EOT."""

    def fetch(self) -> None:
        channel = self.cm.get_by_tag("fetch")
        assert channel.await_join(timeout=10) is False  # Flame's flag: no timeout
        self.server = channel.one_end()
        message, arrived = channel.recv(self.server)
        assert arrived is not None
        if message.get(MessageType.EOT):
            self._work_done = True
            return
        self.w = message[MessageType.WEIGHTS]["w"]

    def upload(self) -> None:
        if self._work_done:
            return
        channel = self.cm.get_by_tag("upload")
        update = {MessageType.WEIGHTS: {"w": self.w * 2}, MessageType.DATASET_SIZE: 5}
        channel.send(self.server, update)

    def compose(self) -> None:
        with Composer() as composer:
            self.composer = composer
            init = Tasklet("internal_init", self.internal_init)
            fetch = Tasklet("fetch", self.fetch)
            upload = Tasklet("upload", self.upload)
            loop = Loop(loop_check_fn=lambda: self._work_done)
            init >> loop(fetch >> upload)


class Collector(CustomRole):
    """Sends the round number as a tensor to two ends, collects their answers in FIFO order."""

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.answers: list[list[Any]] = []

    def distribute(self) -> None:
        channel = self.cm.get_by_tag("distribute")
        while len(channel.all_ends()) < 2:
            channel.await_join(timeout=1)
        self.ends = channel.ends()
        for end in self.ends:
            channel.send(end, {MessageType.WEIGHTS: {"w": torch.full((3,), float(self._round))}})

    def aggregate(self) -> None:
        channel = self.cm.get_by_tag("aggregate")
        got = list(channel.recv_fifo(self.ends))
        self.answers.append([(msg, end) for msg, (end, _) in got])
        self._round += 1
        self._work_done = self._round > ROUNDS

    def end_of_training(self) -> None:
        self.cm.get_by_tag("distribute").broadcast({MessageType.EOT: True})

    def compose(self) -> None:
        with Composer() as composer:
            self.composer = composer
            init = Tasklet("internal_init", self.internal_init)
            distribute = Tasklet("distribute", self.distribute)
            aggregate = Tasklet("aggregate", self.aggregate)
            end = Tasklet("end_of_training", self.end_of_training)
            loop = Loop(loop_check_fn=lambda: self._work_done)
            init >> loop(distribute >> aggregate) >> end


async def test_blocking_channel_api_of_a_custom_mode() -> None:
    job = uuid.uuid4().hex
    collector = Collector(Config(task_config("aggregator", "agg", job)))
    doublers = [Doubler(Config(task_config("trainer", f"t{i}", job))) for i in range(2)]
    roles = [collector, *doublers]
    for role in roles:
        role.compose()
    await run_roles(roles, timeout=30)  # type: ignore[arg-type]
    assert len(collector.answers) == ROUNDS
    for round_, answers in enumerate(collector.answers, start=1):
        assert sorted(end for _, end in answers) == ["t0", "t1"]
        for message, _ in answers:
            assert message[MessageType.DATASET_SIZE] == 5
            weights = message[MessageType.WEIGHTS]["w"]
            assert isinstance(weights, torch.Tensor)  # numpy on the wire, tensors in torch code
            np.testing.assert_array_equal(weights.numpy(), np.full(3, 2.0 * round_))
    assert all(d.work_done for d in doublers)


def test_blocking_calls_outside_a_chain_are_refused() -> None:
    cm = ChannelManager()
    cm(task_config("trainer", "t0"))
    with pytest.raises(RuntimeError, match="inside a role's tasklets"):
        cm.join_all()


async def test_a_blocking_call_gives_up_when_its_chain_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runtime, "CHECK_SECONDS", 0.05)  # how often it looks: not the subject
    outcome: dict[str, Any] = {}

    def blocked() -> None:
        try:
            call(asyncio.sleep(60))
        except RuntimeError as exc:
            outcome["error"] = str(exc)

    async def chain() -> None:
        worker = threading.Thread(target=contextvars.copy_context().run, args=(blocked,))
        worker.start()
        outcome["worker"] = worker
        await asyncio.sleep(0.2)  # the chain ends while its tasklet still waits

    await running_chain(chain)
    await asyncio.to_thread(outcome["worker"].join, 5)
    assert not outcome["worker"].is_alive()
    assert "chain ended" in outcome["error"]
