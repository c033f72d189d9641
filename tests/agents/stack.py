"""A local stack for end-to-end tests, started and stopped with the `flame` command itself."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

from flame_common.embedded import free_port
from flame_sdk.client import FlameClient
from flamelet.zygote import NAME
from schemas.dataset import DatasetInfo
from schemas.design import DesignSchema
from schemas.events import EventBase
from schemas.job import JobSpec, JobStatus, ModelSpec, RoleDatasetGroups
from tests.agents.helpers import ROLES
from tests.conftest import track_namespace

ZYGOTE = NAME.decode()
EXAMPLES = Path(__file__).parents[1] / "data" / "flame_examples"


@dataclass
class LocalStack:
    home: Path
    env: dict[str, str]
    endpoint: str

    def flame(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["flame", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def pid(self, part: str) -> int:
        return int(json.loads((self.home / "run" / f"{part}.pid").read_text())["pid"])

    def workers(self) -> list[psutil.Process]:
        """Every process below the deployer (flamelets and their role code), but its zygote."""
        below = psutil.Process(self.pid("deployer")).children(recursive=True)
        return [p for p in below if _name(p) != ZYGOTE]

    def role_pids(self, job_id: str) -> list[int]:
        files = (self.home / "work" / job_id).glob("*/role.pid")
        return [int(text) for text in (p.read_text().strip() for p in files) if text]

    def client(self) -> FlameClient:
        return FlameClient(self.endpoint, "alice")


def _name(proc: psutil.Process) -> str:
    try:
        return proc.name()
    except psutil.Error:
        return ""


@contextmanager
def local_stack(mongo_url: str | None, tmp: Path, **settings: str) -> Iterator[LocalStack]:
    namespace = track_namespace(f"e{uuid.uuid4().hex[:10]}")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLAME_")}
    env.update(
        FLAME_HOME=str(tmp / "home"),
        FLAME_NAMESPACE=namespace,
        FLAME_MONGO_DB=namespace,
        FLAME_API_PORT=str(port),
        FLAME_HEARTBEAT_INTERVAL="0.5",
        FLAME_HEARTBEAT_TIMEOUT="3",
        FLAME_STOP_GRACE_SECONDS="2",
        **settings,
    )
    if mongo_url:
        env["FLAME_MONGO_URL"] = mongo_url
    stack = LocalStack(tmp / "home", env, f"http://127.0.0.1:{port}")
    result = stack.flame("up")
    try:
        assert result.returncode == 0, result.stderr + result.stdout
        yield stack
    finally:
        stack.flame("down")


def code_zip(roles: dict[str, str]) -> bytes:
    """Design code: one folder per role with `main.py` from test data `roles/<script>`."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for role, script in roles.items():
            zf.writestr(f"{role}/main.py", (ROLES / script / "main.py").read_text())
    return buf.getvalue()


async def create_job(
    client: FlameClient, folder: Path, roles: dict[str, str], *, max_run_time: int = 120
) -> str:
    """Design + schema + code + public datasets of a Flame example folder, then a job over them."""
    design_id = f"{folder.name.replace('_', '-')}-{uuid.uuid4().hex[:6]}"
    await client.designs.create(design_id)
    schema = DesignSchema.model_validate_json((folder / "schema.json").read_text())
    await client.schemas.create(design_id, schema)
    await client.code.upload(design_id, code_zip(roles))
    groups: dict[str, list[str]] = {}
    for spec in json.loads((folder / "dataSpec.json").read_text()):
        for group, ids in spec["datasetGroups"].items():
            for _ in ids:
                realm = f"default/{group}"
                dataset = DatasetInfo(
                    url=f"file:///data/{uuid.uuid4().hex}",
                    data_format="npy",
                    realm=realm,
                    is_public=True,
                )
                groups.setdefault(group, []).append(await client.datasets.create(dataset))
    job = JobSpec(
        name=f"{folder.name} e2e",
        design_id=design_id,
        backend="mqtt",
        max_run_time=max_run_time,
        data_spec=[RoleDatasetGroups(role="trainer", dataset_groups=groups)],
        model_spec=ModelSpec(),
    )
    return (await client.jobs.create(job)).id


async def wait_state(
    client: FlameClient, job_id: str, states: set[str], timeout: float = 60
) -> JobStatus:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        status = await client.jobs.status(job_id)
        if status.state.value in states:
            return status
        assert loop.time() < deadline, f"job stuck in {status.state.value}"
        await asyncio.sleep(0.2)


async def job_events(client: FlameClient, job_id: str) -> list[EventBase]:
    return [e async for e in client.jobs.events(job_id)]
