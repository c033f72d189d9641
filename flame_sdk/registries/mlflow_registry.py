"""`mlflow` registry: one MLflow run per task, models in the MLflow model registry.

Experiment = the job id; run name = `<role>-<task id[:8]>` (tags carry job name/id, task, role).
The job-level task (the top aggregator) also opens the job's parent run (`job-<job name>`, tag
`flame.run=job`), logs its metrics there as well and finishes it when it closes, so the job's
curve is one run in the MLflow UI; every other task run is nested under it (tag
`mlflow.parentRunId`, set when the task's run opens or, if the parent was not there yet, closes).
`save_model(name, weights, model)` logs the weights as `weights/<save id>/weights.safetensors`
and, when `model` is a torch module, its whole state dict (buffers and dtypes kept) as
`state_dict.safetensors` beside it; that directory is registered as a new version of `name`.
Nothing is pickled: `load_model` (numpy arrays) and `load_state_dict` (torch tensors) read the
safetensors files of that version's run, so loading a model never runs code.
`close()` marks the run FINISHED. mlflow (and torch) are imported only when first needed.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from flame_common.extras import require
from flame_sdk.registries.base import (
    Registry,
    RunIdentity,
    Weights,
    check_metrics,
    parse_version,
)
from flame_sdk.registries.files import WEIGHTS_FILE, load_weights, save_weights

STATE_DICT_FILE = "state_dict.safetensors"

if TYPE_CHECKING:
    from mlflow import MlflowClient

ALREADY_EXISTS = "RESOURCE_ALREADY_EXISTS"
RUN_KIND = "flame.run"  # tag: "job" on the parent run of a job, "task" on its tasks' runs
PARENT = "mlflow.parentRunId"  # the tag MLflow nests runs by
DOES_NOT_EXIST = "RESOURCE_DOES_NOT_EXIST"


def _error_code(exc: Exception) -> str:
    return str(getattr(exc, "error_code", ""))


def _is_torch_module(model: Any) -> bool:
    torch = sys.modules.get("torch")  # a torch model implies torch is already imported
    return torch is not None and isinstance(model, torch.nn.Module)


def _check_name(name: str) -> None:
    if not name or "'" in name:
        raise ValueError(f"model name {name!r} must be non-empty and free of quotes")


def _save_state_dict(model: Any, path: Path) -> None:
    """A torch module's state dict as safetensors (tensors copied: shared storage is refused)."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(path))


