"""A throwaway local stack (`flame up` in its own FLAME_HOME and namespace) to run jobs on.

For end-to-end tests and benchmarks: `local_stack(mongo_url, tmp)` starts the stack with the
`flame` command itself and stops it with `flame down` (the admin token `flame up` writes to
`$FLAME_HOME/config.yaml` is `LocalStack.token`; `client()` uses it); `create_job` registers
a design from a Flame example folder (`schema.json`, `dataSpec.json`) with one script per role
and public stand-in datasets; `create_example_job` one of the project's `examples/` as the
quickstart does; `wait_state` and `job_events` follow the job.
`delete_namespace` removes the durable queues and exchanges the services left on the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from flame_common.embedded import free_port
from flame_common.titles import ZYGOTE
from flame_sdk.client import FlameClient
from schemas.dataset import DatasetInfo
from schemas.design import DesignSchema
from schemas.errors import Conflict
from schemas.events import EventBase
from schemas.job import JobSpec, JobStatus, ModelSpec, RoleDatasetGroups

# Durable queues and exchanges the services declare per namespace (agent inboxes expire).
DURABLE_QUEUES = (
    "controller.events",
    "controller.commands",
    "notifier",
    "notifier.agents",
    "deployer.default",
    "dead-letters",
)
DURABLE_EXCHANGES = ("events", "agents", "dead-letters")
# Settings of a stack that notices lost agents and stops jobs within seconds.
QUICK = {
    "FLAME_HEARTBEAT_INTERVAL": "0.5",
    "FLAME_HEARTBEAT_TIMEOUT": "3",
    "FLAME_STOP_GRACE_SECONDS": "2",
}


def _flame_command() -> str:
    """The `flame` console script of this interpreter's environment (else the one on PATH)."""
    beside = Path(sys.executable).parent / "flame"
    return str(beside) if beside.exists() else "flame"


