"""Weights files: safetensors written atomically, read without pickle."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

WEIGHTS_FILE = "weights.safetensors"


def save_weights(path: Path, weights: Mapping[str, np.ndarray]) -> None:
    """Write `weights` to `path` (a crash leaves either the old file or none, never half a one)."""
    tensors = {name: np.require(array, requirements=["C"]) for name, array in weights.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    os.close(fd)
    try:
        save_file(tensors, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_weights(path: Path) -> dict[str, np.ndarray]:
    return dict(load_file(str(path)))
