"""End to end on one `flame up` stack: `flamectl run examples/<name>` completes every example; the
README's manual flow and docs/tutorial.md's runs work as written."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from flame_common.embedded import EmbeddedMongo
from tests.agents.stack import LocalStack, local_stack
from tests.support.tutorial import tutorial_block, write_tutorial

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

ROOT = Path(__file__).parents[2]
# Variants of a topology run here already that differ only in modelSpec, role code or task
# count (the control plane passes those through untouched) train in simulation only, to keep
# the suite short (tests/sdk/test_examples_algorithms.py, test_examples_topologies.py).
SIMULATION_ONLY = {
    *("dp", "fedbalancer", "feddyn", "fedopt", "fedprox", "oort", "scaffold"),
    *("compas_fedgft", "coord_3_hierarchical", "fedscale"),
}
EXAMPLES = sorted(
    p.name
    for p in (ROOT / "examples").iterdir()
    if (p / "job.json").is_file() and p.name not in SIMULATION_ONLY
)
BIN = Path(sys.executable).parent
QUICK_RUN = ("--set", "rounds=1", "--set", "epochs=1")
SIDE_BY_SIDE = 4  # examples run at once


@pytest.fixture(scope="module")
def stack(
    mongo_server: EmbeddedMongo, rabbit_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    data = tmp_path_factory.mktemp("data")  # the tutorial's data root
    with local_stack(
        mongo_server.url,
        tmp_path_factory.mktemp("run"),
        FLAME_DATA_ROOTS=json.dumps([str(data)]),
        # role code finds torch and scikit-learn imported (the zygote's): ~6 s CPU less per task
        FLAME_WARM_IMPORTS=json.dumps(["flame_sdk.workloads.digits", "sklearn.datasets"]),
    ) as s:
        yield s


def _env(stack: LocalStack) -> dict[str, str]:
    return {**stack.env, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def flamectl(
    stack: LocalStack, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    command = [str(BIN / "flamectl"), *args]
    return subprocess.run(
        command, env=_env(stack), cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def test_flamectl_run_completes_every_example(stack: LocalStack) -> None:
    """Every example (one round each) through `flamectl run` as a user types it, a few at a
    time (all 13 at once next to another test worker starved a 2-core machine)."""

    def run(example: str) -> subprocess.CompletedProcess[str]:
        command = [str(BIN / "flamectl"), "-o", "json", "run", f"examples/{example}", *QUICK_RUN]
        try:
            return subprocess.run(
                command, env=_env(stack), cwd=ROOT, capture_output=True, text=True, timeout=240
            )
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
            pytest.fail(f"{example}: no end within 240 s; {out[-1500:]}{job_logs(stack, out)}")

    with ThreadPoolExecutor(SIDE_BY_SIDE) as pool:
        outcomes = dict(zip(EXAMPLES, pool.map(run, EXAMPLES), strict=True))
    for example, done in outcomes.items():
        assert done.returncode == 0, f"{example}: {done.stdout[-2000:]}{done.stderr}"
        lines = [json.loads(line) for line in done.stdout.splitlines()]
        assert lines[0]["designId"] == example and lines[0]["jobId"], example
        assert lines[-1]["state"] == "completed", example


def job_logs(stack: LocalStack, run_output: str) -> str:
    """The last lines of the task logs of the job a `flamectl run` output names (if any)."""
    first = run_output.partition("\n")[0]
    job_id = json.loads(first).get("jobId", "") if first.startswith("{") else ""
    logs = sorted((stack.home / "work" / job_id).glob("*/task.log")) if job_id else []
    return "".join(f"\n--- {p}\n{p.read_text(errors='replace')[-600:]}" for p in logs)


def failed_logs(stack: LocalStack) -> str:
    """The end of every task log of the stack that mentions an error (for failure messages)."""
    logs = sorted((stack.home / "work").glob("*/*/task.log"))
    tails = [(p, p.read_text(errors="replace")[-1500:]) for p in logs]
    return "".join(f"\n--- {p}\n{t}" for p, t in tails if "Error" in t)


def readme_manual_flow() -> str:
    """The shell block between README.md's manual-flow markers."""
    text = (ROOT / "README.md").read_text()
    found = re.search(
        r"<!-- manual-flow:start -->\s*```bash\n(.*?)```\s*<!-- manual-flow:end -->", text, re.S
    )
    assert found, "README.md: no ```bash block between the manual-flow markers"
    return found.group(1)


def test_the_readme_manual_flow_works_as_written(stack: LocalStack) -> None:
    """Run by its own user: the designs and datasets of `flamectl run` above are not in its way."""
    env = {**_env(stack), "FLAME_USER": "readme"}
    ran = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", readme_manual_flow()],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr
    assert "running -> completed" in ran.stdout
    assert "test_accuracy" in ran.stdout and "job.state_changed" in ran.stdout


def test_the_tutorial_runs_on_the_stack(stack: LocalStack, tmp_path: Path) -> None:
    """docs/tutorial.md's files in a folder of their own, its data under the stack's data root,
    then its `flamectl run` commands as written (run by their own user)."""
    data = Path(json.loads(stack.env["FLAME_DATA_ROOTS"])[0])
    write_tutorial(tmp_path, data)
    prepare = [sys.executable, "prepare_wine.py", str(data / "wine")]
    made = subprocess.run(prepare, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    env = {**_env(stack), "FLAME_USER": "tutorial"}
    ran = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", tutorial_block("tutorial-run")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr + failed_logs(stack)
    assert ran.stdout.count("running -> completed") == 2
    assert "design 'wine' reused" in ran.stdout and "dataset part0 -> " in ran.stdout
