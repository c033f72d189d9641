"""Hybrid FL: FedAvg between groups of trainers, ring all-reduce inside each group."""

from __future__ import annotations

from typing import Any, ClassVar

from flame_sdk.config import Config, ConfigError
from flame_sdk.optimizers import create_optimizer
from flame_sdk.roles.aggregator import has_client_protocol
from flame_sdk.roles.ring import (
    DEFAULT_TIMEOUT,
    TIMEOUT_PARAMETER,
    Mailbox,
    Reduced,
    allreduce,
    deadline_after,
    ring_timeout,
)
from flame_sdk.roles.top_aggregator import TopAggregator
from flame_sdk.roles.trainer import Trainer
from flame_sdk.weights import subtract
from flame_sdk.wire import Key, Message

GROUP = "hybrid.group"
"""Upload field: the trainer's group on its ring channel."""
RINGS = "hybrid.rings"
"""Model field: `{group: [end ids in ring order]}`; the first id is the group's committer."""


def _refuse_client_protocol(config: Config) -> None:
    """ConfigError for an optimizer with per-trainer coefficients (group uploads lose them)."""
    sort = config.optimizer.sort or "fedavg"
    if has_client_protocol(create_optimizer(sort, dict(config.optimizer.kwargs))):
        raise ConfigError(
            f"optimizer '{sort}' needs every trainer's own update; a hybrid trainer uploads "
            "its group's (use a two-tier topology)"
        )


def _assigned_ring(rings: Any, group: str, me: str) -> list[str]:
    """`me`'s ring from a model's `hybrid.rings` field ([] when none, or malformed)."""
    ring = rings.get(group) if isinstance(rings, dict) else None
    if not isinstance(ring, list) or not all(isinstance(e, str) for e in ring):
        return []
    members = [str(e) for e in ring]
    return members if len(set(members)) == len(members) > 1 and me in members else []


class HybridTrainer(Trainer):
    """Chain: the `Trainer` chain with `ring_allreduce` after `train`.

    Channels: `fetch`/`upload` to the aggregator, and a self-loop channel (`trainer`-`trainer`,
    grouped, func tag `ring_allreduce`) to the trainers of its group. Every upload names the
    trainer's group on that channel. When the round's model assigns this trainer a ring (a
    group of at least two that all uploaded in an earlier round), the ring all-reduces the
    trained models; then only the ring's committer uploads, the delta of the group's mean
    model with the group's total `dataset_size`, and the others upload no weights, so the
    aggregator's FedAvg equals FedAvg over every trainer. If the ring fails, every member
    uploads its own delta instead. `ringTimeout` (seconds, default 600; null: no limit) bounds
    each wait for a ring peer. FedDyn and SCAFFOLD are refused (ConfigError).
    """

    func_tags: ClassVar[tuple[str, ...]] = ("fetch", "upload", "ring_allreduce")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _refuse_client_protocol(self.config)
        self.committer = False
        self._timeout = ring_timeout(self.config.hyperparameter(TIMEOUT_PARAMETER, DEFAULT_TIMEOUT))
        self._ring: list[str] = []
        self._reduced: Reduced | None = None
        self._mailbox: Mailbox | None = None

    @property
    def mailbox(self) -> Mailbox:
        if self._mailbox is None:
            raise RuntimeError("the ring channel is not joined (internal_init has not run)")
        return self._mailbox

    @property
    def group(self) -> str:
        """This trainer's group on the ring channel."""
        return self.mailbox.channel.scope.group

    async def internal_init(self) -> None:
        await super().internal_init()
        self._mailbox = Mailbox(self.cm.get_by_tag("ring_allreduce"), self.log)

    def accept_global(self, sender: str, message: Message) -> None:
        """Also take this round's ring of the trainer's group, if the model assigns one."""
        super().accept_global(sender, message)
        if not self._fetched:
            return
        self.mailbox.advance(self._round)
        self._ring = _assigned_ring(message.get(RINGS), self.group, self.config.taskid)

    async def ring_allreduce(self) -> None:
        """All-reduce the trained model with the group's ring (when one is assigned)."""
        self._reduced, self.committer = None, False
        ring, self._ring = self._ring, []
        if not ring:
            return
        mailbox = self.mailbox
        if not await mailbox.await_visible(ring, deadline_after(self._timeout)):
            self.log.warning("ring members not on the ring channel", round=self._round, ring=ring)
            await mailbox.abort(self._round)
            return
        reduced = await allreduce(
            mailbox, ring, self.get_weights(), int(self.dataset_size), self._timeout
        )
        if reduced is None:
            self.log.warning("ring all-reduce failed; uploading the own update", round=self._round)
            return
        self._reduced = reduced
        self.committer = ring[0] == self.config.taskid
        self.set_weights(reduced.weights)

    async def upload(self) -> None:
        """The committer uploads the group's delta, the ring's other members no weights;
        without a ring, the trainer's own update (`Trainer.upload`)."""
        reduced, self._reduced = self._reduced, None
        if reduced is None or self.weights is None:
            await super().upload()
            return
        message: dict[str, Any] = {
            Key.WEIGHTS: None,
            Key.DATASET_SIZE: 0,
            Key.MODEL_VERSION: self._round,
        }
        if self.committer:
            delta = subtract(reduced.weights, self.weights)
            message[Key.WEIGHTS] = self.privacy.apply(delta)
            message[Key.DATASET_SIZE] = reduced.total
        meta = self.datasampler.get_metadata()
        if meta:
            message[Key.DATASAMPLER_METADATA] = meta
        await self.send_upstream(message)

    async def send_upstream(self, message: dict[str, Any]) -> None:
        await super().send_upstream({**message, GROUP: self.group})

    def compose(self) -> None:
        super().compose()
        self.insert_tasklet("ring_allreduce", after="train")


class HybridTopAggregator(TopAggregator):
    """`TopAggregator` that groups its trainers into rings.

    It learns each trainer's group from its uploads; each round's model then carries, for every
    group with at least two of the round's selected trainers, their ring (sorted ids, the first
    one the committer). The first round, when no group is known, is plain FedAvg. FedDyn and
    SCAFFOLD are refused (ConfigError).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.refuse_client_protocol("a hybrid aggregator")
        self._groups: dict[str, str] = {}

    async def fold(self, aggregation: Any, end: str, message: Message | None) -> int | None:
        if message is not None:
            group = message.get(GROUP)
            if isinstance(group, str) and group:
                self._groups[end] = group
        return await super().fold(aggregation, end, message)

    def model_fields(self, ends: list[str]) -> dict[str, Any]:
        rings: dict[str, list[str]] = {}
        for end in sorted(ends):
            group = self._groups.get(end)
            if group is not None:
                rings.setdefault(group, []).append(end)
        rings = {group: members for group, members in rings.items() if len(members) > 1}
        return {RINGS: rings} if rings else {}
