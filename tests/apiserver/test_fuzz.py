"""Fuzzing the OpenAPI document (schemathesis): no 5xx, and a rejected request changes nothing."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode

from flame_apiserver.app import create_app
from flame_apiserver.auth import token_hash
from flame_apiserver.ports import ComputeRecord, DatasetRecord, DesignRecord, TokenRecord
from flame_apiserver.routes.logs import MAX_WAIT
from flame_common.settings import FlameSettings
from schemas.commands import Command, CommandReply, ReportTaskStatus
from schemas.design import DesignSchema
from schemas.job import JobSpec, JobStatus
from schemas.task_config import JobRef, TaskConfig
from tests.apiserver.conftest import (
    ADMIN_TOKEN,
    FAST_STREAM,
    MNIST_CODE,
    T0,
    MemoryStack,
    example,
)
from tests.support.zips import make_zip, symlink

EXAMPLES_PER_OPERATION = 16
# each example is bounded (a hung handler fails it instead of stalling the suite); generous, so a
# busy CI machine never trips it
EXAMPLE_DEADLINE = timedelta(seconds=10)
# an event stream of a running job never ends: the client keeps what came within this read
STREAM_READ_SECONDS = 1.0
# the longest `wait` of a log read the fuzzer sends (its bounds are still fuzzed: values past
# MAX_WAIT and of the wrong type are kept)
LONG_POLL = 0.2

TOKENS = {
    "admin": ADMIN_TOKEN,
    "alice": "fuzz-token-of-alice",
    "bob": "fuzz-token-of-bob",
}
TASK_KEY = "k" * 32
COMPUTE_KEY = "fuzz-compute-key"
# ids the fuzzer may swap into what it generates, so requests also reach stored resources
SEEDS: dict[str, list[str]] = {
    "user": ["alice", "bob"],
    "design_id": ["mnist"],
    "dataset_id": ["ds-public", "ds-private"],
    "job_id": ["j1", "j2"],
    "task_id": ["trn"],
    "compute_id": ["c1"],
    "token_id": ["tok-alice", "tok-bob"],
}
# JSON body fields an aimed request takes from what is stored (a dataset realm must be a region or
# a registered compute, a job names a design)
BODY_SEEDS: dict[str, list[str]] = {"realm": ["default/us", "c1"], "designId": ["mnist"]}
SECRET_HEADERS = {"X-Flame-Task-Key": TASK_KEY, "X-API-KEY": COMPUTE_KEY}
CODE_ZIPS = [
    make_zip(MNIST_CODE),
    make_zip({"main.py": b"at the root\n"}),
    make_zip({"trainer/../../escape.py": b"x\n"}),
    make_zip([symlink("trainer/link", "/etc/passwd")]),
    b"PK\x03\x04 not really a zip",
]
# reads RabbitMQ's dead-letter queue: no memory adapter (tests/apiserver/test_deadletters.py)
NEEDS_A_BROKER = {("GET", "/deadletters")}


def _controller_reply(command: Command) -> CommandReply:
    """What the controller answers a command it accepts: the job's status (`{}` for a report)."""
    if isinstance(command, ReportTaskStatus):
        return CommandReply.success({})
    job_id = getattr(command, "job_id", "") or "new-job"
    return CommandReply.success(JobStatus(id=job_id, state="ready").model_dump(mode="json"))


async def _seed(stack: MemoryStack) -> None:
    """Alice's design (schema, code), datasets, a compute, tokens and two jobs with a task."""
    stack.controller.respond = _controller_reply
    resources = stack.resources
    schema = DesignSchema.model_validate(example("mnist", "schema.json"))
    await resources.add_design(DesignRecord("alice", "mnist", name="mnist"))
    await resources.store_schema("alice", "mnist", schema)
    await resources.add_code("alice", "mnist", "m.zip", CODE_ZIPS[0], "0" * 64)
    for dataset_id, public in (("ds-public", True), ("ds-private", False)):
        await resources.add_dataset(
            DatasetRecord(
                dataset_id, "alice", f"file:///data/{dataset_id}.npz", "npy", "default/us",
                is_public=public,
            )
        )  # fmt: skip
    await resources.add_compute(
        ComputeRecord("c1", T0, T0, region="default/us", admin_id="admin", api_key=COMPUTE_KEY)
    )
    await resources.put_deployment("j1", "c1", {"trn": "agentDeploySuccess"})
    for user in ("alice", "bob"):
        await resources.add_token(TokenRecord(f"tok-{user}", token_hash(TOKENS[user]), user))
    spec = JobSpec(name="job", design_id="mnist", backend="mqtt", code_revision=1).wire()
    # a running job (commands reach the fake controller) and a completed one (its event stream ends)
    stack.job("j1", "alice", design_id="mnist", spec=spec, state="running")
    stack.job("j2", "alice", design_id="mnist", spec=spec, state="completed")
    for job_id in ("j1", "j2"):
        config = TaskConfig(
            backend="mqtt", job=JobRef(id=job_id, name="job"), role="trainer",
            channels=schema.channels, max_run_time=600, dataset="file:///data/ds-public.npz",
        )  # fmt: skip
        stack.task(job_id, "trn", "trainer", TASK_KEY, compute_id="c1", config=config.to_wire())
        stack.jobs.log_event(job_id, 1, {"type": "job.created", "payload": {"user_id": "alice"}})


