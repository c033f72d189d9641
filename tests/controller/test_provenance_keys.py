"""The controller hands the task keys it makes to the provenance checks: no read per new job."""

from __future__ import annotations

from pathlib import Path

from flame_common.proofs import task_proof
from flame_common.settings import FlameSettings
from flame_controller.memory import MemoryJobStore
from flame_controller.provenance import Provenance
from flame_controller.service import Controller
from schemas import commands as c
from schemas.events import AgentRegistered
from schemas.job import JobSpec
from tests.controller.conftest import memory_catalog, mnist
from tests.controller.harness import event


class CountingStore(MemoryJobStore):
    """A memory store that counts reads of task keys."""

    def __init__(self) -> None:
        super().__init__(60)
        self.key_reads = 0

    async def task_keys(self, job_id: str) -> dict[str, str]:
        self.key_reads += 1
        return await super().task_keys(job_id)


async def test_the_agents_of_a_job_created_here_are_checked_without_reading_keys(
    tmp_path: Path,
) -> None:
    settings = FlameSettings(home=tmp_path, service_secret="s")
    store = CountingStore()
    provenance = Provenance(settings, store)
    controller = Controller(
        settings, store, memory_catalog(mnist()), lambda _: None, learn_keys=provenance.learn
    )
    spec = JobSpec.model_validate(mnist().spec)
    job_id = str((await controller.execute(c.CreateJob(user_id="alice", spec=spec)))["id"])
    tasks = await store.tasks(job_id)
    events = [
        event("agent.registered", AgentRegistered(agent_id="a"), job_id=job_id, task_id=t.task_id)
        for t in tasks
    ]
    proofs = [task_proof(t.key, e) for t, e in zip(tasks, events, strict=True)]
    proofs[0] = task_proof("wrong", events[0])
    assert await provenance.refused(job_id, events, proofs) == {0}
    assert store.key_reads == 0
