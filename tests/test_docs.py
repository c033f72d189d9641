"""The code shown in docs/guide.md, README.md and docs/tutorial.md works as written."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from flame_sdk.simulation.expand import expand
from tests.support.tutorial import TUTORIAL, write_tutorial

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


def test_readme_role_snippet_defines_a_trainer() -> None:
    from flame_sdk.roles import Trainer

    block = next(b for b in _python_blocks(ROOT / "README.md") if "MyTrainer" in b)
    namespace: dict[str, Any] = {"__name__": "readme"}  # not __main__: defines, does not run
    exec(block, namespace)
    assert issubclass(namespace["MyTrainer"], Trainer)


def test_the_tutorial_design_runs_in_simulation(tmp_path: Path) -> None:
    """docs/tutorial.md's files and its `flame-sim` command, as written (data root moved)."""
    data = tmp_path / "data"
    write_tutorial(tmp_path, data)
    env = {**os.environ, "FLAME_DATA_ROOTS": json.dumps([str(data)])}
    bin_dir = Path(sys.executable).parent
    prepare = [sys.executable, "prepare_wine.py", str(data / "wine")]
    made = subprocess.run(prepare, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    command = [str(bin_dir / "flame-sim"), "wine", "--rounds", "3"]
    ran = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
    summary = json.loads(ran.stdout[ran.stdout.index("[") :])
    aggregator = next(row for row in summary if row["role"] == "aggregator")
    assert aggregator["test_accuracy"] >= 0.8
    assert "flame-sim wine --rounds 3" in TUTORIAL.read_text()
