"""Tasks forked from a preloaded fork server behave like `python <script> <config>` processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flame_common import forking
from flame_sdk.simulation.processes import ForkedProcess, ProcessJob

SCRIPT = """
import json, os, sys
import {role}_helper
print(json.dumps({{"argv": sys.argv[1:], "cwd": os.getcwd(), "env": os.environ.get("PROBE"),
                  "main": __name__, "preloaded": "email.mime.text" in sys.modules}}), flush=True)
sys.exit(int(json.load(open(sys.argv[1]))["code"]))
"""


def _example(root: Path, roles: dict[str, str]) -> Path:
    for role, body in roles.items():
        (root / role).mkdir(parents=True)
        (root / role / "main.py").write_text(body)
        (root / role / f"{role}_helper.py").write_text("")  # found next to the script
    return root


async def test_forked_tasks_run_their_script_with_argv_cwd_env_and_exit_code(
    tmp_path: Path,
) -> None:
    example = _example(tmp_path / "ex", {"trainer": SCRIPT.format(role="trainer")})
    configs = [
        {"taskid": "t-ok", "role": "trainer", "code": 0},
        {"taskid": "t-bad", "role": "trainer", "code": 3},
    ]
    job = ProcessJob(
        example, configs, tmp_path / "work", env={"PROBE": "yes"}, preload=("email.mime.text",)
    )
    await job.start()
    assert all(isinstance(t.process, ForkedProcess) for t in job.tasks)
    assert len(job.pids) == 3  # two tasks and their server
    codes = await job.wait(timeout=60)
    assert codes == {"t-ok": 0, "t-bad": 3}
    for task in job.tasks:
        line = json.loads(task.output().splitlines()[0])
        assert line["argv"] == [str(tmp_path / "work" / f"{task.task_id}.json")]
        assert line["cwd"] == str(example.resolve())
        assert line["env"] == "yes" and line["main"] == "__main__" and line["preloaded"]


async def test_failing_script_logs_its_traceback_and_kill_ends_a_hung_task(tmp_path: Path) -> None:
    example = _example(
        tmp_path / "ex",
        {
            "aggregator": "import time\ntime.sleep(60)\n",
            "trainer": "raise RuntimeError('boom in the trainer')\n",
        },
    )
    configs = [{"taskid": "t", "role": "trainer"}, {"taskid": "a", "role": "aggregator"}]
    job = ProcessJob(example, configs, tmp_path / "work", preload=("json",))
    await job.start()
    trainer, aggregator = job.tasks
    assert await trainer.process.wait() == 1
    assert "RuntimeError: boom in the trainer" in trainer.output()
    with pytest.raises(TimeoutError):
        await job.wait(timeout=0.5)
    assert aggregator.process.returncode is not None and aggregator.process.returncode < 0
    with pytest.raises(ProcessLookupError):
        os.kill(job.tasks[1].process.pid, 0)


async def test_a_module_that_cannot_be_preloaded_fails_the_start(tmp_path: Path) -> None:
    example = _example(tmp_path / "ex", {"trainer": "pass\n"})
    job = ProcessJob(
        example, [{"taskid": "t", "role": "trainer"}], tmp_path / "w", preload=("no_such_mod",)
    )
    with pytest.raises(RuntimeError, match="no_such_mod"):
        await job.start()


def test_bad_requests_get_error_replies_and_end_of_input_waits_for_children(
    tmp_path: Path,
) -> None:
    script = tmp_path / "main.py"
    script.write_text("import sys, time\ntime.sleep(0.5)\nprint('done', sys.argv[1:])\n")
    log = tmp_path / "child.log"
    good = {"id": 3, "script": str(script), "argv": ["x"], "cwd": str(tmp_path), "env": {}}
    requests = [
        b"not json",
        json.dumps({"id": 1, "script": str(script), "argv": "x", "env": {}}).encode(),
        json.dumps({**good, "id": 2, "cwd": 7, "log": str(log)}).encode(),
        json.dumps({**good, "log": str(log)}).encode(),
    ]
    server = subprocess.run(
        [sys.executable, "-m", "flame_sdk.simulation.forkserver", "json"],
        input=b"\n".join(requests) + b"\n",  # then end of input, with the child still running
        capture_output=True,
        timeout=60,
        check=True,
    )
    ready, *replies = [json.loads(line) for line in server.stdout.splitlines()]
    assert "ready" in ready
    assert replies[0]["id"] is None and replies[0]["error"].startswith("bad request")
    assert replies[1]["id"] == 1 and "'argv' (list)" in replies[1]["error"]
    assert "'log' (str)" in replies[1]["error"]
    assert replies[2] == {"id": 2, "error": "bad request: needs 'cwd' (str)"}
    assert replies[3]["id"] == 3
    assert replies[4] == {"exited": replies[3]["pid"], "code": 0}  # reported before the end
    assert log.read_text() == "done ['x']\n"


def test_warm_import_brings_the_lazy_companions_along(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(forking.LAZY_COMPANIONS, "email.mime.text", ("email.mime.image",))
    for name in ("email.mime.text", "email.mime.image"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    forking.warm_import("email.mime.text")
    assert "email.mime.text" in sys.modules and "email.mime.image" in sys.modules


async def test_children_of_a_torch_server_share_what_torch_imports_on_first_use(
    tmp_path: Path,
) -> None:
    """PyTorch's optimizers import torch._dynamo on their first step (0.7 s, ~60 MB): the server
    imported it, so a task starts with it."""
    script = "import sys; print('torch._dynamo' in sys.modules, flush=True)\n"
    example = _example(tmp_path / "ex", {"trainer": script})
    configs = [{"taskid": "t", "role": "trainer"}]
    job = ProcessJob(example, configs, tmp_path / "work", preload=("torch",))
    await job.start()
    assert await job.wait(timeout=120) == {"t": 0}
    assert job.tasks[0].output().split() == ["True"]
