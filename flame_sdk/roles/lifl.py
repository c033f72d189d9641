"""LIFL's 3-level coordinated sync FL: leaf aggregators between middle aggregators and trainers."""

from __future__ import annotations

from typing import Any

from flame_sdk.roles.coordinated import AssignedEnds, CoordinatedMiddleAggregator
from flame_sdk.roles.coordinator import (
    COORDINATED_ENDS,
    WITH_MIDDLE,
    WITH_TOP,
    WITH_TRAINER,
    Coordinator,
    Pairing,
)
from flame_sdk.wire import Key, Message

WITH_LEAF = "coordinateWithLeafAgg"
UPSTREAM = "coordinated_upstream"
"""Coordinator -> leaf aggregator, with its trainers: the middle aggregator to report to."""


class LiflCoordinator(Coordinator):
    """Coordinator of a top aggregator, middle aggregators, leaf aggregators and trainers.

    Chain: the `Coordinator` chain. Each round it asks the top, then the middle aggregators,
    then the leaf aggregators (control channel of tag `coordinateWithLeafAgg`; those that do not
    answer within `livenessTimeout` sit the round out). Trainers are dealt to live leaf
    aggregators and the leaf aggregators that got trainers to live middle aggregators, each in
    turn (`pairing`, default `roundrobin`; `random` with `pairingSeed` is allowed). The top gets
    the middle aggregators that got leaf aggregators, each middle aggregator its leaf
    aggregators, each leaf aggregator its trainers and its middle aggregator
    (`coordinated_upstream`), each trainer its leaf aggregator. `self.assignments[r]` keeps
    `{middle: [leaves]}` and `self.leaf_assignments[r]` `{leaf: [trainers]}`. EOT goes out on
    the four control channels.
    """

    func_tags = (WITH_TOP, WITH_MIDDLE, WITH_LEAF, WITH_TRAINER)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.config.hyperparameter("pairing") is None:
            self.pairing = Pairing("roundrobin")
        seed = self.config.hyperparameter("pairingSeed")
        self.upper_pairing = Pairing(self.pairing.how, None if seed is None else int(seed))
        self.leaf_assignments: dict[int, dict[str, list[str]]] = {}
        self._live_leaves: list[str] = []

    async def check_liveness(self) -> None:
        """The `Coordinator`'s check, then the leaf aggregators that answer in time."""
        await super().check_liveness()
        if self._work_done:
            return
        channel = self.cm.get_by_tag(WITH_LEAF)
        ends = sorted(channel.all_ends())
        self._live_leaves = await self.ask(channel, ends, self.liveness_timeout)
        dropped = sorted(set(ends) - set(self._live_leaves))
        if dropped:
            self.log.warning("leaf aggregators dropped", round=self._round, ends=dropped)

    async def pair(self) -> None:
        """Trainers to live leaf aggregators, leaf aggregators with trainers to live middles."""
        trainers = sorted(self.cm.get_by_tag(WITH_TRAINER).all_ends())
        leaves = self._live_leaves if self._live else []
        by_leaf = self.pair_ends(trainers, leaves)
        busy = [leaf for leaf, mine in by_leaf.items() if mine]
        by_middle = self.upper_pairing(busy, self._live)
        self.leaf_assignments[self._round] = by_leaf
        self.assignments[self._round] = by_middle
        if not busy:
            self.log.warning("no live leaf and middle aggregators; trainers sit out")
        self.update_metrics(
            {
                "middle_aggregators": len(self._live),
                "leaf_aggregators": len(leaves),
                "trainers": sum(len(t) for t in by_leaf.values()),
            }
        )

    async def assign(self) -> None:
        """Tell each role its ends for the round (see the class docstring)."""
        assert self._top is not None  # check_liveness found it
        r = self._round
        by_middle, by_leaf = self.assignments[r], self.leaf_assignments[r]
        parent = {leaf: middle for middle, leaves in by_middle.items() for leaf in leaves}
        participants = [middle for middle, leaves in by_middle.items() if leaves]
        await self.cm.get_by_tag(WITH_TOP).send(
            self._top, {COORDINATED_ENDS: participants, Key.ROUND: r}
        )
        for middle, leaves in by_middle.items():
            message = {COORDINATED_ENDS: leaves, Key.ROUND: r}
            await self.cm.get_by_tag(WITH_MIDDLE).send(middle, message)
        for leaf, trainers in by_leaf.items():
            message = {COORDINATED_ENDS: trainers, UPSTREAM: parent.get(leaf), Key.ROUND: r}
            await self.cm.get_by_tag(WITH_LEAF).send(leaf, message)
            for trainer in trainers:
                message = {COORDINATED_ENDS: leaf, Key.ROUND: r}
                await self.cm.get_by_tag(WITH_TRAINER).send(trainer, message)


class CoordinatedLeafAggregator(CoordinatedMiddleAggregator):
    """A coordinated middle aggregator between a middle aggregator and trainers (LIFL).

    Chain: the `CoordinatedMiddleAggregator` chain. Each round's instruction names its trainers
    and the middle aggregator it fetches the model from and uploads to; if that one is not
    there, it sits the round out. After the coordinator's EOT it takes the final model from its
    last middle aggregator (or any) and forwards it to every trainer.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.upstream = AssignedEnds()

    async def internal_init(self) -> None:
        await super().internal_init()
        self.cm.get_by_tag("fetch").selector = self.upstream

    async def instruction(self) -> Message | None:
        message = await super().instruction()
        if message is None:
            self.upstream.assigned = None  # the final model may come from any middle aggregator
            return None
        parent = message.get(UPSTREAM)
        self.upstream.assigned = [parent] if isinstance(parent, str) else []
        self._aggregator = parent if isinstance(parent, str) else None
        return message
