"""`local` registry: plain files under `<uri or ~/.flame/registry>/<job id>/<task id>/`.

Layout: `metrics.jsonl` (one line per save: step, unix time, metrics), `params/<n>.json`
(n = 1, 2, ...), `models/<name>/<version>.safetensors` (version = 1, 2, ...). Setting up a run
never deletes what earlier runs wrote; numbering continues. Everything is readable without a run
being set up, and nothing is pickled.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from flame_sdk.registries.base import (
    Registry,
    RunIdentity,
    Weights,
    check_metrics,
    parse_version,
)
from flame_sdk.registries.files import load_weights, save_weights

_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _component(what: str, value: str) -> str:
    if not _SAFE.match(value):
        raise ValueError(f"{what} {value!r} cannot name a directory (use letters, digits, ._-)")
    return value


def _numbers(directory: Path, suffix: str) -> list[int]:
    if not directory.is_dir():
        return []
    stems = (p.name.removesuffix(suffix) for p in directory.iterdir() if p.name.endswith(suffix))
    return sorted(int(s) for s in stems if s.isdigit())


def default_root() -> Path:
    return Path.home() / ".flame" / "registry"


class LocalRegistry(Registry):
    """Files on this machine."""

    sort: ClassVar[str] = "local"

    def __init__(self, identity: RunIdentity) -> None:
        super().__init__(identity)
        uri = identity.uri.removeprefix("file://")
        root = Path(uri).expanduser() if uri else default_root()
        self.run_dir = (
            root / _component("job id", identity.job_id) / _component("task id", identity.task_id)
        )

    def setup_run(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)

    def save_metrics(self, step: int, metrics: Mapping[str, Any]) -> None:
        line = json.dumps({"step": step, "time": time.time(), "metrics": check_metrics(metrics)})
        self.setup_run()
        with (self.run_dir / "metrics.jsonl").open("a", encoding="utf-8") as out:
            out.write(line + "\n")

    def save_params(self, params: Mapping[str, Any]) -> None:
        text = json.dumps(dict(params), indent=2, sort_keys=True, default=str)
        directory = self.run_dir / "params"
        directory.mkdir(parents=True, exist_ok=True)
        number = max(_numbers(directory, ".json"), default=0) + 1
        (directory / f"{number}.json").write_text(text, encoding="utf-8")

    def save_model(
        self, name: str, weights: Mapping[str, np.ndarray], model: Any = None
    ) -> int | None:
        """Store the weights as safetensors; `model` (a framework object) is not stored."""
        directory = self.run_dir / "models" / _component("model name", name)
        version = max(_numbers(directory, ".safetensors"), default=0) + 1
        save_weights(directory / f"{version}.safetensors", weights)
        return version

    def load_model(self, name: str, version: int | str = "latest") -> Weights | None:
        directory = self.run_dir / "models" / _component("model name", name)
        number = parse_version(version)
        if number is None:
            versions = _numbers(directory, ".safetensors")
            if not versions:
                return None
            number = versions[-1]
        path = directory / f"{number}.safetensors"
        return load_weights(path) if path.is_file() else None

    def metrics(self) -> list[dict[str, Any]]:
        """Every metrics line recorded so far, oldest first."""
        path = self.run_dir / "metrics.jsonl"
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]

    def close(self) -> None:
        pass
