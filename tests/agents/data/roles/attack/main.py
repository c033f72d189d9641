"""Role code that tries to abuse the platform; writes what it managed to `attack.json`.

`PARAMS` is filled in by the test: the stack's namespace, the service account's user name and
the SHA-256 of its password, and another job's data exchange.
"""

import asyncio
import gc
import hashlib
import json
import os
import re
import sys
from pathlib import Path

import aio_pika
from aiormq.exceptions import ChannelAccessRefused

PARAMS: dict[str, str] = {}
HEX32 = re.compile(r"[0-9a-f]{32}")


def holds_service_password(text: str) -> bool:
    """Whether `text` contains the service account's password (32 hex digits, known by hash)."""
    return any(
        hashlib.sha256(t.encode()).hexdigest() == PARAMS["password_sha256"]
        for t in HEX32.findall(text)
    )


def read(path: str) -> str:
    try:
        return Path(path).read_bytes().decode(errors="replace")
    except OSError as exc:
        return f"denied: {type(exc).__name__}"


def python_leaks() -> list[str]:
    """Where the password is reachable from Python: frames' locals and containers' items."""
    where: list[str] = []
    frames = list(sys._current_frames().values())
    while frames:
        frame = frames.pop()
        for name, value in frame.f_locals.items():
            if holds_service_password(repr(value)):
                where.append(f"frame {frame.f_code.co_name}: {name}")
        if frame.f_back is not None:
            frames.append(frame.f_back)
    for obj in gc.get_objects():
        if obj is where or obj is frames:
            continue
        try:
            if isinstance(obj, dict):
                items = [x for kv in obj.items() for x in kv]
            elif isinstance(obj, (list, tuple)):
                items = list(obj)
            else:
                continue
            if any(isinstance(x, (str, bytes)) and holds_service_password(repr(x)) for x in items):
                keys = list(obj)[:5] if isinstance(obj, dict) else []
                where.append(f"{type(obj).__name__} {keys}")
        except Exception:
            continue
    return where


async def refused(connection, attempt) -> str:
    channel = await connection.channel(publisher_confirms=True)
    try:
        await attempt(channel)
    except ChannelAccessRefused:
        return "refused"
    except Exception as exc:
        return f"failed otherwise: {exc!r}"
    return "allowed"


async def broker_attacks(url: str) -> dict[str, str]:
    forged = aio_pika.Message(json.dumps({"type": "task.status_changed"}).encode())

    async def publish_event(channel):
        exchange = await channel.get_exchange(f"{PARAMS['namespace']}.events", ensure=False)
        await exchange.publish(forged, routing_key="task.status_changed")

    async def read_other_job(channel):
        queue = await channel.declare_queue(
            f"flame.data.{PARAMS['job_id']}.q.spy", exclusive=True, auto_delete=True
        )
        await channel.channel.queue_bind(queue.name, PARAMS["victim_exchange"], routing_key="#")

    connection = await aio_pika.connect(url, timeout=10)
    async with connection:
        return {
            "publish_event": await refused(connection, publish_event),
            "read_other_job": await refused(connection, read_other_job),
        }


config = json.loads(Path(sys.argv[1]).read_text())
PARAMS["job_id"] = config["job"]["id"]
login = next(b["host"] for b in config["brokers"] if b["sort"] == "rabbitmq")
sources = {
    "os.environ": "\n".join(f"{k}={v}" for k, v in os.environ.items()),
    "/proc/self/environ": read("/proc/self/environ"),
    "/proc/self/cmdline": read("/proc/self/cmdline"),
    "parent environ": read(f"/proc/{os.getppid()}/environ"),
    "parent cmdline": read(f"/proc/{os.getppid()}/cmdline"),
}
report = {
    "euid": os.geteuid(),
    "flame_env": sorted(k for k in os.environ if k.startswith("FLAME_")),
    "login_user": login.split("://", 1)[1].split(":", 1)[0],
    "leaks": sorted(name for name, text in sources.items() if holds_service_password(text)),
    "python_leaks": python_leaks(),
    "parent_environ": "denied" if sources["parent environ"].startswith("denied") else "read",
    "broker": asyncio.run(broker_attacks(login)),
}
Path(sys.argv[1]).with_name("attack.json").write_text(json.dumps(report))
print(json.dumps(report), flush=True)
