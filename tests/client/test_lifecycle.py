"""The whole resource lifecycle through the real flamectl against a real apiserver + controller.

Agents do not take part: the test plays them by publishing `task.status_changed` on the bus.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flame_common.settings import FlameSettings
from flame_sdk.cli.exit_codes import ExitCode
from flame_sdk.client import FlameClient
from flame_sdk.localstack import wait_state
from schemas.events import TaskStatusChanged, TaskStatusChangedEvent
from schemas.states import JobState
from tests.client.live import LiveStack, flamectl

pytestmark = pytest.mark.integration

MNIST = Path(__file__).parents[1] / "data" / "flame_examples" / "mnist"
USER = "alice"


@pytest.fixture
def stack(settings: FlameSettings) -> Iterator[LiveStack]:
    live = LiveStack(settings)
    live.start()
    yield live
    live.stop()


@pytest.fixture
def cli_env(stack: LiveStack, tmp_path: Path) -> dict[str, str]:
    """flamectl reads its endpoint, user and token from a config file named by FLAME_CONFIG."""
    home = tmp_path / "home"
    home.mkdir()
    config = tmp_path / "flame.yaml"
    config.write_text(
        f"apiserver:\n  endpoint: {stack.endpoint}\nuser: {USER}\ntoken: {stack.token}\n"
    )
    for name in ("FLAME_APISERVER", "FLAME_USER", "FLAME_TOKEN"):
        os.environ.pop(name, None)
    return {"HOME": str(home), "FLAME_CONFIG": str(config)}


class Ctl:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def __call__(self, *args: str, code: int = 0) -> str:
        result = flamectl(*args, env=self.env)
        assert result.returncode == code, f"flamectl {' '.join(args)}: {result.stderr}"
        return result.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self("--output", "json", *args))


def make_job_files(root: Path, dataset_id: str) -> Path:
    root.mkdir()
    shutil.copy(MNIST / "job.json", root / "job.json")
    shutil.copy(MNIST / "modelSpec.json", root / "modelSpec.json")
    data_spec = [{"role": "trainer", "datasetGroups": {"us": [dataset_id]}}]
    (root / "dataSpec.json").write_text(json.dumps(data_spec))
    return root / "job.json"


def make_code(root: Path) -> Path:
    for role in ("trainer", "aggregator"):
        (root / role).mkdir(parents=True)
        (root / role / "main.py").write_text(f"print('{role}')\n")
    return root


async def report_all(stack: LiveStack, client: FlameClient, job_id: str, state: JobState) -> None:
    """Play every agent of the job: publish its task's new state."""
    for task in await client.tasks.list(job_id):
        payload = TaskStatusChanged(
            state=state, exit_code=0 if state is JobState.COMPLETED else None
        )
        event = TaskStatusChangedEvent(
            payload=payload, job_id=job_id, task_id=task.task_id, source="test-agent"
        )
        await stack.publish(event)


async def run_to_completion(stack: LiveStack, job_id: str) -> None:
    async with FlameClient(stack.endpoint, USER, token=stack.token) as client:
        await wait_state(client, job_id, {JobState.DEPLOYING, JobState.RUNNING})
        await report_all(stack, client, job_id, JobState.RUNNING)
        await wait_state(client, job_id, {JobState.RUNNING})
        await report_all(stack, client, job_id, JobState.COMPLETED)


async def terminate_tasks(stack: LiveStack, job_id: str) -> None:
    async with FlameClient(stack.endpoint, USER, token=stack.token) as client:
        await wait_state(client, job_id, {JobState.STOPPING, JobState.TERMINATED})
        await report_all(stack, client, job_id, JobState.TERMINATED)


