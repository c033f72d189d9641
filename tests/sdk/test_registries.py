"""dummy and local registries: files written, read back, earlier runs kept."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from flame_sdk.registries import LocalRegistry, create_registry


def local(root: Path, task: str = "task-1") -> LocalRegistry:
    reg = create_registry("local", str(root), "job-1", "mnist", task, "aggregator")
    assert isinstance(reg, LocalRegistry)
    return reg


def weights() -> dict[str, np.ndarray]:
    return {
        "fc.weight": np.arange(6, dtype=np.float32).reshape(2, 3),
        "bn.num_batches_tracked": np.array(12, dtype=np.int64),
    }


def test_dummy_records_nothing() -> None:
    reg = create_registry("", "", "j", "n", "t", "trainer")
    reg.setup_run()
    reg.save_metrics(0, {"loss": 1.0})
    reg.save_params({"lr": 0.1})
    assert reg.save_model("m", weights()) is None
    assert reg.load_model("m", 1) is None
    reg.close()


def test_local_writes_metrics_params_and_models(tmp_path: Path) -> None:
    reg = local(tmp_path)
    reg.setup_run()
    reg.save_metrics(0, {"accuracy": 0.5, "loss": np.float32(2.0)})
    reg.save_metrics(1, {"accuracy": 0.75})
    reg.save_params({"rounds": 3, "optimizer": {"sort": "fedavg"}})
    assert reg.save_model("mnist-job-1", weights()) == 1
    second = {"fc.weight": np.ones((2, 3), np.float32), "bn.num_batches_tracked": np.array(13)}
    assert reg.save_model("mnist-job-1", second) == 2
    reg.close()

    run = tmp_path / "job-1" / "task-1"
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [(x["step"], x["metrics"]) for x in lines] == [
        (0, {"accuracy": 0.5, "loss": 2.0}),
        (1, {"accuracy": 0.75}),
    ]
    assert json.loads((run / "params" / "1.json").read_text())["optimizer"] == {"sort": "fedavg"}
    assert sorted(p.name for p in (run / "models" / "mnist-job-1").iterdir()) == [
        "1.safetensors",
        "2.safetensors",
    ]
    # read back, without setup_run, in a fresh registry object
    again = local(tmp_path)
    first = again.load_model("mnist-job-1", 1)
    assert first is not None
    np.testing.assert_array_equal(first["fc.weight"], weights()["fc.weight"])
    assert first["bn.num_batches_tracked"].dtype == np.int64
    assert int(first["bn.num_batches_tracked"]) == 12
    latest = again.load_model("mnist-job-1")
    assert latest is not None and latest["fc.weight"].tolist() == [[1.0] * 3] * 2
    assert again.load_model("mnist-job-1", 3) is None
    assert again.load_model("other") is None


def test_local_setup_keeps_earlier_runs_and_continues_numbering(tmp_path: Path) -> None:
    first = local(tmp_path)
    first.setup_run()
    first.save_metrics(0, {"loss": 1.0})
    first.save_params({"lr": 0.1})
    first.save_model("m", weights())
    second = local(tmp_path)
    second.setup_run()
    second.save_metrics(0, {"loss": 0.5})
    second.save_params({"lr": 0.2})
    assert second.save_model("m", weights()) == 2
    assert [m["metrics"]["loss"] for m in second.metrics()] == [1.0, 0.5]
    params = sorted(p.name for p in (second.run_dir / "params").iterdir())
    assert params == ["1.json", "2.json"]


def test_local_default_root_is_under_the_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    reg = create_registry("local", "", "job-9", "n", "task-9", "trainer")
    reg.save_metrics(4, {"loss": 0.1})
    assert (tmp_path / ".flame" / "registry" / "job-9" / "task-9" / "metrics.jsonl").is_file()
    file_uri = create_registry("local", f"file://{tmp_path}/x", "j", "n", "t", "trainer")
    file_uri.save_params({"a": 1})
    assert (tmp_path / "x" / "j" / "t" / "params" / "1.json").is_file()


def test_local_rejects_bad_input_before_writing(tmp_path: Path) -> None:
    reg = local(tmp_path)
    with pytest.raises(ValueError, match="'acc'"):
        reg.save_metrics(0, {"loss": 1.0, "acc": "high"})
    assert reg.metrics() == []
    with pytest.raises(ValueError, match="model name"):
        reg.save_model("../escape", weights())
    with pytest.raises(ValueError, match="version"):
        reg.load_model("m", "newest")
    with pytest.raises(ValueError, match="job id"):
        create_registry("local", str(tmp_path), "../up", "n", "t", "trainer")
    with pytest.raises(ValueError, match="unknown registry sort 's3'"):
        create_registry("s3", "", "j", "n", "t", "trainer")
    with pytest.raises(ValueError, match="uri"):
        create_registry("mlflow", "", "j", "n", "t", "trainer")
