"""The agent's metrics relay: what a role appends to its metrics file becomes task.metrics records,
bounded, without trusting the file (garbage, endless lines, FIFOs, links)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from flame_sdk.roles.progress import ProgressFile, reportable
from flamelet import metrics as relay_module
from flamelet.metrics import MetricsRelay
from schemas.events import MAX_METRIC_RECORDS, MAX_METRICS, MetricsRecord
from schemas.task import METRICS_FILE_ENV


class Sent:
    def __init__(self) -> None:
        self.batches: list[list[MetricsRecord]] = []

    async def __call__(self, records: list[MetricsRecord]) -> None:
        self.batches.append(records)


def line(round_: int, **metrics: float) -> str:
    return json.dumps({"round": round_, "metrics": metrics}) + "\n"


def test_complete_lines_become_records_and_a_partial_line_waits(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text(line(1, accuracy=0.5) + line(2, accuracy=0.75) + '{"round": 3, "metr')
    relay = MetricsRelay(path, Sent())
    assert [(r.round, r.metrics) for r in relay.poll()] == [
        (1, {"accuracy": 0.5}),
        (2, {"accuracy": 0.75}),
    ]
    assert relay.poll() == []  # the third line is not complete yet
    with open(path, "a") as f:
        f.write('ics": {"accuracy": 0.9}}\n')
    assert [(r.round, r.metrics) for r in relay.poll()] == [(3, {"accuracy": 0.9})]


def test_garbage_and_endless_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    junk = [
        "not json\n",
        '{"round": -1, "metrics": {}}\n',
        '{"round": 1, "metrics": {"a": "high"}}\n',
        json.dumps({"round": 1, "metrics": {f"m{i}": 1.0 for i in range(MAX_METRICS + 1)}}) + "\n",
        "x" * (relay_module.LINE_LIMIT + 1) + "\n",
    ]
    path.write_text("".join(junk) + line(4, loss=0.1))
    relay = MetricsRelay(path, Sent())
    assert [r.round for r in relay.poll()] == [4]
    assert relay.skipped == len(junk)
    with open(path, "a") as f:  # a line that never ends is dropped, not buffered for ever
        f.write("y" * (2 * relay_module.LINE_LIMIT))
    assert relay.poll() == []
    assert relay.skipped == len(junk) + 1


def test_one_poll_takes_at_most_a_batch(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(line(r, a=float(r)) for r in range(MAX_METRIC_RECORDS + 5)))
    relay = MetricsRelay(path, Sent())
    assert len(relay.poll()) == MAX_METRIC_RECORDS
    assert [r.round for r in relay.poll()] == list(
        range(MAX_METRIC_RECORDS, MAX_METRIC_RECORDS + 5)
    )


def test_a_task_relays_at_most_its_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(relay_module, "MAX_TASK_RECORDS", 3)
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(line(r, a=1.0) for r in range(10)))
    sent = Sent()
    relay = MetricsRelay(path, sent)
    asyncio.run(relay.drain(5))
    assert [r.round for batch in sent.batches for r in batch] == [0, 1, 2]


@pytest.mark.parametrize("kind", ["fifo", "symlink", "directory"])
def test_only_a_regular_file_is_read_and_never_blocks(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "metrics.jsonl"
    secret = tmp_path / "secret"
    secret.write_text(line(1, a=1.0))
    if kind == "fifo":
        os.mkfifo(path)  # opening it for reading would block without O_NONBLOCK
    elif kind == "symlink":
        path.symlink_to(secret)
    else:
        path.mkdir()
    relay = MetricsRelay(path, Sent())
    assert relay.poll() == []
    assert relay.skipped == 1


def test_drain_sends_what_is_left_in_batches(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(line(r, a=1.0) for r in range(MAX_METRIC_RECORDS + 1)))
    sent = Sent()
    relay = MetricsRelay(path, sent)
    asyncio.run(relay.drain(5))
    assert [len(b) for b in sent.batches] == [MAX_METRIC_RECORDS, 1]
    assert relay.sent == MAX_METRIC_RECORDS + 1


def test_the_role_side_writes_what_the_relay_reads(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    progress = ProgressFile({METRICS_FILE_ENV: str(path)})
    progress.record(1, {"accuracy": 0.5, "note": "text", "flag": True, "inf": float("inf")})
    progress.record(2, {"accuracy": 0.6, "bytes": 10})
    relay = MetricsRelay(path, Sent())
    assert [(r.round, r.metrics) for r in relay.poll()] == [
        (1, {"accuracy": 0.5}),
        (2, {"accuracy": 0.6, "bytes": 10.0}),
    ]


def test_reportable_keeps_the_first_metrics_with_sane_names() -> None:
    metrics = {"": 1.0, "x" * 200: 2.0, **{f"m{i}": float(i) for i in range(MAX_METRICS + 3)}}
    kept = reportable(metrics)
    assert len(kept) == MAX_METRICS and "" not in kept and "x" * 200 not in kept