class MlflowRegistry(Registry):
    """An MLflow tracking server (`uri`) as registry."""

    sort: ClassVar[str] = "mlflow"

    def __init__(self, identity: RunIdentity) -> None:
        if not identity.uri:
            raise ValueError("mlflow registry needs the tracking server uri")
        super().__init__(identity)
        self._client: MlflowClient | None = None
        self.run_id: str | None = None
        self.parent_run_id: str | None = None
        self.closed = False

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            require("ml", "the mlflow registry", ["mlflow"])
            from mlflow import MlflowClient

            self._client = MlflowClient(
                tracking_uri=self.identity.uri, registry_uri=self.identity.uri
            )
        return self._client

    @property
    def run_name(self) -> str:
        return f"{self.identity.role}-{self.identity.task_id[:8]}"

    def setup_run(self) -> None:
        self._run()

    def _run(self) -> str:
        if self.closed:
            raise RuntimeError("mlflow registry: the run was closed")
        if self.run_id is None:
            experiment_id = self._experiment_id()
            self.parent_run_id = self._parent_run(experiment_id)
            tags = {
                **self._job_tags(),
                "flame.task_id": self.identity.task_id,
                "flame.role": self.identity.role,
                RUN_KIND: "task",
            }
            if self.parent_run_id is not None:
                tags[PARENT] = self.parent_run_id
            run = self.client.create_run(experiment_id, run_name=self.run_name, tags=tags)
            self.run_id = run.info.run_id
        return self.run_id

    def _job_tags(self) -> dict[str, str]:
        return {"flame.job_id": self.identity.job_id, "flame.job_name": self.identity.job_name}

    def _parent_run(self, experiment_id: str) -> str | None:
        """The job's parent run; the job-level task creates it when it is not there yet."""
        runs = self.client.search_runs(
            [experiment_id], filter_string=f"tags.`{RUN_KIND}` = 'job'", max_results=1
        )
        if runs:
            return str(runs[0].info.run_id)
        if not self.identity.job_level:
            return None
        tags = {**self._job_tags(), RUN_KIND: "job"}
        name = f"job-{self.identity.job_name or self.identity.job_id}"
        return str(self.client.create_run(experiment_id, run_name=name, tags=tags).info.run_id)

    def _experiment_id(self) -> str:
        from mlflow.exceptions import MlflowException

        name = self.identity.job_id
        experiment = self.client.get_experiment_by_name(name)
        if experiment is None:
            try:
                return self.client.create_experiment(name)
            except MlflowException as exc:  # another task of the job created it first
                if _error_code(exc) != ALREADY_EXISTS:
                    raise
            experiment = self.client.get_experiment_by_name(name)
            if experiment is None:
                raise RuntimeError(f"mlflow experiment {name!r} vanished while being created")
        if experiment.lifecycle_stage == "deleted":
            self.client.restore_experiment(experiment.experiment_id)
        return str(experiment.experiment_id)

    def save_metrics(self, step: int, metrics: Mapping[str, Any]) -> None:
        from mlflow.entities import Metric

        values = check_metrics(metrics)
        stamp = int(time.time() * 1000)
        batch = [Metric(key, value, stamp, step) for key, value in values.items()]
        self.client.log_batch(self._run(), metrics=batch)
        if self.identity.job_level and self.parent_run_id is not None:
            self.client.log_batch(self.parent_run_id, metrics=batch)

    def save_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        batch = [
            Param(str(key), value if isinstance(value, str) else json.dumps(value, default=str))
            for key, value in params.items()
        ]
        self.client.log_batch(self._run(), params=batch)

    def save_model(
        self, name: str, weights: Mapping[str, np.ndarray], model: Any = None
    ) -> int | None:
        _check_name(name)
        run_id = self._run()
        folder = f"weights/{uuid.uuid4().hex[:12]}"  # one per save: versions never overwrite
        with tempfile.TemporaryDirectory() as tmp:
            save_weights(Path(tmp, "weights", WEIGHTS_FILE), weights)
            if _is_torch_module(model):
                _save_state_dict(model, Path(tmp, "weights", STATE_DICT_FILE))
            self.client.log_artifacts(run_id, str(Path(tmp, "weights")), folder)
        self._ensure_registered(name)
        version = self.client.create_model_version(name, f"runs:/{run_id}/{folder}", run_id=run_id)
        return int(version.version)

    def _ensure_registered(self, name: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.create_registered_model(name)
        except MlflowException as exc:
            if _error_code(exc) != ALREADY_EXISTS:
                raise

    def load_model(self, name: str, version: int | str = "latest") -> Weights | None:
        found = self._version_files(name, version)
        if found is None:
            return None
        run_id, folder = found
        with tempfile.TemporaryDirectory() as tmp:
            local = self.client.download_artifacts(run_id, f"{folder}/{WEIGHTS_FILE}", tmp)
            return load_weights(Path(local))

    def load_state_dict(self, name: str, version: int | str = "latest") -> dict[str, Any] | None:
        """The torch state dict saved with version `version` of `name` (tensors, no pickle), for
        `module.load_state_dict`; None when that version or its state dict does not exist."""
        from mlflow.exceptions import MlflowException
        from safetensors.torch import load_file

        found = self._version_files(name, version)
        if found is None:
            return None
        run_id, folder = found
        with tempfile.TemporaryDirectory() as tmp:
            try:
                local = self.client.download_artifacts(run_id, f"{folder}/{STATE_DICT_FILE}", tmp)
            except (MlflowException, OSError):  # saved without a torch model
                return None
            return dict(load_file(local))

    def _version_files(self, name: str, version: int | str) -> tuple[str, str] | None:
        """(run id, artifact folder) of version `version` (a number or "latest") of `name`."""
        from mlflow.exceptions import MlflowException

        _check_name(name)
        number = parse_version(version)
        try:
            if number is None:
                found = self.client.search_model_versions(f"name = '{name}'")
                if not found:
                    return None
                number = max(int(v.version) for v in found)
            entry = self.client.get_model_version(name, str(number))
        except MlflowException as exc:
            if _error_code(exc) == DOES_NOT_EXIST:
                return None
            raise
        prefix = f"runs:/{entry.run_id}/"
        if not entry.run_id or not str(entry.source).startswith(prefix):
            return None
        return entry.run_id, str(entry.source).removeprefix(prefix)

    def close(self) -> None:
        if self.run_id is not None and not self.closed:
            if self.parent_run_id is None:  # the parent came after this run opened: nest now
                experiment_id = self.client.get_run(self.run_id).info.experiment_id
                self.parent_run_id = self._parent_run(experiment_id)
                if self.parent_run_id is not None:
                    self.client.set_tag(self.run_id, PARENT, self.parent_run_id)
            self.client.set_terminated(self.run_id, "FINISHED")
            if self.identity.job_level and self.parent_run_id is not None:
                self.client.set_terminated(self.parent_run_id, "FINISHED")
            self.closed = True
