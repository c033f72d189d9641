"""Benchmark: the controller driving a 1,000-task job with simulated agents (prints ratio last).

Runs standalone: its own nx-27017, the real RabbitMQ at FLAME_RABBIT_URL (default localhost), the
controller in-process. Figures: job creation time, start -> all-running latency, sustained events/s
through the controller (incl. persistence) and the raw aio-pika publish+consume rate of this run.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import tempfile
import time
import uuid
import zipfile
from pathlib import Path

import aio_pika

from flame_common.bus import make_broker, names
from flame_common.documents import (
    CodeDoc,
    ComputeDoc,
    DatasetDoc,
    DesignDoc,
    EventDoc,
    JobDoc,
    TaskDoc,
)
from flame_common.embedded import start_embedded_mongo
from flame_common.logs import configure_logging
from flame_common.settings import FlameSettings
from flame_controller.app import running_controller
from schemas.commands import CommandReply, CreateJob, StartJob
from schemas.events import make_event
from schemas.job import JobSpec

TASKS = 1000
RAW_MESSAGES = 4000
SCHEMA = {
    "name": "bench",
    "roles": [{"name": "trainer", "isDataConsumer": True, "groupAssociation": [{"ch": "g"}]}],
    "channels": [{"name": "ch", "pair": ["trainer", "trainer"], "groupBy": {"value": ["g"]}}],
}


def _code() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("trainer/main.py", "print('hi')\n")
    return buf.getvalue()


async def raw_rate(url: str) -> float:
    """aio-pika alone: publish (confirms, pipelined) and consume event-sized messages."""
    body = make_event(
        "task.status_changed", {"state": "running"}, job_id="j" * 24, task_id="t" * 40
    )
    payload = body.model_dump_json().encode()
    conn = await aio_pika.connect_robust(url)
    async with conn:
        channel = await conn.channel()
        await channel.set_qos(prefetch_count=1000)
        queue = await channel.declare_queue(exclusive=True)
        got = 0
        done = asyncio.Event()

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal got
            await message.ack()
            got += 1
            if got == RAW_MESSAGES:
                done.set()

        await queue.consume(on_message)
        start = time.perf_counter()
        for i in range(0, RAW_MESSAGES, 250):
            await asyncio.gather(
                *(
                    channel.default_exchange.publish(
                        aio_pika.Message(payload), routing_key=queue.name
                    )
                    for _ in range(min(250, RAW_MESSAGES - i))
                )
            )
        await done.wait()
        return RAW_MESSAGES / (time.perf_counter() - start)


async def seed(user: str) -> list[str]:
    code = _code()
    await DesignDoc(
        user_id=user, design_id="bench", schema=SCHEMA, schema_revision=1, code_revision=1
    ).insert()
    await CodeDoc(
        user_id=user,
        design_id="bench",
        revision=1,
        file_name="c.zip",
        data=code,
        size=len(code),
        sha256="-",
    ).insert()
    await ComputeDoc(compute_id="default", region="default/us").insert()
    ids = [f"ds{i:05d}" for i in range(TASKS)]
    await DatasetDoc.insert_many(
        [
            DatasetDoc(
                dataset_id=i,
                user_id=user,
                url=f"file:///data/{i}",
                data_format="npy",
                realm="default",
            )
            for i in ids
        ]
    )
    return ids


class Agents:
    """Simulated agents: register on worker.requested, report running on task.assigned."""

    def __init__(self, settings: FlameSettings, job_id: str) -> None:
        self.settings, self.job_id = settings, job_id
        self.sent = 0

    async def start(self) -> None:
        self.conn = await aio_pika.connect_robust(self.settings.rabbit_url)
        self.channel = await self.conn.channel()
        await self.channel.set_qos(prefetch_count=1000)
        self.exchange = await self.channel.declare_exchange(
            names(self.settings).events_exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await self.channel.declare_queue(exclusive=True)
        for key in ("worker.requested", "task.assigned"):
            await queue.bind(self.exchange, routing_key=key)
        await queue.consume(self.on_message, no_ack=True)

    async def publish(self, type_: str, payload: dict[str, object], task_id: str) -> None:
        event = make_event(type_, payload, job_id=self.job_id, task_id=task_id, source="bench")
        message = aio_pika.Message(
            event.model_dump_json().encode(),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=event.id,
        )
        await self.exchange.publish(message, routing_key=type_)
        self.sent += 1

    async def publish_all(self, type_: str, payloads: list[tuple[dict[str, object], str]]) -> None:
        for i in range(0, len(payloads), 250):
            await asyncio.gather(*(self.publish(type_, p, t) for p, t in payloads[i : i + 250]))

    async def on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        data = json.loads(message.body)
        if data["type"] == "worker.requested":
            ids = data["payload"]["task_ids"]
            await self.publish_all("agent.registered", [({"agent_id": f"a-{t}"}, t) for t in ids])
        elif data["type"] == "task.assigned":
            await self.publish("task.status_changed", {"state": "running"}, data["task_id"])


async def wait_all_tasks(job_id: str, state: str) -> None:
    """Poll until no task of the job is in another state (an indexed find_one: cheap on nx-27017,
    unlike count_documents, whose aggregation would steal the CPU the controller is measured on)."""
    query = {"job_id": job_id, "state": {"$ne": state}}
    while await TaskDoc.get_pymongo_collection().find_one(query, {"_id": 1}) is not None:
        await asyncio.sleep(0.05)


async def wait_job(job_id: str, state: str) -> None:
    jobs = JobDoc.get_pymongo_collection()
    while (await jobs.find_one({"job_id": job_id}, {"state": 1}) or {}).get("state") != state:
        await asyncio.sleep(0.05)


async def main() -> None:
    configure_logging("bench", level="WARNING", json=False)
    rabbit = os.environ.get("FLAME_RABBIT_URL", "amqp://guest:guest@127.0.0.1:5672/")
    with tempfile.TemporaryDirectory() as tmp:
        mongo = start_embedded_mongo(Path(tmp) / "mongo")
        ns = f"bench{uuid.uuid4().hex[:8]}"
        settings = FlameSettings(
            home=Path(tmp) / "home",
            mongo_url=mongo.url,
            mongo_db=ns,
            rabbit_url=rabbit,
            namespace=ns,
            log_level="WARNING",
        )
        try:
            raw = await raw_rate(rabbit)
            async with running_controller(settings):
                ids = await seed("bench")
                client = make_broker(settings)
                await client.connect()
                spec = JobSpec(
                    name="bench",
                    design_id="bench",
                    backend="mqtt",
                    max_run_time=3600,
                    data_spec=[{"role": "trainer", "dataset_groups": {"g": ids}}],
                )  # type: ignore[list-item]

                async def call(cmd: object) -> dict[str, object]:
                    body = json.dumps(cmd.model_dump(mode="json")).encode()  # type: ignore[attr-defined]
                    msg = await client.request(
                        body,
                        queue=names(settings).command_queue,
                        timeout=60,
                        content_type="application/json",
                    )
                    result = CommandReply.model_validate_json(msg.body).unwrap()
                    assert isinstance(result, dict)
                    return result

                t0 = time.perf_counter()
                job = await call(CreateJob(user_id="bench", spec=spec))
                creation = time.perf_counter() - t0
                job_id = str(job["id"])
                agents = Agents(settings, job_id)
                await agents.start()

                logged_before = await EventDoc.find({"job_id": job_id}).count()
                t_start = time.perf_counter()
                await call(StartJob(user_id="bench", job_id=job_id))
                await wait_all_tasks(job_id, "running")
                all_running = time.perf_counter() - t_start

                tasks = await TaskDoc.find({"job_id": job_id}).to_list()
                t_c = time.perf_counter()
                await agents.publish_all(
                    "task.status_changed", [({"state": "completed"}, t.task_id) for t in tasks]
                )
                await wait_job(job_id, "completed")
                done = time.perf_counter()
                completion_rate = TASKS / (done - t_c)
                consumed_rate = agents.sent / (done - t_start)
                logged = await EventDoc.find({"job_id": job_id}).count() - logged_before
                sustained = logged / (done - t_start)
                await agents.conn.close()
                await client.stop()
        finally:
            mongo.stop()
    print(f"job creation ({TASKS} tasks, RPC round trip): {creation:.2f} s (target < 2 s)")
    print(f"start -> all {TASKS} tasks running: {all_running:.2f} s")
    print(
        f"burst of {TASKS} completion reports until job completed: {completion_rate:.0f} events/s"
    )
    print(f"agent events consumed, start -> completed: {consumed_rate:.0f} events/s")
    print(
        f"controller sustained: {sustained:.0f} events/s "
        f"({logged} events consumed or produced, each appended + projected, start -> completed)"
    )
    print(f"raw aio-pika publish+consume (same run): {raw:.0f} msg/s")
    print(f"ratio controller/raw: {sustained / raw:.2f} (target >= 0.25)")


if __name__ == "__main__":
    asyncio.run(main())
