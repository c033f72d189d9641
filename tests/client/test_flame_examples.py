"""Every Flame example through flamectl against a real apiserver + controller: its schema and
dataset files as they are (`//` comments included), a stub code zip, then its job."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flame_common.embedded import EmbeddedMongo
from flame_common.settings import FlameSettings
from flame_sdk.cli.exit_codes import ExitCode
from flame_sdk.client import FlameClient
from schemas.task_config import BROKER_BACKENDS, TaskConfig
from tests.client.live import LiveStack, flamectl
from tests.conftest import track_namespace

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).parents[1] / "data" / "flame_examples"
NAMES = sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir())

# The computes the examples' realms need, as fiab registers them: `default` (realm "default";
# public datasets whose region has no compute) and `eu1` (a realm of the hybrid example).
COMPUTES = {"default": "default/us", "eu1": "default/eu"}

# hybrid/dataSpec.json is not valid JSON (`{` for `[`, a trailing comma); this is what it says.
HYBRID_DATA_SPEC = [
    {
        "role": "trainer",
        "datasetGroups": {
            "eu": ["641dad83843b4d449a827464", "641dad83843b4d449a827465"],
            "us": ["641dad83843b4d449a827466", "641dad83843b4d449a827467"],
        },
    }
]


@pytest.fixture(scope="module")
def stack(
    mongo_server: EmbeddedMongo, rabbit_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveStack]:
    """One stack for every example (each example is registered by its own user)."""
    namespace = track_namespace(f"t{uuid.uuid4().hex[:10]}")
    settings = FlameSettings(
        home=tmp_path_factory.mktemp("flame-home"),
        mongo_url=mongo_server.url,
        mongo_db=namespace,
        rabbit_url=rabbit_url,
        namespace=namespace,
        log_json=False,
        job_registry={"sort": "local", "uri": ""},
    )
    live = LiveStack(settings)
    live.start()
    asyncio.run(_register_computes(live))
    yield live
    live.stop()


class Ctl:
    """The real flamectl (a subprocess) against the live stack; JSON output."""

    def __init__(self, stack: LiveStack, user: str, home: Path) -> None:
        home.mkdir()
        self.env = {
            "HOME": str(home),
            "FLAME_APISERVER": stack.endpoint,
            "FLAME_USER": user,
            "FLAME_TOKEN": stack.token,
        }

    def run(self, *args: str, code: int = 0) -> str:
        result = flamectl("--output", "json", *args, env=self.env)
        assert result.returncode == code, f"flamectl {' '.join(args)}: {result.stderr}"
        return result.stderr if code else result.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args))


def _natural(path: Path) -> tuple[Any, ...]:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", path.name))


def _data_spec(root: Path) -> Any:
    text = (root / "dataSpec.json").read_text()
    if root.name == "hybrid":
        with pytest.raises(json.JSONDecodeError):
            json.loads(text)
        return HYBRID_DATA_SPEC
    return json.loads(text)


def _flame_ids(data_spec: Any) -> list[str]:
    return sorted({d for e in data_spec for ids in e["datasetGroups"].values() for d in ids})


def _stub_code(root: Path, roles: list[str]) -> Path:
    for role in roles:
        (root / role).mkdir(parents=True)
        (root / role / "main.py").write_text(f"print({role!r})\n")
    return root


async def _register_computes(live: LiveStack) -> None:
    async with FlameClient(live.endpoint, "ops", token=live.token) as client:
        for compute_id, region in COMPUTES.items():
            await client.computes.register(compute_id, region=region, api_key="k")


async def _configs(stack: LiveStack, user: str, job_id: str) -> list[TaskConfig]:
    """The task config of every task of the job."""
    async with FlameClient(stack.endpoint, user, token=stack.token) as client:
        tasks = await client.tasks.list(job_id)
        return [await client.tasks.config(job_id, t.task_id) for t in tasks]


async def _tasks(stack: LiveStack, user: str, job_id: str) -> list[tuple[str, str]]:
    """(role, dataset url) of every task of the job."""
    return sorted((c.role, c.dataset) for c in await _configs(stack, user, job_id))


@pytest.mark.parametrize("name", NAMES)
def test_flame_example_registers_and_creates_its_job(
    stack: LiveStack, tmp_path: Path, name: str
) -> None:
    root = EXAMPLES / name
    ctl = Ctl(stack, name, tmp_path / "home")
    job = json.loads((root / "job.json").read_text())
    design = job["designId"]
    ctl.run("create", "design", design)
    schema = ctl.json("create", "schema", design, str(root / "schema.json"))
    roles = [r["name"] for r in schema["roles"]]
    ctl.run("create", "code", design, str(_stub_code(tmp_path / "code", roles)))

    # Flame's dataset ids are ObjectIds, increasing with creation: each example's author
    # registered its dataset*.json files in name order, so the sorted ids map to them in order.
    files = sorted(root.glob("dataset*.json"), key=_natural)
    data_spec = _data_spec(root)
    flame_ids = _flame_ids(data_spec)
    assert len(flame_ids) == len(files), f"{name}: {len(files)} files for {flame_ids}"
    ours = {
        old: ctl.json("create", "dataset", str(f))["id"]
        for old, f in zip(flame_ids, files, strict=True)
    }
    for entry in data_spec:
        groups = entry["datasetGroups"]
        entry["datasetGroups"] = {g: [ours[d] for d in ids] for g, ids in groups.items()}

    job_dir = tmp_path / "job"
    job_dir.mkdir()
    shutil.copy(root / "job.json", job_dir / "job.json")
    (job_dir / "dataSpec.json").write_text(json.dumps(data_spec))
    shutil.copy(root / "modelSpec.json", job_dir / "modelSpec.json")
    model_spec = json.loads((root / "modelSpec.json").read_text())
    channels = json.loads((root / "schema.json").read_text())["channels"]
    backends = {job["backend"]} | {c["backend"] for c in channels if c.get("backend")}
    if unsupported := sorted(backends - set(BROKER_BACKENDS)):  # p2p: hier_mnist, hybrid
        refusal = ctl.run("create", "job", str(job_dir / "job.json"), code=ExitCode.INVALID)
        assert f"'{unsupported[0]}' is not supported by this platform" in refusal
        assert ctl.json("get", "jobs") == []  # refused at creation: nothing half-made
        return
    created = ctl.json("create", "job", str(job_dir / "job.json"))
    assert created["state"] == "ready"
    tasks = asyncio.run(_tasks(stack, name, created["id"]))
    assert {role for role, _ in tasks} == set(roles)
    urls = sorted(json.loads(f.read_text())["url"] for f in files)
    assert sorted(url for role, url in tasks if url) == urls
    # The job's own registry where its modelSpec names one (hybrid: dummy), else the platform's.
    registry = model_spec.get("registry", {}).get("sort") or "local"
    configs = asyncio.run(_configs(stack, name, created["id"]))
    assert {c.registry.sort for c in configs} == {registry}