@dataclass
class LocalStack:
    home: Path
    env: dict[str, str]
    endpoint: str

    @property
    def namespace(self) -> str:
        return self.env["FLAME_NAMESPACE"]

    def flame(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run `flame <args>` against this stack."""
        return subprocess.run(
            [_flame_command(), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def pid(self, part: str) -> int:
        """Pid of a part of the stack (`mongo`, `apiserver`, ..., `deployer`)."""
        return int(json.loads((self.home / "run" / f"{part}.pid").read_text())["pid"])

    def zygote(self) -> psutil.Process | None:
        """The deployer's zygote, if it runs one."""
        children = psutil.Process(self.pid("deployer")).children()
        return next((p for p in children if _name(p) == ZYGOTE), None)

    def workers(self) -> list[psutil.Process]:
        """Every process below the deployer (flamelets and their role code), but its zygote."""
        below = psutil.Process(self.pid("deployer")).children(recursive=True)
        return [p for p in below if _name(p) != ZYGOTE]

    def _config(self) -> dict[str, Any]:
        """The flamectl config file `flame up` wrote."""
        import yaml

        return dict(yaml.safe_load((self.home / "config.yaml").read_text()))

    @property
    def token(self) -> str:
        """The stack's admin token, from the config file `flame up` wrote."""
        return str(self._config()["token"])

    @property
    def ca_file(self) -> str:
        """The CA of the apiserver's certificate (`flame up --tls`), else ""."""
        return str(self._config()["apiserver"].get("caFile", ""))

    def client(self, user: str = "alice") -> FlameClient:
        return FlameClient(self.endpoint, user, token=self.token, ca_file=self.ca_file or None)


def _name(proc: psutil.Process) -> str:
    try:
        return proc.name()
    except psutil.Error:
        return ""


@contextlib.contextmanager
def local_stack(
    mongo_url: str | None,
    tmp: Path,
    namespace: str | None = None,
    *,
    tls: bool = False,
    **settings: str,
) -> Iterator[LocalStack]:
    """`flame up` with FLAME_HOME under `tmp`, its own namespace and API port; `flame down` after.

    `mongo_url`: an existing MongoDB (None: the stack's embedded one). `tls`: `flame up --tls`
    (HTTPS; certificates under `tmp/home/tls`). `settings`: extra FLAME_* variables, over `QUICK`;
    the services' metrics listeners get free ports unless `settings` name them.
    """
    namespace = namespace or f"e{uuid.uuid4().hex[:10]}"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLAME_")}
    env.update(
        FLAME_HOME=str(tmp / "home"),
        FLAME_NAMESPACE=namespace,
        FLAME_MONGO_DB=namespace,
        FLAME_API_PORT=str(port),
        **QUICK,
        **settings,
    )
    for service in ("CONTROLLER", "NOTIFIER", "DEPLOYER"):  # stacks run side by side
        env.setdefault(f"FLAME_METRICS_PORT_{service}", str(free_port()))
    if mongo_url:
        env["FLAME_MONGO_URL"] = mongo_url
    scheme = "https" if tls else "http"
    stack = LocalStack(tmp / "home", env, f"{scheme}://127.0.0.1:{port}")
    result = stack.flame("up", *(["--tls"] if tls else []))
    try:
        if result.returncode != 0:
            raise RuntimeError(f"flame up failed:\n{result.stderr}{result.stdout}")
        yield stack
    finally:
        stack.flame("down")


async def delete_namespace(rabbit_url: str, namespace: str) -> None:
    """Delete the durable queues (the controller's partition queues included) and exchanges the
    services declare in `namespace`."""
    import aio_pika

    from flame_common.settings import FlameSettings
    from flame_common.topology import topology

    layout = topology(FlameSettings(namespace=namespace))
    queues = [
        *(f"{namespace}.{name}" for name in DURABLE_QUEUES),
        layout.controllers.name,
        *(q.name for q in layout.partition_queues),
    ]
    exchanges = [f"{namespace}.{name}" for name in DURABLE_EXCHANGES]
    connection = await aio_pika.connect(rabbit_url)
    async with connection:
        for kind, names in (("queue", queues), ("exchange", exchanges)):
            for name in names:
                channel = await connection.channel()  # a failed delete closes its channel
                with contextlib.suppress(Exception):
                    if kind == "queue":
                        await channel.queue_delete(name)
                    else:
                        await channel.exchange_delete(name)
                with contextlib.suppress(Exception):
                    await channel.close()


def code_zip(scripts: dict[str, Path]) -> bytes:
    """Design code: one folder per role holding `main.py`, a copy of the role's script."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for role, script in scripts.items():
            zf.writestr(f"{role}/main.py", script.read_text())
    return buf.getvalue()


async def create_job(
    client: FlameClient,
    folder: Path,
    scripts: dict[str, Path],
    *,
    max_run_time: int = 120,
    backend: str = "rabbitmq",
) -> str:
    """Design + schema + code + public datasets of a Flame example folder, then a job over them.

    Every dataset id of the folder's `dataSpec.json` becomes a public stand-in dataset (a
    `file:///data/...` URL in realm `default/<group>`); the job's backend is `backend`.
    """
    design_id = f"{folder.name.replace('_', '-')}-{uuid.uuid4().hex[:6]}"
    await client.designs.create(design_id)
    schema = DesignSchema.model_validate_json((folder / "schema.json").read_text())
    await client.schemas.create(design_id, schema)
    await client.code.upload(design_id, code_zip(scripts))
    groups: dict[str, list[str]] = {}
    for spec in json.loads((folder / "dataSpec.json").read_text()):
        for group, ids in spec["datasetGroups"].items():
            for _ in ids:
                dataset = DatasetInfo(
                    url=f"file:///data/{uuid.uuid4().hex}",
                    data_format="npy",
                    realm=f"default/{group}",
                    is_public=True,
                )
                groups.setdefault(group, []).append(await client.datasets.create(dataset))
    job = JobSpec(
        name=f"{folder.name} e2e",
        design_id=design_id,
        backend=backend,
        max_run_time=max_run_time,
        data_spec=[RoleDatasetGroups(role="trainer", dataset_groups=groups)],
        model_spec=ModelSpec(),
    )
    return (await client.jobs.create(job)).id


async def create_example_job(
    client: FlameClient,
    folder: Path,
    *,
    hyperparameters: dict[str, Any] | None = None,
    backend: str | None = None,
    max_run_time: int | None = None,
) -> str:
    """One of Flame's example folders (`examples/<name>`) as `scripts/quickstart.sh` registers it:
    design, schema, the code of every `<role>/main.py`, its `dataset*.json` datasets, then a job
    from its `job.json` (model spec `hyperparameters` updated, `backend` and `max_run_time`
    replaced when given)."""
    design_id = f"{folder.name.replace('_', '-')}-{uuid.uuid4().hex[:6]}"
    await client.designs.create(design_id)
    schema = DesignSchema.model_validate_json((folder / "schema.json").read_text())
    await client.schemas.create(design_id, schema)
    roles = sorted(p.parent.name for p in folder.glob("*/main.py"))
    await client.code.upload(design_id, code_zip({r: folder / r / "main.py" for r in roles}))
    data_spec = json.loads((folder / "dataSpec.json").read_text())
    for entry in data_spec:
        for group, names in entry["datasetGroups"].items():
            entry["datasetGroups"][group] = [
                await _dataset(
                    client, DatasetInfo.model_validate_json((folder / f"{n}.json").read_text())
                )
                for n in names
            ]
    job = json.loads((folder / "job.json").read_text())
    model = json.loads((folder / "modelSpec.json").read_text())
    model["hyperparameters"].update(hyperparameters or {})
    spec = JobSpec(
        name=job["name"],
        design_id=design_id,
        backend=backend or job["backend"],
        max_run_time=max_run_time or job.get("maxRunTime", 600),
        data_spec=[RoleDatasetGroups.model_validate(e) for e in data_spec],
        model_spec=ModelSpec.model_validate(model),
    )
    return (await client.jobs.create(spec)).id


async def _dataset(client: FlameClient, dataset: DatasetInfo) -> str:
    """The id of the user's dataset with this URL, registered first if it is not yet."""
    try:
        return await client.datasets.create(dataset)
    except Conflict:  # registered by an earlier job of the same user
        mine = await client.datasets.list(limit=10_000)
        return next(d.id for d in mine if d.url == dataset.url)


async def wait_state(
    client: FlameClient, job_id: str, states: set[str], timeout: float = 60
) -> JobStatus:
    """Poll the job until its state is one of `states`; TimeoutError after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        status = await client.jobs.status(job_id)
        if status.state.value in states:
            return status
        if loop.time() > deadline:
            raise TimeoutError(f"job {job_id} still {status.state.value} after {timeout:g} s")
        await asyncio.sleep(0.2)


async def job_events(client: FlameClient, job_id: str) -> list[EventBase]:
    """The job's event log so far."""
    return [e async for e in client.jobs.events(job_id)]
