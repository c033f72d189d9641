"""mlflow registry against a real MLflow server (sqlite backend, local artifacts)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest

from flame_common.embedded import free_port
from flame_sdk.registries import MlflowRegistry, create_registry
from tests.support.wait import wait_until

pytestmark = pytest.mark.integration


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=1) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="module")
def mlflow_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A single-worker MLflow server in its own process group, stopped after the module."""
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    exe = shutil.which("mlflow")
    command = [exe] if exe else [sys.executable, "-m", "mlflow"]
    command += [
        "server",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = (root / "server.log").open("wb")
    proc = subprocess.Popen(
        command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: _healthy(url) or proc.poll() is not None,
            timeout=90,
            interval=0.5,
            what=lambda: f"mlflow server up; its log:\n{(root / 'server.log').read_text()}",
        )
        if proc.poll() is not None:
            pytest.fail(f"mlflow server exited:\n{(root / 'server.log').read_text()}")
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def registry(url: str, task: str, role: str = "aggregator") -> MlflowRegistry:
    reg = create_registry("mlflow", url, "job-7f3a", "mnist", task, role)
    assert isinstance(reg, MlflowRegistry)
    return reg


def test_run_metrics_params_model_and_close(mlflow_url: str) -> None:
    from mlflow import MlflowClient

    reg = registry(mlflow_url, "0123456789abcdef")
    reg.setup_run()
    for round_ in (1, 2, 3):
        reg.save_metrics(round_ - 1, {"accuracy": 0.5 + 0.1 * round_, "loss": 1.0 / round_})
    reg.save_params({"rounds": 3, "learningRate": 0.01, "optimizer": {"sort": "fedavg"}})
    weights = {"w": np.arange(4, dtype=np.float32), "n": np.array(5, np.int64)}
    assert reg.save_model("mnist-job-7f3a", weights) == 1
    reg.close()
    reg.close()  # idempotent

    client = MlflowClient(tracking_uri=mlflow_url)
    experiment = client.get_experiment_by_name("job-7f3a")
    assert experiment is not None
    assert reg.run_id is not None
    run = client.get_run(reg.run_id)
    assert run.info.experiment_id == experiment.experiment_id
    assert run.info.run_name == "aggregator-01234567"
    assert run.info.status == "FINISHED"
    history = client.get_metric_history(reg.run_id, "accuracy")
    assert [(m.step, round(m.value, 6)) for m in history] == [(0, 0.6), (1, 0.7), (2, 0.8)]
    assert run.data.params == {
        "rounds": "3",
        "learningRate": "0.01",
        "optimizer": '{"sort": "fedavg"}',
    }
    versions = client.search_model_versions("name = 'mnist-job-7f3a'")
    assert [(v.name, v.version, v.run_id) for v in versions] == [
        ("mnist-job-7f3a", "1", reg.run_id)
    ]
    with pytest.raises(RuntimeError, match="closed"):
        reg.save_metrics(3, {"loss": 0.1})

    # read back through a fresh registry (another process would do the same)
    loaded = registry(mlflow_url, "fedcba9876543210", "trainer").load_model("mnist-job-7f3a", 1)
    assert loaded is not None
    assert loaded["w"].tolist() == [0.0, 1.0, 2.0, 3.0] and loaded["w"].dtype == np.float32
    assert loaded["n"].shape == () and int(loaded["n"]) == 5


def test_torch_models_are_stored_as_safetensors_and_loaded_without_pickle(
    mlflow_url: str,
) -> None:
    torch = pytest.importorskip("torch")
    from mlflow import MlflowClient

    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3))
    model[0].weight.data = model[0].weight.data.to(torch.float64)  # dtypes are kept
    weights = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    reg = registry(mlflow_url, "aaaabbbbccccdddd")
    assert reg.save_model("torch-job", weights, model=model) == 1
    assert reg.save_model("torch-job", {k: v + 1 for k, v in weights.items()}) == 2
    reg.close()

    client = MlflowClient(tracking_uri=mlflow_url)
    source = client.get_model_version("torch-job", "1").source
    folder = source.removeprefix(f"runs:/{reg.run_id}/")
    assert folder.startswith("weights/")
    run_files = [a.path for a in client.list_artifacts(reg.run_id or "")]
    assert run_files == ["weights"]  # no `model/` flavor: nothing pickled
    files = {a.path for a in client.list_artifacts(reg.run_id or "", folder)}
    assert files == {f"{folder}/weights.safetensors", f"{folder}/state_dict.safetensors"}

    state = reg.load_state_dict("torch-job", 1)
    assert state is not None and set(state) == set(model.state_dict())
    assert state["0.weight"].dtype == torch.float64
    assert state["1.num_batches_tracked"].dtype == torch.int64
    fresh = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3)).double()
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh[0].weight, model[0].weight)
    assert reg.load_state_dict("torch-job", 2) is None  # saved without a module
    latest, first = reg.load_model("torch-job"), reg.load_model("torch-job", 1)
    assert latest is not None and first is not None  # each version keeps its own weights
    np.testing.assert_allclose(latest["0.bias"], weights["0.bias"] + 1)
    np.testing.assert_allclose(first["0.bias"], weights["0.bias"])
    assert reg.load_model("torch-job", 9) is None and reg.load_state_dict("torch-job", 9) is None
    assert reg.load_model("no-such-model") is None
    assert client.get_run(reg.run_id or "").info.status == "FINISHED"


