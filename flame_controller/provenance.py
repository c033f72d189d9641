"""Which consumed events and commands the controller trusts: proven by the service secret, or an
agent event by its task's key (`flame_common.proofs`); each job's task keys loaded once, cached."""

from __future__ import annotations

from collections.abc import Sequence

from flame_common.logs import get_logger
from flame_common.proofs import TASK, command_refusal, event_refusal
from flame_common.settings import FlameSettings
from flame_common.taskkeys import TaskKeys
from flame_controller.ports import JobStore
from schemas.events import EventBase

log = get_logger(__name__)


class Provenance:
    """Checks proofs against the service secret and the task keys of each job (from `store`)."""

    def __init__(self, settings: FlameSettings, store: JobStore) -> None:
        self._secret = settings.service_secret
        self._keys = TaskKeys(store.task_keys)
        if not self._secret:
            log.warning(
                "FLAME_SERVICE_SECRET is empty: anyone with broker credentials can forge "
                "service events and commands (`flame up` sets one per stack)"
            )

    async def refused(
        self, job_id: str, events: Sequence[EventBase], proofs: Sequence[str]
    ) -> set[int]:
        """Positions of the events (of one job) that are not proven; each is logged (never a
        key). The job's keys are loaded once, and again when an agent names a task not among
        them (tasks added by an update)."""
        proven = zip(events, proofs, strict=True)
        agents = [e.task_id or "" for e, p in proven if p.startswith(TASK)]
        keys = await self._keys.of(job_id, agents) if agents else {}
        refused = set()
        for i, (event, proof) in enumerate(zip(events, proofs, strict=True)):
            why = event_refusal(event, proof, secret=self._secret, task_keys=keys)
            if why is not None:
                refused.add(i)
                log.warning(
                    "unproven event dead-lettered",
                    type=event.type,
                    event_id=event.id,
                    job_id=job_id,
                    task_id=event.task_id,
                    source=event.source,
                    reason=why,
                )
        return refused

    def learn(self, job_id: str, keys: dict[str, str], complete: bool) -> None:
        """Task keys the controller just made (a created job's, `complete`, or added tasks'):
        its agents' first events need no read of them."""
        self._keys.learn(job_id, keys, complete=complete)

    def command_refusal(self, body: bytes, proof: str) -> str | None:
        """Why a command is refused (not proven by the service secret); None when it is not."""
        why = command_refusal(self._secret, body, proof)
        if why is not None:
            log.warning("unproven command refused", reason=why)
        return why
