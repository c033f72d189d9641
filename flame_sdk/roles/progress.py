"""Hands each round's metrics to the task's agent: JSON lines appended to `$FLAME_METRICS_FILE`."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from flame_common.logs import get_logger
from schemas.events import MAX_METRIC_NAME, MAX_METRICS
from schemas.task import METRICS_FILE_ENV

log = get_logger(__name__)


def reportable(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The metrics the control plane takes: finite real numbers under names of at most
    `MAX_METRIC_NAME` characters, the first `MAX_METRICS` of them."""
    out: dict[str, float] = {}
    for name, value in metrics.items():
        if len(out) == MAX_METRICS:
            break
        if not isinstance(name, str) or not 0 < len(name) <= MAX_METRIC_NAME:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
            continue
        number = float(value)
        if math.isfinite(number):
            out[name] = number
    return out


class ProgressFile:
    """Appends `{"round": r, "metrics": {...}}` lines to the file the agent relays from; without
    `$FLAME_METRICS_FILE` (simulation, a script run by hand) it does nothing. Never raises: a
    failed write is logged once and reporting stops."""

    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        self.path = environ.get(METRICS_FILE_ENV, "")

    def record(self, round_: int, metrics: Mapping[str, Any]) -> None:
        if not self.path:
            return
        line = json.dumps({"round": round_, "metrics": reportable(metrics)}) + "\n"
        try:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line)
        except OSError as exc:
            log.warning("metrics not reported to the agent", path=self.path, error=str(exc))
            self.path = ""