def _state(stack: MemoryStack) -> Any:
    """Everything a request could change: resources, jobs, commands sent, events published."""
    return copy.deepcopy(
        (
            vars(stack.resources),
            vars(stack.jobs),
            [c.model_dump() for c in stack.controller.commands],
            [e.model_dump() for e in stack.events.events],
        )
    )


def _restore(stack: MemoryStack, seeded: Any) -> None:
    """Back to the seeded state, so every example starts alike (failures replay and shrink)."""
    resources, jobs, _, _ = copy.deepcopy(seeded)
    vars(stack.resources).update(resources)
    vars(stack.jobs).update(jobs)
    stack.controller.commands.clear()
    stack.events.events.clear()


@dataclass
class Fuzzed:
    """The app on a seeded memory stack and its OpenAPI document as schemathesis loaded it."""

    stack: MemoryStack
    seeded: Any  # `_state` of the stack right after seeding
    schema: Any  # schemathesis BaseSchema


def _operations() -> list[Any]:
    """(method, path) of every operation of the app's OpenAPI document, as pytest params."""
    app = create_app(FlameSettings(mongo_url="", log_json=False))
    return [
        pytest.param(method.upper(), path, id=f"{method.upper()} {path}")
        for path, methods in app.openapi()["paths"].items()
        for method in methods
        if (method.upper(), path) not in NEEDS_A_BROKER
    ]


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Fuzzed:
    """One app for every operation: each example starts from the seeded state (`_restore`)."""
    stack = MemoryStack()
    asyncio.run(_seed(stack))
    settings_ = FlameSettings(
        home=tmp_path_factory.mktemp("fuzz") / "flame-home",
        mongo_url="",
        log_json=False,
        admin_token_sha256=token_hash(ADMIN_TOKEN),
    )
    app = create_app(settings_, stream_timing=FAST_STREAM, ports=stack.ports())
    return Fuzzed(stack, _state(stack), schemathesis.openapi.from_asgi("/openapi.json", app))


def _requests(operation: Any) -> st.SearchStrategy[Case]:
    """Cases of one operation, valid or not, with a token (or none). Half of them are aimed: the
    stored ids, the right secret headers, a token that may act and a good code zip, so they pass
    the lookups and reach the handler's writes; the others mix in stored ids and secrets at
    random."""

    generated = st.one_of(  # built once: a strategy of a JSON schema is costly to make
        operation.as_strategy(generation_mode=mode)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    )

    @st.composite
    def build(draw: Callable[..., Any]) -> Case:
        case: Case = draw(generated)
        aimed = draw(st.booleans())
        for name in list(case.path_parameters or {}):
            if name in SEEDS and (aimed or draw(st.booleans())):
                case.path_parameters[name] = draw(st.sampled_from(SEEDS[name]))
        headers = dict(case.headers or {})
        for name, secret in SECRET_HEADERS.items():
            if any(p.name == name for p in operation.headers) and (aimed or draw(st.booleans())):
                headers[name] = secret
        tokens = [TOKENS["admin"], TOKENS["alice"]] if aimed else [*TOKENS.values(), None]
        token = draw(st.sampled_from(tokens))
        headers.pop("Authorization", None)
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        case.headers = headers
        wait = (case.query or {}).get("wait")
        if isinstance(wait, int | float) and LONG_POLL < wait <= MAX_WAIT:
            case.query["wait"] = LONG_POLL  # a long poll only waits: keep the suite short
        if aimed and case.media_type == "application/json" and isinstance(case.body, dict):
            for name in BODY_SEEDS.keys() & case.body.keys():
                case.body[name] = draw(st.sampled_from(BODY_SEEDS[name]))
        multipart = case.media_type == "multipart/form-data" and isinstance(case.body, dict)
        if multipart and (aimed or draw(st.booleans())):
            zips = CODE_ZIPS[:1] if aimed else CODE_ZIPS
            case.body["fileData"] = draw(st.sampled_from(zips))
        return case

    return build()


@pytest.mark.parametrize(("method", "path"), _operations())
def test_no_server_error_and_nothing_written_by_a_rejected_request(
    fuzzed: Fuzzed, method: str, path: str
) -> None:
    stack, seeded = fuzzed.stack, fuzzed.seeded
    operation = fuzzed.schema[path][method]
    ok = operation.definition.raw.get("responses", {}).get("200", {})
    timeout = STREAM_READ_SECONDS if "text/event-stream" in ok.get("content", {}) else None

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=EXAMPLE_DEADLINE,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @given(case=_requests(operation))
    def fuzz(case: Case) -> None:
        _restore(stack, seeded)
        response = case.call(timeout=timeout)
        what = f"{case.method} {case.formatted_path} -> {response.status_code} {response.content!r}"
        assert response.status_code < 500, what
        if 400 <= response.status_code < 500:
            assert _state(stack) == seeded, f"a rejected request changed the state: {what}"

    fuzz()
