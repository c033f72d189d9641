"""Distributed training without a server: trainers average their models by ring all-reduce."""

from __future__ import annotations

from typing import Any

from flame_sdk.datasamplers import DefaultTrainerSampler, TrainerSampler
from flame_sdk.roles.base import Role
from flame_sdk.roles.ring import (
    ABORT,
    DEFAULT_TIMEOUT,
    DIGEST,
    KIND,
    MEMBER,
    MODEL,
    SYNCED,
    TIMEOUT_PARAMETER,
    Agreement,
    Mailbox,
    agree,
    allreduce,
    deadline_after,
    ring_timeout,
    view_digest,
)
from flame_sdk.roles.waits import JOIN_TIMEOUT, wait_seconds
from flame_sdk.weights import weights_digest
from flame_sdk.wire import Key, Message


class DistributedTrainer(Role):
    """Chain: internal_init >> load_data >> initialize >> load_base_model >> loop(member_check
    >> train >> ring_allreduce >> evaluate >> save_metrics >> inc_round) >> end_of_training >>
    save_params >> save_model.

    One self-loop channel (`trainer`-`trainer`, func tag `ring_allreduce`). Each round:

    - `member_check`: every trainer broadcasts a digest of the members it sees; the round's ring
      forms only when every member answered with the same digest (else: a local round, with a
      warning). The round becomes the highest of the members' rounds, so late joiners catch up.
      The committer is the smallest id among members that hold the ring's model (in round 1,
      the smallest id of all); it sends that model to the members that do not (everyone else in
      round 1, then late joiners), which train from it.
    - `train` (user code; set `self.dataset_size`).
    - `ring_allreduce`: every member ends with `Σ n_i·w_i / Σ n_i` over the ring. If a member
      leaves, gives up or is silent for `ringTimeout` seconds, the round stays local.

    Hyperparameters: `rounds`; `minEnds` (peers to wait for before round 1, default 0) and
    `joinTimeout` (seconds, default 300); `ringTimeout` (seconds a step waits for a peer,
    default 600; null waits without limit). Only the committer of the last round saves the
    params and the model `"<job name>-<job id>"`. Metrics per round: `ring_members` (1 for a
    local round) and `examples` (the ring's total sample count).
    """

    func_tags = ("ring_allreduce",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dataset_size = 0
        self.datasampler: TrainerSampler = DefaultTrainerSampler()
        self.committer = False
        self._rounds = int(self.config.hyperparameters["rounds"])
        self._timeout = ring_timeout(self.config.hyperparameter(TIMEOUT_PARAMETER, DEFAULT_TIMEOUT))
        self._synced = False
        self._quorum_met = False
        self._agreement: Agreement | None = None
        self._mailbox: Mailbox | None = None

    @property
    def rounds(self) -> int:
        return self._rounds

    @property
    def mailbox(self) -> Mailbox:
        if self._mailbox is None:
            raise RuntimeError("the ring channel is not joined (internal_init has not run)")
        return self._mailbox

    async def internal_init(self) -> None:
        await super().internal_init()
        self.datasampler = self.build_datasampler().trainer
        self._mailbox = Mailbox(self.cm.get_by_tag("ring_allreduce"), self.log)
        self._mailbox.advance(self._round)
        self._work_done = self._round > self._rounds

    async def _await_peers(self) -> None:
        """Before round 1: wait for `minEnds` peers (up to `joinTimeout` seconds)."""
        wanted = int(self.config.hyperparameter("minEnds", 0) or 0)
        limit = wait_seconds(self.config, JOIN_TIMEOUT)
        channel = self.mailbox.channel
        if not await channel.await_join(wanted, limit):
            have = len(channel.all_ends())
            self.log.warning("fewer peers than minEnds joined", wanted=wanted, have=have)
        self._quorum_met = True

    async def member_check(self) -> None:
        """Agree with every visible peer on the round's ring; hand out the model to those
        that lack it. Without agreement the round stays local."""
        if not self._quorum_met:
            await self._await_peers()
        mailbox, me = self.mailbox, self.config.taskid
        channel = mailbox.channel
        view = sorted({me, *channel.all_ends()})
        peers = [e for e in view if e != me]
        announce = {
            KIND: MEMBER,
            Key.ROUND: self._round,
            DIGEST: view_digest(view),
            SYNCED: self._synced,
        }
        await channel.broadcast(announce)
        await mailbox.drain(peers)
        answers = await mailbox.members(peers, deadline_after(self._timeout))
        agreement, reason = agree(me, view, self._round, self._synced, answers)
        if agreement is None:
            seen = [int(a[Key.ROUND]) for a in answers.values() if a is not None]
            self._enter_round(max([self._round, *seen]))
            present = [e for e in view if e == me or channel.has(e)]
            self.committer = min(present) == me
            self.log.warning(
                "no ring this round; training locally", round=self._round, reason=reason
            )
            await mailbox.abort(self._round)
            return
        self._enter_round(agreement.round)
        self.committer = agreement.committer == me
        if self.committer:
            await self._hand_out(agreement)
        elif me in agreement.unsynced and not await self._receive_model(agreement):
            await mailbox.abort(self._round)
            return
        self._synced = True
        self._agreement = agreement

    def _enter_round(self, round_: int) -> None:
        self._round = round_
        self.mailbox.advance(round_)

    async def _hand_out(self, agreement: Agreement) -> None:
        """The committer's model to the members that lack it."""
        targets = [m for m in agreement.unsynced if m != self.config.taskid]
        if targets:
            message = {KIND: MODEL, Key.ROUND: self._round, Key.WEIGHTS: self.get_weights()}
            await self.mailbox.channel.multicast(targets, message)

    async def _receive_model(self, agreement: Agreement) -> bool:
        """Take the committer's model; False (with a warning) if it did not come."""
        committer = agreement.committer

        def wanted(sender: str, message: Message) -> bool:
            return message[KIND] in (MODEL, ABORT) and message[Key.ROUND] == self._round

        got = await self.mailbox.take(wanted, [committer], deadline_after(self._timeout))
        if got is None or got[1] is None or got[1][KIND] == ABORT:
            self.log.warning(
                "the committer's model did not arrive; training locally",
                round=self._round,
                committer=committer,
            )
            return False
        weights = got[1][Key.WEIGHTS]
        self.weights = weights
        self.set_weights(weights)
        return True

    async def ring_allreduce(self) -> None:
        """Replace the local model by the ring's weighted mean (kept local if the ring fails)."""
        agreement, self._agreement = self._agreement, None
        if agreement is None or len(agreement.members) < 2:
            self.update_metrics({"ring_members": 1, "examples": int(self.dataset_size)})
            return
        reduced = await allreduce(
            self.mailbox,
            agreement.members,
            self.get_weights(),
            int(self.dataset_size),
            self._timeout,
        )
        if reduced is None:
            self.log.warning("ring all-reduce failed; this round stays local", round=self._round)
            self.update_metrics({"ring_members": 1, "examples": int(self.dataset_size)})
            return
        self.weights = reduced.weights
        self.set_weights(reduced.weights)
        self.update_metrics({"ring_members": len(agreement.members), "examples": reduced.total})

    async def inc_round(self) -> None:
        self._enter_round(self._round + 1)
        self._work_done = self._round > self._rounds

    async def end_of_training(self) -> None:
        digest = weights_digest(self.get_weights()) if self.model is not None else None
        self.log.info(
            "end of training reached", rounds=self._rounds, committer=self.committer, digest=digest
        )

    async def save_params(self) -> None:
        if self.committer:
            await self.call_registry("save_params", dict(self.config.hyperparameters))

    async def save_model(self) -> None:
        if self.committer and self.model is not None:
            name = f"{self.config.job.name}-{self.config.job.id}"
            await self.call_registry("save_model", name, self.get_weights(), self.model)

    def compose(self) -> None:
        self.compose_rounds(
            ("member_check", "train", "ring_allreduce", "evaluate", "save_metrics", "inc_round"),
            setup=("load_base_model",),
            finish=("end_of_training", "save_params", "save_model"),
        )
