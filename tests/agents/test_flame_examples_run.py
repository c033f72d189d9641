"""Flame's control-plane examples as shipped, through flamectl on a `flame up` stack: each job
runs its stub roles to completion, or is refused at creation with a clear message."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from flame_common.embedded import EmbeddedMongo
from flame_sdk.cli.exit_codes import ExitCode
from schemas.task_config import BROKER_BACKENDS
from tests.agents.stack import LocalStack, local_stack
from tests.client.live import flamectl
from tests.client.test_flame_examples import EXAMPLES, NAMES, _data_spec, _flame_ids, _natural

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.fixture(scope="module")
def stack(
    mongo_server: EmbeddedMongo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    with local_stack(mongo_server.url, tmp_path_factory.mktemp("flame-examples")) as s:
        asyncio.run(_register_eu1(s))  # a realm of the hybrid example, as Flame's fiab has it
        yield s


async def _register_eu1(stack: LocalStack) -> None:
    async with stack.client() as client:
        await client.computes.register("eu1", region="default/eu", api_key="k")


def ctl(stack: LocalStack, home: Path, *args: str, code: int = 0, timeout: float = 60) -> str:
    env = {**stack.env, "HOME": str(home), "FLAME_USER": home.name}
    done = flamectl("--output", "json", *args, env=env, timeout=timeout)
    assert done.returncode == code, f"flamectl {' '.join(args)}: {done.stdout[-800:]}{done.stderr}"
    return done.stderr if code else done.stdout


@pytest.mark.parametrize("name", NAMES)
def test_a_flame_example_runs_its_stub_roles_or_is_refused_up_front(
    stack: LocalStack, tmp_path: Path, name: str
) -> None:
    root = EXAMPLES / name
    home = tmp_path / name.replace("_", "-")
    home.mkdir()
    job = json.loads((root / "job.json").read_text())
    design = job["designId"]
    ctl(stack, home, "create", "design", design)
    schema = json.loads(ctl(stack, home, "create", "schema", design, str(root / "schema.json")))
    code = tmp_path / "code"
    for role in (r["name"] for r in schema["roles"]):
        (code / role).mkdir(parents=True)
        (code / role / "main.py").write_text(f"print({role!r})\n")
    ctl(stack, home, "create", "code", design, str(code))

    files = sorted(root.glob("dataset*.json"), key=_natural)
    data_spec = _data_spec(root)
    ours = {
        old: json.loads(ctl(stack, home, "create", "dataset", str(f)))["id"]
        for old, f in zip(_flame_ids(data_spec), files, strict=True)
    }
    for entry in data_spec:
        groups = entry["datasetGroups"]
        entry["datasetGroups"] = {g: [ours[d] for d in ids] for g, ids in groups.items()}
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    shutil.copy(root / "job.json", job_dir / "job.json")
    shutil.copy(root / "modelSpec.json", job_dir / "modelSpec.json")
    (job_dir / "dataSpec.json").write_text(json.dumps(data_spec))

    channels = schema["channels"]
    backends = {job["backend"]} | {c["backend"] for c in channels if c.get("backend")}
    if unsupported := sorted(backends - set(BROKER_BACKENDS)):
        refusal = ctl(
            stack, home, "create", "job", str(job_dir / "job.json"), code=ExitCode.INVALID
        )
        assert f"'{unsupported[0]}' is not supported by this platform" in refusal
        return
    job_id = json.loads(ctl(stack, home, "create", "job", str(job_dir / "job.json")))["id"]
    ctl(stack, home, "start", "job", job_id)
    ctl(stack, home, "job", "watch", job_id, timeout=180)  # exit 0: completed
    tasks = json.loads(ctl(stack, home, "get", "tasks", job_id))
    assert tasks and {t["state"] for t in tasks} == {"completed"}, tasks