def test_tasks_of_one_job_share_the_experiment(mlflow_url: str) -> None:
    from mlflow import MlflowClient

    runs = [registry(mlflow_url, f"task{i}xxxxxxxx", "trainer") for i in range(2)]
    for step, reg in enumerate(runs):
        reg.save_metrics(step, {"loss": 1.0})  # sets the run up on first use
        # a model that is not a torch module (numpy framework): only the weights are registered
        assert reg.save_model(f"plain-{step}", {"a": np.ones(2)}, model={"a": np.ones(2)}) == 1
        reg.close()
    client = MlflowClient(tracking_uri=mlflow_url)
    experiment = client.get_experiment_by_name("job-7f3a")
    assert experiment is not None
    names = {
        r.info.run_name
        for r in client.search_runs([experiment.experiment_id])
        if r.info.run_name.startswith("trainer-task")
    }
    assert names == {"trainer-task0xxx", "trainer-task1xxx"}
    source = client.get_model_version("plain-1", "1").source
    assert source.startswith(f"runs:/{runs[1].run_id}/weights/")


def test_a_job_has_one_parent_run_with_its_curve_and_every_task_nested(mlflow_url: str) -> None:
    from mlflow import MlflowClient

    def reg(task: str, role: str, job_level: bool = False) -> MlflowRegistry:
        made = create_registry(
            "mlflow", mlflow_url, "job-parent", "digits", task, role, job_level=job_level
        )
        assert isinstance(made, MlflowRegistry)
        return made

    early = reg("trainer0xxxxxxxx", "trainer")  # opens before the job's parent run exists
    early.setup_run()
    top = reg("aggregatorxxxxxx", "aggregator", job_level=True)
    top.setup_run()
    late = reg("trainer1xxxxxxxx", "trainer")
    late.setup_run()
    for step, accuracy in enumerate((0.5, 0.7, 0.9)):
        top.save_metrics(step, {"test_accuracy": accuracy})
        late.save_metrics(step, {"train.runtime": 1.0})
    for r in (early, late, top):
        r.close()

    client = MlflowClient(tracking_uri=mlflow_url)
    parent = top.parent_run_id
    assert parent is not None and early.parent_run_id == late.parent_run_id == parent
    for r in (early, late, top):
        assert r.run_id is not None
        assert client.get_run(r.run_id).data.tags["mlflow.parentRunId"] == parent
    job_run = client.get_run(parent)
    assert job_run.info.run_name == "job-digits" and job_run.info.status == "FINISHED"
    curve = client.get_metric_history(parent, "test_accuracy")
    assert [(m.step, m.value) for m in curve] == [(0, 0.5), (1, 0.7), (2, 0.9)]
    assert client.get_metric_history(parent, "train.runtime") == []  # trainers' stay their own
