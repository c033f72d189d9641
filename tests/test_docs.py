"""The code shown in docs/guide.md works as written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from flame_sdk.simulation.expand import expand

ROOT = Path(__file__).resolve().parent.parent


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def test_guide_chain_extension_runs_report_after_evaluate() -> None:
    block = next(b for b in _python_blocks(ROOT / "docs" / "guide.md") if "MyAggregator" in b)
    namespace: dict[str, Any] = {}
    exec(block, namespace)
    configs = expand(ROOT / "examples" / "two_tier_fedavg")
    config = next(c for c in configs if c["role"] == "aggregator")

    class Reporting(namespace["MyAggregator"]):  # type: ignore[misc, name-defined]
        def initialize(self) -> None: ...
        def load_data(self) -> None: ...
        def train(self) -> None: ...
        def evaluate(self) -> None: ...
        def report(self) -> None: ...

    role = Reporting(config)
    role.compose()
    composer = role.composer
    evaluate = composer.get_tasklet("evaluate")
    report = composer.successor(evaluate)
    assert report is not None and report.alias == "report"
    nxt = composer.successor(report)
    assert nxt is not None and nxt.alias == "save_metrics"
    # still inside the round loop: the loop that holds `evaluate` holds `report` too
    assert report.loops == evaluate.loops and report.loops
