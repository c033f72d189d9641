"""Coordinator of coordinated hierarchical sync FL: pairs trainers with live middle aggregators."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import Any, ClassVar

from flame_sdk.channels import Channel
from flame_sdk.config import ConfigError
from flame_sdk.roles.base import OptionalUserMethods, Role
from flame_sdk.roles.waits import JOIN_TIMEOUT, wait_seconds
from flame_sdk.wire import Key

# message keys of the control channels (JSON values)
META_INFO_REQ = "meta_info_req"
"""Coordinator -> aggregator: the round about to be paired (int); answer with META_INFO_RES."""
META_INFO_RES = "meta_info_res"
"""Aggregator -> coordinator: the round of the META_INFO_REQ answered (int)."""
COORDINATED_ENDS = "coordinated_ends"
"""Coordinator -> role, with `round`: the ends to talk to this round (a list of ids for the
top and middle aggregators, one middle aggregator id for a trainer)."""

WITH_TOP, WITH_MIDDLE, WITH_TRAINER = (
    "coordinateWithTopAgg",
    "coordinateWithMidAgg",
    "coordinateWithTrainer",
)
COORDINATE = "coordinate"
"""The func tag of the coordinator channel on the coordinated roles."""

PAIRINGS = ("random", "roundrobin")
DEFAULT_LIVENESS_SECONDS = 10.0


class Pairing:
    """Maps trainers to aggregators: `random` (a uniform draw per trainer, from `seed`) or
    `roundrobin` (trainers dealt in turn, each round going on where the previous one stopped)."""

    def __init__(self, how: str, seed: int | None = None) -> None:
        if how not in PAIRINGS:
            raise ValueError(f"unknown pairing {how!r} ({' or '.join(PAIRINGS)})")
        self.how = how
        self.rng = random.Random(seed)
        self.cursor = 0

    def __call__(self, trainers: Sequence[str], aggregators: Sequence[str]) -> dict[str, list[str]]:
        """`{aggregator: [trainers]}`: every aggregator is a key, every trainer in one list."""
        groups: dict[str, list[str]] = {a: [] for a in aggregators}
        if not aggregators:
            return groups
        for trainer in trainers:
            if self.how == "random":
                index = self.rng.randrange(len(aggregators))
            else:
                index, self.cursor = self.cursor % len(aggregators), self.cursor + 1
            groups[aggregators[index]].append(trainer)
        return groups


class ControlRole(OptionalUserMethods, Role):
    """A coordinator: the roles it coordinates are on its control channels (`func_tags`).

    Before its first step it waits for `minEnds` ends per peer role: the coordinator's entry is a
    mapping like `{"middle-aggregator": 2, "trainer": 4}` (1 for a role not named) or an int
    (trainers); `joinTimeout` (default 300 s) bounds that wait. The user methods are optional.
    """

    async def await_ends(self) -> None:
        """Wait for `minEnds` ends on each control channel (up to `joinTimeout` in all)."""
        wanted = self.config.hyperparameter("minEnds")
        deadline = time.monotonic() + wait_seconds(self.config, JOIN_TIMEOUT)
        for tag in self.func_tags:
            channel = self.cm.get_by_tag(tag)
            role = self.config.peer_role(self.config.channel(channel.name))
            if isinstance(wanted, dict):
                count = int(wanted.get(role, 1))
            else:
                count = int(wanted or 1) if tag == WITH_TRAINER else 1
            if not await channel.await_join(count, max(0.0, deadline - time.monotonic())):
                have = len(channel.all_ends())
                self.log.warning(
                    "fewer ends than minEnds joined", role=role, wanted=count, have=have
                )


class Coordinator(ControlRole):
    """Chain: internal_init >> load_data >> initialize >> await_ends >> loop(check_liveness >>
    pair >> assign >> save_metrics >> inc_round) >> end_of_training.

    Each round (`rounds`): ask the top aggregator for the round (META_INFO_REQ; its answer
    means the previous round is aggregated), then every middle aggregator; those that do not
    answer within `livenessTimeout` seconds (default 10) or that left sit the round out. Every
    trainer is then paired with a live middle aggregator (`pairing`: `random`, the default, or
    `roundrobin`; `pairingSeed` makes `random` reproducible; override `pair_ends` for another
    rule) and told it; each live middle aggregator gets its trainers (possibly none) and the
    top the middle aggregators that got trainers. After the last round, once the top
    aggregator answered again, EOT goes out on the three control channels.

    Before round 1 it waits for `minEnds` ends per peer role (see `ControlRole`).
    `self.assignments` keeps each round's `{middle aggregator: [trainers]}`.
    """

    func_tags: ClassVar[tuple[str, ...]] = (WITH_TOP, WITH_MIDDLE, WITH_TRAINER)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cfg = self.config
        self._rounds = int(cfg.hyperparameters["rounds"])
        seed = cfg.hyperparameter("pairingSeed")
        how = str(cfg.hyperparameter("pairing", "random"))
        try:
            self.pairing = Pairing(how, None if seed is None else int(seed))
        except ValueError as exc:
            raise ConfigError(f"hyperparameters.pairing: {exc}") from None
        self.liveness_timeout = float(
            cfg.hyperparameter("livenessTimeout", DEFAULT_LIVENESS_SECONDS)
        )
        self.assignments: dict[int, dict[str, list[str]]] = {}
        self._top: str | None = None
        self._live: list[str] = []

    async def internal_init(self) -> None:
        await super().internal_init()
        self._work_done = self._round > self._rounds

    async def ask(self, channel: Channel, ends: list[str], timeout: float | None) -> list[str]:
        """Send META_INFO_REQ for this round to `ends`; the ones that answer within `timeout`
        seconds (None: until they answer or leave), sorted. Answers to earlier rounds are
        skipped."""
        await channel.multicast(ends, {META_INFO_REQ: self._round})
        deadline = None if timeout is None else time.monotonic() + timeout
        pending, live = set(ends), []
        while pending:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            got = await channel.recv_any(pending, timeout=remaining)
            if got is None:
                break
            end, message = got
            if message is None:
                pending.discard(end)
            elif message.get(META_INFO_RES) == self._round:
                pending.discard(end)
                live.append(end)
        return sorted(live)

    async def _top_ready(self) -> bool:
        """Whether the top aggregator answered for this round (it finished the previous one)."""
        channel = self.cm.get_by_tag(WITH_TOP)
        tops = sorted(channel.all_ends())
        if not tops:
            return False
        self._top = tops[0]
        return bool(await self.ask(channel, [self._top], None))

    async def check_liveness(self) -> None:
        """Wait for the top aggregator, then keep the middle aggregators that answer in time."""
        if not await self._top_ready():
            self.log.error("the top aggregator is gone; ending the job", round=self._round)
            self._top = None
            self._work_done = True
            return
        channel = self.cm.get_by_tag(WITH_MIDDLE)
        ends = sorted(channel.all_ends())
        self._live = await self.ask(channel, ends, self.liveness_timeout)
        dropped = sorted(set(ends) - set(self._live))
        if dropped:
            self.log.warning("middle aggregators dropped", round=self._round, ends=dropped)

    def pair_ends(self, trainers: list[str], aggregators: list[str]) -> dict[str, list[str]]:
        """`{aggregator: [trainers]}` for this round (every aggregator a key)."""
        return self.pairing(trainers, aggregators)

    async def pair(self) -> None:
        """Pair every trainer present with a live middle aggregator (`pair_ends`)."""
        trainers = sorted(self.cm.get_by_tag(WITH_TRAINER).all_ends())
        groups = self.pair_ends(trainers, self._live)
        self.assignments[self._round] = groups
        if not self._live:
            self.log.warning("no live middle aggregator; trainers sit out", round=self._round)
        self.update_metrics(
            {
                "middle_aggregators": len(self._live),
                "trainers": sum(len(t) for t in groups.values()),
            }
        )

    async def assign(self) -> None:
        """Tell the top its middle aggregators, each of those its trainers, each trainer its
        middle aggregator."""
        assert self._top is not None  # check_liveness found it
        groups = self.assignments[self._round]
        r = self._round
        participants = [a for a, trainers in groups.items() if trainers]
        top = self.cm.get_by_tag(WITH_TOP)
        await top.send(self._top, {COORDINATED_ENDS: participants, Key.ROUND: r})
        middle = self.cm.get_by_tag(WITH_MIDDLE)
        trainer = self.cm.get_by_tag(WITH_TRAINER)
        for aggregator, trainers in groups.items():
            await middle.send(aggregator, {COORDINATED_ENDS: trainers, Key.ROUND: r})
            for end in trainers:
                await trainer.send(end, {COORDINATED_ENDS: aggregator, Key.ROUND: r})

    async def inc_round(self) -> None:
        self._round += 1
        self._work_done = self._round > self._rounds

    async def end_of_training(self) -> None:
        """Once the top aggregator finished the last round, send EOT on every control channel."""
        if self._top is not None and not await self._top_ready():
            self.log.warning("the top aggregator left before the end of training")
        for tag in self.func_tags:
            await self.cm.get_by_tag(tag).broadcast({Key.EOT: True})
        self.log.info("end of coordination sent", rounds=len(self.assignments))

    def compose(self) -> None:
        self.compose_rounds(
            ("check_liveness", "pair", "assign", "save_metrics", "inc_round"),
            setup=("await_ends",),
            finish=("end_of_training",),
        )
