"""Role: what every mode base class shares (config, channels, registry, metrics, chain, running)."""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from flame_common.logs import configure_logging, get_logger
from flame_sdk.backends.base import BrokerOutageError
from flame_sdk.channels import ChannelManager
from flame_sdk.composer import Composer, ComposerError, Loop, Tasklet
from flame_sdk.config import Config
from flame_sdk.datasamplers import DataSampler, create_datasampler
from flame_sdk.registries import DummyRegistry, create_registry
from flame_sdk.roles.memory import tune_malloc
from flame_sdk.roles.progress import ProgressFile
from flame_sdk.roles.waits import EXIT_BROKER_OUTAGE, EXIT_PEER_WAIT, PeerWaitError
from flame_sdk.weights import ModelAdapter, Weights, adapter_for

log = get_logger(__name__)

SETUP = ("internal_init", "load_data", "initialize")
"""The tasklets every role's chain starts with."""

Retry = Mapping[str, Callable[[], bool]]


class Until:
    """An inner loop of a role's chain (see `Role.compose_rounds`): the tasklets named by
    `steps` (or further `Until`s) repeat until `done()` is true."""

    def __init__(self, done: Callable[[], bool], *steps: str | Until) -> None:
        self.done = done
        self.steps = steps


class Role(abc.ABC):
    """A role of a job. Users subclass a mode class and implement the four user methods.

    The user methods (`initialize`, `load_data`, `train`, `evaluate`) are plain functions run in
    a worker thread; everything else runs on the role's asyncio loop. The framework that
    `model` belongs to is named by the hyperparameter `framework` or the class attribute
    `framework` ("torch" or "numpy", default "numpy"); it is never guessed.
    """

    framework: ClassVar[str | None] = None
    func_tags: ClassVar[tuple[str, ...]] = ()
    job_level: ClassVar[bool] = False
    """Whether this role's metrics are the job's (its registry records them job-wide as well):
    true for the top aggregators, which evaluate the global model."""

    def __init__(self, config: Config | str | Path | dict[str, Any]) -> None:
        self.config = config if isinstance(config, Config) else Config.load(config)
        self.model: Any = None
        self.weights: Weights | None = None
        self.composer = Composer()
        self.cm = ChannelManager(self.config)
        self.registry: Any = None
        self.metrics: dict[str, Any] = {}
        self.metrics_history: list[dict[str, Any]] = []
        self.progress = ProgressFile()
        self._round = 1
        self._work_done = False
        self._adapter: ModelAdapter | None = None
        self.log = log.bind(role=self.config.role, task_id=self.config.taskid)

    # user methods ------------------------------------------------------------------------------
    @abc.abstractmethod
    def initialize(self) -> None:
        """Build the model (and anything else the role needs)."""

    @abc.abstractmethod
    def load_data(self) -> None:
        """Load this end's data (`self.config.dataset`)."""

    @abc.abstractmethod
    def train(self) -> None:
        """Train locally (trainers) or post-process the new global model (aggregators)."""

    @abc.abstractmethod
    def evaluate(self) -> None:
        """Evaluate the model; report numbers with `update_metrics`."""

    def update_metrics(self, metrics: dict[str, Any]) -> None:
        self.metrics.update(metrics)

    # framework glue ------------------------------------------------------------------------------
    @property
    def adapter(self) -> ModelAdapter:
        if self._adapter is None:
            name = self.config.hyperparameters.get("framework") or type(self).framework or "numpy"
            self._adapter = adapter_for(str(name))
        return self._adapter

    def get_weights(self) -> Weights:
        return self.adapter.get_weights(self.model)

    def set_weights(self, weights: Weights) -> None:
        if self.model is not None:
            self.adapter.set_weights(self.model, weights)

    def build_datasampler(self) -> DataSampler:
        """The job's data sampler (`datasampler` sort and kwargs) with the hyperparameters
        resolved for this role; ValueError for a bad sort, kwarg or training hyperparameter."""
        cfg = self.config
        hyperparameters = {name: cfg.hyperparameter(name) for name in cfg.hyperparameters}
        return create_datasampler(
            cfg.datasampler.sort, dict(cfg.datasampler.kwargs), hyperparameters
        )

    @property
    def round(self) -> int:
        return self._round

    @property
    def work_done(self) -> bool:
        return self._work_done

    @classmethod
    def get_func_tags(cls) -> tuple[str, ...]:
        return cls.func_tags

    # lifecycle ---------------------------------------------------------------------------------
    @abc.abstractmethod
    def compose(self) -> None:
        """Build the tasklet chain in `self.composer`."""

    def compose_rounds(
        self,
        rounds: Sequence[str | Until],
        *,
        setup: Sequence[str] = (),
        finish: Sequence[str] = (),
        retry: Retry | None = None,
    ) -> None:
        """Build the chain every mode shares: `internal_init >> load_data >> initialize >>
        *setup >> loop(*rounds) >> *finish`, the loop repeating until the work is done.

        Each name becomes a tasklet of that alias running the method of that name, so chains
        stay editable by tasklet name (`self.composer.get_tasklet(name)`). `Until(done, ...)`
        in `rounds` is an inner loop; `retry` maps a tasklet name to its continue function
        (when true after the tasklet, its loop's iteration restarts).
        """
        loop = Until(lambda: self._work_done, *rounds)
        steps: list[str | Until] = [*SETUP, *setup, loop, *finish]
        with self.composer:
            self._link(steps, retry or {})

    def insert_tasklet(
        self,
        alias: str,
        *,
        before: str | None = None,
        after: str | None = None,
        fn: Callable[..., Any] | None = None,
        retry: Callable[[], bool] | None = None,
    ) -> Tasklet:
        """Add tasklet `alias` (running `fn`, default the method named `alias`) right before or
        right after the tasklet named so; it joins that tasklet's loops."""
        if (before is None) == (after is None):
            raise ComposerError(f"tasklet '{alias}': name exactly one of before= and after=")
        with self.composer:
            tasklet = Tasklet(alias, fn or getattr(self, alias))
        if retry is not None:
            tasklet.set_continue_fn(retry)
        if before is not None:
            self.composer.get_tasklet(before).insert_before(tasklet)
        else:
            self.composer.get_tasklet(str(after)).insert_after(tasklet)
        return tasklet

    def _link(self, steps: Sequence[str | Until], retry: Retry) -> Tasklet:
        """Chain `steps` with `>>`; returns what `>>` continues from (for a loop, its first)."""
        handle: Tasklet | None = None
        for step in steps:
            if isinstance(step, Until):
                inner = self._link(step.steps, retry)
                loop = inner.exits_to
                last = loop.end if loop is not None and loop.end is not None else inner
                node = Loop(step.done)(last)
            else:
                node = Tasklet(step, getattr(self, step))
                if step in retry:
                    node.set_continue_fn(retry[step])
            handle = node if handle is None else handle >> node
        if handle is None:
            raise ComposerError("a chain needs at least one tasklet")
        return handle

    def run(self) -> None:
        """Run the role to completion in its own process (configures logging, owns the loop);
        a wait for a peer that ran out (`PeerWaitError`) exits with code `EXIT_PEER_WAIT`, a
        broker outage longer than the backend's bound with `EXIT_BROKER_OUTAGE`."""
        level = str(self.config.hyperparameters.get("logLevel", "INFO"))
        configure_logging(f"flame-{self.config.role}", level=level)
        tune_malloc()
        try:
            asyncio.run(self.arun())
        except PeerWaitError:
            raise SystemExit(EXIT_PEER_WAIT) from None
        except BrokerOutageError:
            raise SystemExit(EXIT_BROKER_OUTAGE) from None

    async def arun(self) -> None:
        """Run the role on the current event loop (simulation runs many roles side by side)."""
        if not self.composer.tasklets:
            self.compose()
        try:
            await self.composer.run()
        except PeerWaitError as exc:
            self.log.error("role ended: a wait for a peer ran out", reason=str(exc))
            raise
        except BrokerOutageError as exc:
            self.log.error("role ended: the broker stayed away", reason=str(exc))
            raise
        finally:
            await self.cleanup()

    async def internal_init(self) -> None:
        """Join the channels and open the registry run."""
        await self.cm.join_all()
        cfg = self.config
        self.registry = create_registry(
            cfg.registry.sort or "dummy",
            cfg.registry.uri,
            cfg.job.id,
            cfg.job.name,
            cfg.taskid,
            cfg.role,
            job_level=self.job_level,
        )
        await self.call_registry("setup_run")

    async def call_registry(self, method: str, *args: Any) -> Any:
        """`self.registry.<method>(*args)` in a worker thread (registries do I/O); at once for
        the dummy registry, which records nothing (a thread hop would cost more than the call)."""
        registry = self.registry
        if registry is None:
            raise RuntimeError("the registry is not set up (internal_init has not run)")
        if isinstance(registry, DummyRegistry):
            return getattr(registry, method)(*args)
        return await asyncio.to_thread(getattr(registry, method), *args)

    async def load_base_model(self) -> None:
        """Start from the registry's base model when `baseModel` names one."""
        ref = self.config.base_model
        if not ref.name or ref.version <= 0:
            return
        weights = await self.call_registry("load_model", ref.name, ref.version)
        if weights is None:
            self.log.warning("base model not found", name=ref.name, version=ref.version)
            return
        self.weights = weights
        self.set_weights(weights)

    async def save_metrics(self) -> None:
        """Report this round's metrics (user ones, tasklet runtimes, bytes moved)."""
        metrics = dict(self.metrics)
        metrics.update({f"{a}.runtime": t for a, t in self.composer.runtimes.items()})
        metrics.update(self.cm.stats())
        if self.registry is not None:
            await self.call_registry("save_metrics", self._round - 1, metrics)
        self.metrics_history.append({"round": self._round, **metrics})
        self.progress.record(self._round, metrics)
        self.metrics.clear()
        self.composer.runtimes.clear()

    async def cleanup(self) -> None:
        """Leave every channel and close the registry run (also after a failure)."""
        try:
            await self.cm.close()
        finally:
            if self.registry is not None:
                registry, self.registry = self.registry, None
                await asyncio.to_thread(registry.close)


class OptionalUserMethods:
    """No-op user methods for roles whose chain needs no user code (middle aggregators, the
    coordinator); mix in before the role class."""

    def initialize(self) -> None:
        """Nothing to build by default."""

    def load_data(self) -> None:
        """No data by default."""

    def train(self) -> None:
        """Nothing to train by default."""

    def evaluate(self) -> None:
        """Nothing to evaluate by default."""