def watch(env: dict[str, str], job_id: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "flame_sdk.cli", "job", "watch", job_id],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_resource_lifecycle(stack: LiveStack, cli_env: dict[str, str], tmp_path: Path) -> None:
    ctl = Ctl(cli_env)
    # design, schema, code
    assert "New design 'mnist' created" in ctl("create", "design", "mnist", "-d", "digits")
    assert [d["id"] for d in ctl.json("get", "designs")] == ["mnist"]
    ctl("create", "schema", "mnist", str(MNIST / "schema.json"))
    assert {r["name"] for r in ctl.json("get", "schema", "mnist")["roles"]} == {
        "trainer",
        "aggregator",
    }
    assert ctl.json("get", "design", "mnist")["schema"]["channels"][0]["name"] == "param-channel"
    ctl("update", "design", "mnist", "-n", "MNIST")
    assert ctl.json("get", "design", "mnist")["name"] == "MNIST"
    assert "revision 1" in ctl("create", "code", "mnist", str(make_code(tmp_path / "code")))
    assert ctl.json("get", "coderevision", "mnist")["revision"] == 1
    ctl("get", "code", "mnist", "--out", str(tmp_path / "back.zip"))
    with zipfile.ZipFile(io.BytesIO((tmp_path / "back.zip").read_bytes())) as archive:
        assert sorted(archive.namelist()) == ["aggregator/main.py", "trainer/main.py"]

    # dataset and job
    dataset_id = ctl.json("create", "dataset", str(MNIST / "dataset.json"))["id"]
    listed = ctl.json("get", "datasets")
    assert [(d["id"], d["userId"], d["isPublic"]) for d in listed] == [(dataset_id, USER, True)]
    assert dataset_id in ctl("get", "datasets", "--all")
    job_file = make_job_files(tmp_path / "job", dataset_id)
    created = ctl.json("create", "job", str(job_file))
    job_id = created["id"]
    assert created["state"] == "ready"
    assert ctl.json("get", "job", job_id)["dataSpec"][0]["datasetGroups"] == {"us": [dataset_id]}
    assert [j["id"] for j in ctl.json("get", "jobs")] == [job_id]
    tasks = ctl.json("get", "tasks", job_id)
    assert sorted(t["role"] for t in tasks) == ["aggregator", "trainer"]
    trainer = next(t for t in tasks if t["role"] == "trainer")
    config = ctl.json("get", "task", job_id, trainer["taskId"], "--config")
    assert (config["role"], config["job"]["id"], config["backend"]) == ("trainer", job_id, "mqtt")
    assert "key" not in config

    # run: start, refuse removal while active, play the agents, watch until completed
    assert ctl.json("start", "job", job_id)["state"] in {"starting", "deploying"}
    ctl("remove", "job", job_id, code=ExitCode.CONFLICT)
    watcher = watch(cli_env, job_id)
    assert watcher.stdout is not None
    first = watcher.stdout.readline()  # the watch is following before the agents report
    assert f"job {job_id}: " in first and "tasks: ready=2" in first
    stack.submit(run_to_completion(stack, job_id)).result(60)
    out, err = watcher.communicate(timeout=60)
    assert watcher.returncode == ExitCode.OK, err
    lines = out.splitlines()
    assert any("-> running" in line for line in lines)
    assert "running -> completed" in lines[-1] and "tasks: completed=2" in lines[-1]
    assert ctl.json("get", "job", job_id, "--status")["state"] == "completed"
    events = _event_lines(ctl, job_id)
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    assert any(
        e["type"] == "job.state_changed" and e["payload"]["to_state"] == "completed" for e in events
    )

    # a second run that is stopped ends terminated (non-zero exit of `job watch`)
    second = ctl.json("create", "job", str(job_file))["id"]
    ctl("start", "job", second)
    ctl("stop", "job", second)
    stack.submit(terminate_tasks(stack, second)).result(60)
    watched = flamectl("job", "watch", second, env=cli_env)
    assert watched.returncode == ExitCode.JOB_TERMINATED, watched.stderr

    # cleanup through the CLI
    for job in (job_id, second):
        ctl("remove", "job", job)
    assert ctl.json("get", "jobs") == []
    ctl("remove", "dataset", dataset_id)
    ctl("remove", "code", "mnist")
    ctl("remove", "schema", "mnist")
    ctl("remove", "design", "mnist")
    assert ctl.json("get", "designs") == []
    missing = flamectl("get", "design", "mnist", env=cli_env)
    assert missing.returncode == ExitCode.NOT_FOUND
    assert missing.stderr.startswith("Error: ") and len(missing.stderr.splitlines()) == 1


def _event_lines(ctl: Ctl, job_id: str) -> list[dict[str, Any]]:
    return [
        json.loads(line) for line in ctl("--output", "json", "job", "events", job_id).splitlines()
    ]


def test_unknown_job_and_stream_errors(stack: LiveStack, cli_env: dict[str, str]) -> None:
    ctl = Ctl(cli_env)
    ctl("get", "job", "nope", "--status", code=ExitCode.NOT_FOUND)
    ctl("job", "watch", "nope", code=ExitCode.NOT_FOUND)
    ctl("start", "job", "nope", code=ExitCode.NOT_FOUND)
    ctl("job", "events", "nope", "--follow", code=ExitCode.NOT_FOUND)  # an error, not a retry loop
