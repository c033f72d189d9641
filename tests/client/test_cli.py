"""flamectl against a fake apiserver: argument syntax, table/JSON output, errors and exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from flame_common.embedded import free_port
from flame_sdk.cli.app import app
from flame_sdk.cli.exit_codes import ExitCode
from schemas.events import event_json, parse_event
from tests.client.fakes import FakeApi, json_response, sse_response

MNIST = Path(__file__).parents[1] / "data" / "flame_examples" / "mnist"
JOB = "/users/alice/jobs/j1"


def flamectl(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def job_event(
    seq: int, type_: str, payload: dict[str, Any], task: str | None = None
) -> dict[str, Any]:
    raw = {"type": type_, "payload": payload, "job_id": "j1", "task_id": task, "seq": seq}
    return json.loads(event_json(parse_event(raw)))


def test_get_designs_table_and_json(cli_env: FakeApi) -> None:
    designs = [{"id": "mnist", "name": "MNIST", "description": "digits", "userId": "alice"}]
    cli_env.on("GET", "/users/alice/designs", body=designs)
    table = flamectl("get", "designs", "-l", "5")
    assert table.exit_code == 0
    header, row = table.stdout.splitlines()
    assert header.split() == ["DESIGN", "ID", "NAME", "DESCRIPTION"]
    assert row.split() == ["mnist", "MNIST", "digits"]
    assert cli_env.requests[0].url.params["limit"] == "5"
    as_json = flamectl("--output", "json", "get", "designs")
    assert json.loads(as_json.stdout) == designs


def test_get_tasks_empty_and_task_config(cli_env: FakeApi) -> None:
    cli_env.on("GET", f"{JOB}/tasks", body=[])
    assert "No info found for tasks of job 'j1'" in flamectl("get", "tasks", "j1").stdout
    assert json.loads(flamectl("-o", "json", "get", "tasks", "j1").stdout) == []
    config = {
        "backend": "mqtt",
        "job": {"id": "j1", "name": "n"},
        "role": "trainer",
        "channels": [],
        "brokers": [{"sort": "mqtt", "host": "localhost"}],
    }
    cli_env.on("GET", f"{JOB}/tasks/t1/config", body=config)
    shown = json.loads(flamectl("get", "task", "j1", "t1", "--config").stdout)
    assert shown["role"] == "trainer" and shown["realm"] == "" and shown["selector"] == {}


def test_get_job_status_table(cli_env: FakeApi) -> None:
    cli_env.on(
        "GET",
        f"{JOB}/status",
        body={"id": "j1", "state": "running", "createdAt": "2024-01-02T03:04:05Z"},
    )
    out = flamectl("get", "job", "j1", "-s").stdout.splitlines()
    assert out[1].split()[:4] == ["j1", "running", "2024-01-02", "03:04:05"]


def test_errors_are_one_line_with_stable_exit_codes(cli_env: FakeApi) -> None:
    cli_env.on(
        "GET",
        "/users/alice/designs/x",
        404,
        {"code": "not_found", "message": "design 'x' not found"},
    )
    result = flamectl("get", "design", "x")
    assert result.exit_code == ExitCode.NOT_FOUND == 6
    assert result.stderr == "Error: design 'x' not found\n"
    assert result.stdout == ""
    cli_env.on(
        "DELETE",
        "/users/alice/designs/x",
        409,
        {"code": "conflict", "message": "design used in 2 jobs"},
    )
    result = flamectl("remove", "design", "x")
    assert result.exit_code == ExitCode.CONFLICT
    assert "use --force" in result.stderr and len(result.stderr.splitlines()) == 1
    cli_env.on("DELETE", "/users/alice/designs/x", 200, None)
    assert flamectl("remove", "design", "x", "--force").exit_code == 0
    assert cli_env.requests[-1].url.params["forceDelete"] == "true"


def test_unreachable_apiserver_exit_code(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    endpoint = f"http://127.0.0.1:{free_port()}"
    result = flamectl("--endpoint", endpoint, "--user", "u", "get", "jobs")
    assert result.exit_code == ExitCode.UNAVAILABLE
    assert f"cannot reach the Flame apiserver at {endpoint}" in result.stderr


def test_dataset_comments_are_ignored_and_typos_refused(cli_env: FakeApi, tmp_path: Path) -> None:
    path = tmp_path / "dataset.json"
    data = json.loads((MNIST / "dataset.json").read_text())
    path.write_text(json.dumps({"//": "a comment", **data}))
    cli_env.on("POST", "/users/alice/datasets", 201, "64132c15981345ad7b31da47")
    result = flamectl("create", "dataset", str(path))
    assert result.exit_code == 0, result.stderr
    assert "dataset ID: 64132c15981345ad7b31da47" in result.stdout and result.stderr == ""
    sent = json.loads(cli_env.requests[0].content)
    assert "//" not in sent and sent["realm"] == "default/us/west"

    path.write_text(json.dumps({"//": "a comment", **data, "isPubic": True}))
    result = flamectl("create", "dataset", str(path))
    assert result.exit_code == ExitCode.INVALID
    assert f"{path}: unknown field 'isPubic'" in result.stderr
    assert len(cli_env.requests) == 1


def test_create_job_sends_the_assembled_spec(cli_env: FakeApi) -> None:
    cli_env.on(
        "POST", "/users/alice/jobs", 201, {"id": "j1", "name": "mnist example", "state": "ready"}
    )
    result = flamectl("create", "job", str(MNIST / "job.json"))
    assert result.exit_code == 0
    assert "ID: j1" in result.stdout and "state: ready" in result.stdout
    sent = json.loads(cli_env.requests[0].content)
    assert sent["dataSpec"][0]["datasetGroups"] == {"us": ["64132c15981345ad7b31da47"]}
    assert sent["modelSpec"]["hyperparameters"]["rounds"] == 5 and "dataSpecPath" not in sent


def test_bad_local_file_fails_before_any_request(cli_env: FakeApi, tmp_path: Path) -> None:
    shutil.copy(MNIST / "job.json", tmp_path / "job.json")
    result = flamectl("create", "job", str(tmp_path / "job.json"))
    assert result.exit_code == ExitCode.BAD_REQUEST
    assert "dataSpec.json: cannot read the file" in result.stderr
    assert cli_env.requests == []


def test_create_code_from_a_folder(cli_env: FakeApi, tmp_path: Path) -> None:
    (tmp_path / "code" / "trainer").mkdir(parents=True)
    (tmp_path / "code" / "trainer" / "main.py").write_text("pass\n")
    cli_env.on("POST", "/users/alice/designs/mnist/code", 201, {"revision": 1})
    result = flamectl("create", "code", "mnist", str(tmp_path / "code"))
    assert result.exit_code == 0, result.stderr
    assert "revision 1" in result.stdout
    assert b'filename="mnist.zip"' in cli_env.requests[0].content


def test_update_design_sends_only_given_fields(cli_env: FakeApi) -> None:
    cli_env.on(
        "PUT",
        "/users/alice/designs/d",
        200,
        {"id": "d", "name": "new", "description": "", "userId": "alice"},
    )
    assert flamectl("update", "design", "d", "-n", "new").exit_code == 0
    assert json.loads(cli_env.requests[0].content) == {"name": "new"}
    nothing = flamectl("update", "design", "d")
    assert nothing.exit_code == ExitCode.BAD_REQUEST and len(cli_env.requests) == 1


def test_job_events_json_lines(cli_env: FakeApi) -> None:
    log = [
        job_event(1, "task.created", {"role": "r", "compute_id": "default"}, "a"),
        job_event(2, "job.state_changed", {"from_state": "ready", "to_state": "starting"}),
    ]
    cli_env.handle(
        "GET",
        f"{JOB}/events",
        lambda r: json_response(200, [e for e in log if e["seq"] > int(r.url.params["after"])]),
    )
    lines = flamectl("-o", "json", "job", "events", "j1").stdout.splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [1, 2]
    table = flamectl("job", "events", "j1").stdout.splitlines()
    assert "job.state_changed" in table[1] and "ready -> starting" in table[1]


ROUND_1 = {"test_accuracy": 0.5, "loss": 0.25, "train.runtime": 2.0}
SPEC = {
    "id": "j1",
    "name": "n",
    "designId": "d",
    "backend": "mqtt",
    "modelSpec": {"hyperparameters": {"rounds": 3}},
}


@pytest.mark.parametrize(
    ("end", "code"),
    [
        ("completed", ExitCode.OK),
        ("failed", ExitCode.JOB_FAILED),
        ("terminated", ExitCode.JOB_TERMINATED),
    ],
)
def test_job_watch_exit_code_follows_the_outcome(
    cli_env: FakeApi, end: str, code: ExitCode
) -> None:
    history = [job_event(1, "task.created", {"role": "r", "compute_id": "default"}, "a")]
    live = [
        job_event(2, "job.state_changed", {"from_state": "ready", "to_state": "starting"}),
        job_event(3, "task.status_changed", {"state": "running"}, "a"),
        job_event(4, "job.state_changed", {"from_state": "starting", "to_state": "running"}),
        job_event(5, "task.metrics", {"records": [{"round": 1, "metrics": ROUND_1}]}, "a"),
        job_event(
            6, "job.state_changed", {"from_state": "running", "to_state": end, "reason": "why"}
        ),
    ]
    cli_env.on("GET", JOB, body=SPEC)
    cli_env.handle(
        "GET",
        f"{JOB}/events",
        lambda r: json_response(200, [e for e in history if e["seq"] > int(r.url.params["after"])]),
    )
    cli_env.handle("GET", f"{JOB}/events/stream", lambda _r: sse_response(live))
    cli_env.on(
        "GET", f"{JOB}/tasks", body=[{"jobId": "j1", "taskId": "a", "role": "r", "state": end}]
    )
    result = flamectl("job", "watch", "j1")
    assert result.exit_code == code, (result.output, result.exception)
    lines = result.stdout.splitlines()
    assert "job j1: ready; tasks: ready=1" in lines[0]
    assert any("ready -> starting" in line for line in lines)
    assert any("task a running; tasks: running=1" in line for line in lines)
    assert any(line.endswith("job j1: r round 1/3 loss=0.25 test_accuracy=0.5") for line in lines)
    assert f"running -> {end} (why); tasks: {end}=1" in lines[-1]
    as_json = flamectl("-o", "json", "job", "watch", "j1")
    last = json.loads(as_json.stdout.splitlines()[-1])
    assert last["tasks"] == {end: 1}
    assert last["training"] == {"r": {"round": 1, "metrics": ROUND_1}}
    # --live redraws one view (on a terminal by default); its last frame is what remains
    view = flamectl("job", "watch", "j1", "--live")
    assert view.exit_code == code
    frame = view.stdout
    assert f"job j1  {end} (why)" in frame and f"tasks: {end}=1" in frame
    row = next(line for line in frame.splitlines() if line.lstrip().startswith("r "))
    cells = row.split()
    assert cells[2:5] == ["1/3", "0:00:00", "loss=0.25"]  # role, bar, round, ETA, metrics
    assert "test_accuracy=0.5" in frame and "train.runtime" not in frame


def test_stream_requests_ask_for_event_stream(cli_env: FakeApi) -> None:
    cli_env.on("GET", f"{JOB}/events", body=[])
    cli_env.handle(
        "GET",
        f"{JOB}/events/stream",
        lambda _r: httpx.Response(404, json={"code": "not_found", "message": "job 'j1' not found"}),
    )
    result = flamectl("job", "events", "j1", "--follow")
    assert result.exit_code == ExitCode.NOT_FOUND
    assert cli_env.requests[0].headers["accept"] == "text/event-stream"


def test_malformed_answers_are_reported_not_raised(cli_env: FakeApi) -> None:
    cli_env.on("GET", f"{JOB}/status", body={"id": "j1", "state": "dancing"})
    result = flamectl("get", "job", "j1", "--status")
    assert result.exit_code == ExitCode.INTERNAL
    assert result.stderr.startswith("Error: unexpected answer from the apiserver")


METRICS = [
    {"taskId": "agg", "role": "aggregator", "round": 1, "metrics": {"test_accuracy": 0.5}},
    {"taskId": "agg", "role": "aggregator", "round": 2, "metrics": {"test_accuracy": 0.875}},
    {"taskId": "t1", "role": "trainer", "round": 1, "metrics": {"train.runtime": 1.25}},
]


def test_get_metrics_as_table_json_and_csv(cli_env: FakeApi) -> None:
    cli_env.on("GET", f"{JOB}/metrics", body=METRICS)
    table = flamectl("get", "metrics", "j1").stdout.splitlines()
    assert table[0].split() == ["ROLE", "TASK", "ID", "ROUND", "TEST_ACCURACY", "TRAIN.RUNTIME"]
    assert table[2].split() == ["aggregator", "agg", "2", "0.875"]
    assert table[3].split() == ["trainer", "t1", "1", "1.25"]
    as_json = json.loads(flamectl("get", "metrics", "j1", "--output", "json").stdout)
    assert [(r["round"], r["metrics"]) for r in as_json] == [
        (r["round"], r["metrics"]) for r in METRICS
    ]
    assert json.loads(flamectl("-o", "json", "get", "metrics", "j1").stdout) == as_json
    csv_lines = flamectl("get", "metrics", "j1", "-o", "csv", "-m", "test_accuracy").stdout
    assert csv_lines.splitlines() == [
        "role,task_id,round,test_accuracy",
        "aggregator,agg,1,0.5",
        "aggregator,agg,2,0.875",
        "trainer,t1,1,",
    ]


def test_get_metrics_sends_the_role_and_says_when_there_are_none(cli_env: FakeApi) -> None:
    cli_env.on("GET", f"{JOB}/metrics", body=[])
    result = flamectl("get", "metrics", "j1", "--role", "trainer")
    assert result.stdout.strip() == "No metrics recorded for job 'j1' yet"
    assert cli_env.requests[-1].url.params["role"] == "trainer"
