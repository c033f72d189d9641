"""FedGFT (group fairness): the top aggregator aggregates the trainers' bias, trainers use it."""

from __future__ import annotations

import time
from typing import Any

from flame_sdk.config import ConfigError
from flame_sdk.optimizers.fedgft import BIAS, BiasStats, FairnessTerm, FedGFT, GlobalBias
from flame_sdk.roles.base import Role
from flame_sdk.roles.top_aggregator import TopAggregator
from flame_sdk.roles.trainer import Trainer
from flame_sdk.roles.waits import ROUND_TIMEOUT, UPSTREAM_TIMEOUT, PeerWaitError, wait_seconds
from flame_sdk.wire import Key


def _require_fedgft(role: Role) -> None:
    sort = role.config.optimizer.sort
    if sort != FedGFT.sort:
        raise ConfigError(f"a FedGFT role needs the optimizer 'fedgft', got {sort or 'fedavg'!r}")


class FedGFTTopAggregator(TopAggregator):
    """TopAggregator of FedGFT (optimizer `fedgft`, PyTorch trainers).

    Chain: ... >> loop(distribute >> aggregate_bias >> distribute_bias >> aggregate >> train >>
    evaluate >> save_metrics >> inc_round) >> ... . After the model went out, `aggregate_bias`
    takes each selected trainer's statistics of that model on its data (within
    `roundTimeout`), `self.bias` becomes their example-weighted mean (metric `bias` = |val|),
    and `distribute_bias` sends it to the trainers that reported; only those are aggregated.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _require_fedgft(self)
        self.bias: GlobalBias | None = None

    async def aggregate_bias(self) -> None:
        channel = self.cm.get_by_tag("aggregate")
        deadline = time.monotonic() + wait_seconds(self.config, ROUND_TIMEOUT)
        pending, reports, reported = set(self._ends), [], []
        while pending:
            got = await channel.recv_any(pending, max(0.0, deadline - time.monotonic()))
            if got is None:
                self.log.warning("no bias within roundTimeout", missing=sorted(pending))
                break
            end, message = got
            if message is not None and message.get(Key.ROUND) != self._round:
                self.log.info("stale message skipped", end=end, round=self._round)
                continue
            pending.discard(end)
            stats = None if message is None else BiasStats.from_wire(message.get(BIAS))
            size = 0 if message is None else message.get(Key.DATASET_SIZE)
            if stats is None or not isinstance(size, int) or size <= 0:
                self.log.warning("no usable bias from end", end=end, round=self._round)
                continue
            reports.append((stats, size))
            reported.append(end)
        self._ends = reported
        self.bias = self.optimizer.aggregate_bias(reports)
        if self.bias is not None:
            self.update_metrics({"bias": abs(self.bias.val)})

    async def distribute_bias(self) -> None:
        if self.bias is not None and self._ends:
            message = {BIAS: self.bias.wire(), Key.ROUND: self._round}
            await self.cm.get_by_tag("distribute").multicast(self._ends, message)

    def compose(self) -> None:
        super().compose()
        self.insert_tasklet("aggregate_bias", after="distribute")
        self.insert_tasklet("distribute_bias", after="aggregate_bias")


class FedGFTTrainer(Trainer):
    """Trainer of FedGFT (optimizer `fedgft`; PyTorch, a binary classifier with two outputs).

    Set `self.fair_data = (x, y, group)` (tensors of this trainer's examples, `y` and `group`
    in {0, 1}) and `self.dataset_size` in `load_data`; in `train`, add
    `self.fairness_term(outputs, y, group)` of each batch to its loss. Chain: ... >>
    loop(fetch >> local_bias >> upload_bias >> fetch_bias >> train >> evaluate >> upload >>
    save_metrics): `local_bias` computes the statistics of the fetched model on `fair_data`,
    `upload_bias` sends them, and `fetch_bias` installs the global bias the term uses
    (waiting up to `upstreamTimeout`; if the aggregator left, the round restarts at `fetch`).
    """

    framework = "torch"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _require_fedgft(self)
        self.fair_data: tuple[Any, Any, Any] | None = None
        self._stats: BiasStats | None = None
        self._have_bias = False

    @property
    def fairness(self) -> FairnessTerm:
        assert isinstance(self.regularizer, FairnessTerm)  # _require_fedgft
        return self.regularizer

    def fairness_term(self, outputs: Any, y: Any, group: Any) -> Any:
        """The fairness term of a batch (a torch scalar to add to its loss)."""
        from flame_sdk.torch_terms import fairness_term

        return fairness_term(self.fairness, outputs, y, group)

    def local_bias(self) -> None:
        """Statistics of the fetched model on `fair_data` (runs in a worker thread)."""
        if self.fair_data is None:
            raise RuntimeError("FedGFT needs self.fair_data = (x, y, group), set in load_data")
        from flame_sdk.torch_terms import fairness_stats

        self._stats = fairness_stats(self.model, *self.fair_data, self.fairness.fair)

    async def upload_bias(self) -> None:
        assert self._stats is not None
        stats = {BIAS: self._stats.wire(), Key.DATASET_SIZE: int(self.dataset_size)}
        await self.send_upstream({**stats, Key.ROUND: self._round})

    async def fetch_bias(self) -> None:
        self._have_bias = False
        channel = self.cm.get_by_tag("fetch")
        end = self._aggregator
        limit = wait_seconds(self.config, UPSTREAM_TIMEOUT)
        deadline = time.monotonic() + limit
        while end is not None:
            message = await channel.recv(end, max(0.0, deadline - time.monotonic()))
            if message is None:
                if channel.has(end):
                    raise PeerWaitError(
                        f"aggregator {end} sent no bias for {limit:g} s ({UPSTREAM_TIMEOUT})"
                    )
                self.log.warning("aggregator left before sending the bias", round=self._round)
                return
            if message.get(Key.EOT):
                self.accept_global(end, message)
                return
            bias = GlobalBias.from_wire(message.get(BIAS))
            if bias is not None and message.get(Key.ROUND) == self._round:
                self.fairness.receive_bias(bias)
                self._have_bias = True
                return
            self.log.warning("message without this round's bias skipped", round=self._round)

    def bias_missing(self) -> bool:
        """Continue-function of `fetch_bias`: no bias this round, start again at `fetch`."""
        return not self._have_bias and not self._work_done

    def compose(self) -> None:
        super().compose()
        self.insert_tasklet("local_bias", after="fetch")
        self.insert_tasklet("upload_bias", after="local_bias")
        self.insert_tasklet("fetch_bias", after="upload_bias", retry=self.bias_missing)
