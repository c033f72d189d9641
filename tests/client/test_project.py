"""`flame_sdk.project` (what `flamectl run` does) on the apiserver's in-memory stack: registering a
design folder, reusing what is registered with the same content, dataset names to ids."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from flame_apiserver.app import create_app
from flame_apiserver.auth import token_hash
from flame_common.settings import FlameSettings
from flame_sdk.cli.app import app as flamectl
from flame_sdk.client import FlameClient
from flame_sdk.project import (
    job_spec,
    load_project,
    parse_settings,
    register,
    resolve_datasets,
    unzip_files,
)
from schemas.errors import BadRequest, NotFound
from tests.apiserver.conftest import ADMIN_TOKEN, FAST_STREAM, MemoryStack

EXAMPLE = Path(__file__).parents[2] / "examples" / "two_tier_fedavg"


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[FlameClient]:
    """A FlameClient of user alice on the apiserver app over in-memory ports."""
    settings = FlameSettings(
        home=tmp_path / "flame-home",
        mongo_url="",
        log_json=False,
        admin_token_sha256=token_hash(ADMIN_TOKEN),
    )
    app = create_app(settings, stream_timing=FAST_STREAM, ports=MemoryStack().ports())
    async with (
        app.router.lifespan_context(app),
        FlameClient(
            "http://flame", "alice", token=ADMIN_TOKEN, transport=httpx.ASGITransport(app=app)
        ) as c,
    ):
        await c.computes.register("default")  # the realm of the examples' datasets
        yield c


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    copy = tmp_path / "two_tier"
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


async def test_register_then_reuse_on_a_second_run(client: FlameClient, folder: Path) -> None:
    project = load_project(folder)
    first = await register(client, project, "two_tier_fedavg")
    assert (first.schema_revision, first.code_revision, first.reused) == (1, 1, set())
    assert sorted(first.datasets) == ["dataset1", "dataset2", "dataset3", "dataset4"]
    assert len(set(first.datasets.values())) == 4
    registered = {d.id: d.url for d in await client.datasets.list()}
    assert registered[first.datasets["dataset1"]] == "digits://0/4"
    code = unzip_files(await client.code.download("two_tier_fedavg"))
    assert sorted(code) == ["aggregator/main.py", "trainer/main.py"]  # role folders only

    again = await register(client, project, "two_tier_fedavg")
    assert again.datasets == first.datasets
    assert (again.schema_revision, again.code_revision) == (1, 1)
    assert again.reused == {"design", "schema", "code", *first.datasets}
    assert len(await client.datasets.list()) == 4

    (folder / "trainer" / "main.py").write_text("print('changed')\n")
    changed = await register(client, load_project(folder), "two_tier_fedavg")
    assert (changed.schema_revision, changed.code_revision) == (1, 2)
    assert "code" not in changed.reused and "schema" in changed.reused


async def test_the_job_runs_on_the_registered_ids_with_overrides(
    client: FlameClient, folder: Path
) -> None:
    project = load_project(folder)
    done = await register(client, project, "digits")
    spec = job_spec(project, done, parse_settings(["rounds=2", "minEnds.aggregator=2"]))
    assert spec.design_id == "digits"
    groups = spec.data_spec[0].dataset_groups["default"]
    assert groups == [done.datasets[f"dataset{i}"] for i in range(1, 5)]
    hp = spec.model_spec.hyperparameters
    assert hp["rounds"] == 2 and hp["minEnds"] == {"aggregator": 2} and hp["epochs"] == 2


async def test_names_resolve_to_registered_datasets_only_when_asked_to_register(
    client: FlameClient, folder: Path
) -> None:
    spec = load_project(folder).job
    with pytest.raises(NotFound, match=r"dataset1\.json.*flamectl create dataset"):
        await resolve_datasets(client, spec, folder, register=False)
    await register(client, load_project(folder), "two_tier_fedavg")
    resolved, found = await resolve_datasets(client, spec, folder, register=False)
    assert resolved.data_spec[0].dataset_groups["default"] == list(found.datasets.values())
    ids = {d.id for d in await client.datasets.list()}
    assert set(found.datasets.values()) == ids


def test_missing_files_and_role_folders_are_named(folder: Path) -> None:
    shutil.rmtree(folder / "trainer")
    with pytest.raises(BadRequest, match=r"no folder 'trainer/' for role 'trainer'"):
        load_project(folder)
    (folder / "job.json").unlink()
    with pytest.raises(BadRequest, match=r"no job\.json"):
        load_project(folder)


def test_settings_parse_json_values_and_nest_dotted_keys() -> None:
    parsed = parse_settings(["rounds=2", "model=mlp", "minEnds.aggregator=4", "lr=0.5"])
    assert parsed == {"rounds": 2, "model": "mlp", "minEnds": {"aggregator": 4}, "lr": 0.5}
    with pytest.raises(BadRequest, match="KEY=VALUE"):
        parse_settings(["rounds"])


def test_flamectl_run_names_the_missing_file(tmp_path: Path) -> None:
    (tmp_path / "schema.json").write_text("{}")
    result = CliRunner().invoke(flamectl, ["run", str(tmp_path)])
    assert result.exit_code == 3
    assert "no job.json" in result.output


@pytest.mark.parametrize(
    "name", sorted(p.name for p in EXAMPLE.parent.iterdir() if (p / "job.json").is_file())
)
async def test_every_example_is_reused_whole_on_a_second_run(
    client: FlameClient, name: str
) -> None:
    project = load_project(EXAMPLE.parent / name)
    first = await register(client, project, name)
    again = await register(client, project, name)
    assert again.reused == {"design", "schema", "code", *first.datasets}
    assert again.datasets == first.datasets


async def test_a_changed_schema_is_a_new_revision(client: FlameClient, folder: Path) -> None:
    await register(client, load_project(folder), "two_tier_fedavg")
    schema = json.loads((folder / "schema.json").read_text())
    schema["description"] = "changed"
    (folder / "schema.json").write_text(json.dumps(schema))
    changed = await register(client, load_project(folder), "two_tier_fedavg")
    assert changed.schema_revision == 2 and "schema" not in changed.reused
    assert (await client.schemas.get("two_tier_fedavg")).description == "changed"
