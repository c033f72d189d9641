"""The controller's application service: one writer per job; commands and observed events in.

Every change goes: lock the job -> state (cache or replay) -> `decide` -> stamp `seq` -> append to
the log and projections -> hand the new events to the outbox relay.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId

from flame_common.logs import get_logger
from flame_common.settings import FlameSettings
from flame_controller import decide as d
from flame_controller.broker_accounts import BrokerLogin, JobAccounts
from flame_controller.expansion import PlannedTask
from flame_controller.planning import Planner, new_keys
from flame_controller.ports import Catalog, CommandRecord, JobStore, SeqTaken, UnfoldableLog
from flame_controller.state import JobView, evolve
from schemas import commands as c
from schemas.errors import Conflict, FlameError, Invalid, NotFound
from schemas.events import EventBase, TaskStatusChanged, TaskStatusChangedEvent
from schemas.job import JobStatus

log = get_logger(__name__)

Publish = Callable[[Sequence[EventBase]], None]
# told the task keys this controller made: (job id, task id -> key, all of the job's keys)
LearnKeys = Callable[[str, dict[str, str], bool], None]


@dataclass
class _Entry:
    state: JobView
    seen: set[str] = field(default_factory=set)


def job_status(s: JobView) -> dict[str, Any]:
    """The RPC result of job commands: `JobStatus` in wire form."""
    status = JobStatus(
        id=s.job_id,
        name=s.spec.name,
        state=s.state,
        created_at=s.created_at,
        started_at=s.started_at,
        updated_at=s.updated_at,
        ended_at=s.ended_at,
        reason=s.reason,
    )
    return status.wire()


class Controller:
    """Serialises all writes of a job behind its lock; caches job states (single writer)."""

    def __init__(
        self,
        settings: FlameSettings,
        store: JobStore,
        catalog: Catalog,
        publish: Publish,
        accounts: JobAccounts | None = None,
        learn_keys: LearnKeys | None = None,
    ) -> None:
        self.settings = settings
        self.learn_keys = learn_keys  # e.g. the provenance checks: no read of keys made here
        self.store = store
        self.catalog = catalog
        self.accounts = accounts  # None: jobs share the job_brokers credentials
        self.planner = Planner(
            settings, catalog, login_sorts=accounts.sorts if accounts is not None else ()
        )
        self.publish = publish
        self._locks: dict[str, asyncio.Lock] = {}
        self._cache: dict[str, _Entry] = {}
        # jobs whose last write failed: the log may hold events not yet published or projected
        self._unsettled: set[str] = set()

    def _lock(self, job_id: str) -> asyncio.Lock:
        return self._locks.setdefault(job_id, asyncio.Lock())

    async def _entry(self, job_id: str) -> _Entry:
        entry = self._cache.get(job_id)
        if entry is None:
            try:
                state, seen = await self.store.load(job_id)
            except UnfoldableLog as exc:
                await self.store.quarantine(job_id, exc.reason)
                self._unsettled.discard(job_id)
                log.error("job quarantined", job_id=job_id, reason=exc.reason)
                raise Conflict(f"job {job_id} is quarantined (failed): {exc.reason}") from exc
            if job_id in self._unsettled:
                await self._settle(job_id, state)
            if state is None or state.deleted:
                raise NotFound(f"job {job_id} not found")
            entry = self._cache[job_id] = _Entry(state, seen)
        return entry

    async def _settle(self, job_id: str, state: JobView | None) -> None:
        """After a failed write: project the replayed state, publish what the log holds unsent."""
        if state is not None and not state.deleted:
            await self.store.reproject(state)
        pending = await self.store.pending(job_id)
        self.publish(pending)
        self._unsettled.discard(job_id)
        log.info("job settled after a failed write", job_id=job_id, published=len(pending))

    async def settle(self) -> None:
        """Settle the jobs whose write failed, should no command or event come for them (the
        timers call this every pass)."""
        for job_id in sorted(self._unsettled):
            async with self._lock(job_id):
                if job_id not in self._unsettled:
                    continue
                try:
                    await self._entry(job_id)  # settles it, also a deleted or quarantined job
                except (NotFound, Conflict):
                    continue
                except Exception as exc:  # the store is still away: next pass
                    log.warning("job not settled yet", job_id=job_id, error=repr(exc))

    async def _owned(self, job_id: str, user_id: str) -> _Entry:
        entry = await self._entry(job_id)
        if entry.state.user_id != user_id:
            raise NotFound(f"job {job_id} not found")
        return entry

    # --- commands (RPC) ------------------------------------------------------------------------

    async def execute(self, cmd: Any) -> dict[str, Any]:
        """Run one RPC command; returns its result or raises a FlameError. A command with an
        idempotency key runs once per key and user: a retry gets the first result."""
        if not cmd.idempotency_key:
            return await self._execute(cmd)
        key = f"{cmd.user_id}/{cmd.idempotency_key}"
        async with self._lock(f"command {key}"):
            return await self._once(key, cmd)

    async def _once(self, key: str, cmd: Any) -> dict[str, Any]:
        job_id = getattr(cmd, "job_id", None) or str(ObjectId())
        claim = CommandRecord(key, cmd.kind, job_id, cmd.correlation_id or uuid.uuid4().hex)
        stored = await self.store.claim_command(claim)
        if stored is not None:
            created = cmd.kind == "job.create"  # its job id was drawn by the first attempt
            if stored.kind != cmd.kind or not (created or stored.job_id == job_id):
                raise Invalid(
                    f"idempotency key {cmd.idempotency_key!r} was used for another command "
                    f"({stored.kind} of job {stored.job_id})"
                )
            if stored.result is not None:
                log.info("command retry answered", kind=cmd.kind, job_id=stored.job_id)
                return stored.result
            claim = stored  # an earlier attempt failed or died: did its events get logged?
        if stored is not None and await self.store.committed(claim.job_id, claim.correlation_id):
            result = await self._result_of(cmd, claim.job_id)
        else:
            result = await self._execute(
                cmd.model_copy(update={"correlation_id": claim.correlation_id}), claim.job_id
            )
        await self.store.finish_command(key, result)
        return result

    async def _result_of(self, cmd: Any, job_id: str) -> dict[str, Any]:
        """The answer to a command whose events were logged by an attempt that died."""
        if isinstance(cmd, c.DeleteJob | c.ReportTaskStatus):
            return {}
        async with self._lock(job_id):
            return job_status((await self._entry(job_id)).state)

    async def _execute(self, cmd: Any, job_id: str | None = None) -> dict[str, Any]:
        if isinstance(cmd, c.CreateJob):
            return await self.create(cmd, job_id)
        async with self._lock(cmd.job_id):
            if isinstance(cmd, c.ReportTaskStatus):
                await self._report(cmd)
                return {}
            entry = await self._owned(cmd.job_id, cmd.user_id)
            planned: list[PlannedTask] = []
            command: d.Command
            if isinstance(cmd, c.UpdateJob):
                spec, planned = await self.planner.plan(cmd.job_id, cmd.user_id, cmd.spec)
                command = d.Update(spec, planned)
            elif isinstance(cmd, c.DeleteJob):
                command = d.Delete()
            elif isinstance(cmd, c.StartJob):
                command = d.Start(await self.catalog.unmanaged_computes())
            elif isinstance(cmd, c.StopJob):
                command = d.Stop()
            else:
                raise FlameError(f"unknown command {type(cmd).__name__}")
            events = d.decide(entry.state, command, cmd.correlation_id)
            login = await self._open_login(cmd.job_id) if isinstance(command, d.Start) else None
            await self._commit(entry, events, planned=planned, login=login)
            if isinstance(cmd, c.DeleteJob):
                self._forget(cmd.job_id)
                return {}
            return job_status(entry.state)

    async def create(self, cmd: c.CreateJob, job_id: str | None = None) -> dict[str, Any]:
        job_id = job_id or str(ObjectId())
        spec, planned = await self.planner.plan(job_id, cmd.user_id, cmd.spec)
        create = d.Create(job_id, cmd.user_id, spec, planned)
        events, folded = d.decide_folded(None, create, cmd.correlation_id)
        events = _stamp(events, 0)
        state = replace(folded, last_seq=len(events))
        keys = new_keys(planned)
        async with self._lock(job_id):
            await self.store.create(state, events, planned, keys)
            self._cache[job_id] = _Entry(state)
        if self.learn_keys is not None:
            self.learn_keys(job_id, keys, True)
        self.publish(events)
        log.info("job created", job_id=job_id, tasks=len(planned))
        return job_status(state)

    async def _report(self, cmd: c.ReportTaskStatus) -> None:
        status = cmd.status
        event = TaskStatusChangedEvent(
            payload=TaskStatusChanged(state=status.state, log_tail=status.log),
            job_id=cmd.job_id,
            task_id=cmd.task_id,
            source="apiserver",
            correlation_id=cmd.correlation_id,
        )
        entry = await self._entry(cmd.job_id)
        events = d.decide(entry.state, d.Observe(event), cmd.correlation_id)
        await self._commit(entry, events)

    # --- observed events (bus) and timers -------------------------------------------------------

    async def observe(self, job_id: str, events: Sequence[EventBase]) -> None:
        """Apply a batch of bus events of one job in one write; skips duplicates and bad events."""
        async with self._lock(job_id):
            try:
                entry = await self._entry(job_id)
            except (NotFound, Conflict) as exc:
                log.warning("events dropped", job_id=job_id, count=len(events), error=str(exc))
                return
            state, seen = entry.state, set(entry.seen)
            new: list[EventBase] = []
            for event in events:
                if event.id in seen:
                    continue
                seen.add(event.id)
                try:
                    decided, folded = d.decide_folded(state, d.Observe(event))
                except FlameError as exc:
                    log.warning(
                        "event rejected", job_id=job_id, event_id=event.id, error=exc.message
                    )
                    continue
                if decided:  # folded once by decide; only the seqs are new
                    new.extend(_stamp(decided, state.last_seq))
                    state = replace(folded, last_seq=state.last_seq + len(decided))
            observed = {e.id for e in events}
            await self._commit(entry, new, observed=observed, folded=state)

    async def tick(self, job_id: str, now: datetime | None = None) -> None:
        """Let the timer act on a job whose deadline passed (maxRunTime, deploy timeout or
        stop grace)."""
        async with self._lock(job_id):
            try:
                entry = await self._entry(job_id)
            except (NotFound, Conflict):
                return
            tick = d.Tick(
                now or datetime.now(UTC),
                self.settings.stop_grace_seconds,
                self.settings.deploy_timeout,
            )
            await self._commit(entry, d.decide(entry.state, tick))

    async def recover(self, job_ids: Sequence[str]) -> None:
        """Replay jobs after a restart; fix projections that lag behind the log."""
        for job_id in job_ids:
            async with self._lock(job_id):
                try:
                    entry = await self._entry(job_id)
                except (NotFound, Conflict):  # gone, or quarantined: the others still recover
                    continue
                await self.store.reproject(entry.state)

    # --- writing ----------------------------------------------------------------------------------

    async def _commit(
        self,
        entry: _Entry,
        events: Sequence[EventBase],
        *,
        observed: set[str] | None = None,
        planned: Sequence[PlannedTask] = (),
        folded: JobView | None = None,
        login: BrokerLogin | None = None,
    ) -> None:
        """Append `events` (already stamped and folded into `folded` if given; with the job's
        new broker `login` when it starts) and publish them."""
        if not events:
            return
        if folded is None:
            events = _stamp(events, entry.state.last_seq)
            folded = entry.state
            for e in events:
                folded = evolve(folded, e)
        state = folded
        observed = observed or set()
        keys = new_keys(list(planned)) if planned else None
        try:
            await self.store.append(
                state,
                events,
                observed=observed,
                planned=planned,
                keys=keys,
                before=entry.state,
                login=login,
            )
        except SeqTaken:  # nothing stored: another controller wrote the job meanwhile
            self._forget(state.job_id)
            raise
        except Exception:
            # Some of the write may be stored (events without projections): reload from the log
            # next time, and publish what it holds then (the redelivered cause is then a
            # duplicate, so it would not do it).
            self._forget(state.job_id)
            self._unsettled.add(state.job_id)
            raise
        if keys and self.learn_keys is not None:
            self.learn_keys(state.job_id, keys, False)
        ended = state.deleted or (state.state.is_terminal and not entry.state.state.is_terminal)
        entry.state = state
        entry.seen.update(e.id for e in events)
        if state.state.is_terminal:
            entry.seen.clear()  # terminal jobs are reloaded (and re-deduplicated) from the log
            self._cache.pop(state.job_id, None)
        self.publish([e for e in events if e.id not in observed])
        if ended:
            await self._close_login(state.job_id, stored=not state.deleted)

    def _forget(self, job_id: str) -> None:
        self._cache.pop(job_id, None)

    def forget_jobs(self, drop: Callable[[str], bool]) -> None:
        """Drop the cached states of the jobs `drop` selects (another controller writes them now;
        they are replayed from the log if they come back)."""
        for job_id in [j for j in self._cache if drop(j)]:
            del self._cache[job_id]

    # --- the job's data-plane broker login ------------------------------------------------------

    async def _open_login(self, job_id: str) -> BrokerLogin | None:
        """Before the start is committed: the job's broker user (stored on its tasks with the
        start's events); None when jobs share the job_brokers credentials."""
        if self.accounts is None:
            return None
        try:
            login = await self.accounts.open(job_id)
        except Exception as exc:
            raise FlameError(f"cannot start job {job_id}: {exc}") from exc
        log.info(
            "job broker user created", job_id=job_id, user=login.user, brokers=sorted(login.sorts)
        )
        return login

    async def _close_login(self, job_id: str, *, stored: bool) -> None:
        """The job ended: delete its broker user (a failure is left to the next start's sweep)."""
        if self.accounts is None:
            return
        try:
            await self.accounts.close(job_id)
            if stored:
                await self.store.set_broker_login(job_id, None)
        except Exception as exc:
            log.error("job broker user not deleted", job_id=job_id, error=str(exc))
            return
        log.info("job broker user deleted", job_id=job_id)


def _stamp(events: Sequence[EventBase], last_seq: int) -> list[EventBase]:
    return [e.model_copy(update={"seq": last_seq + i}) for i, e in enumerate(events, start=1)]
