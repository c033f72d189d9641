"""End-to-end test helpers over `flame_sdk.localstack`: test role scripts by name, namespaces
cleaned up at the end of the session."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flame_sdk import localstack
from flame_sdk.client import FlameClient
from flame_sdk.localstack import LocalStack, job_events, wait_state
from tests.conftest import track_namespace
from tests.support.zips import role_script

__all__ = [
    "EXAMPLES",
    "WARM_ML",
    "LocalStack",
    "create_job",
    "job_events",
    "local_stack",
    "role_pids",
    "wait_state",
]

EXAMPLES = Path(__file__).parents[1] / "data" / "flame_examples"
# Stack settings for tests that train the digits workload: the zygote imports torch and
# scikit-learn once, so each role process does not (seconds of CPU per task).
WARM_ML = {"FLAME_WARM_IMPORTS": json.dumps(["flame_sdk.workloads.digits", "sklearn.datasets"])}


@contextmanager
def local_stack(mongo_url: str | None, tmp: Path, **settings: str) -> Iterator[LocalStack]:
    namespace = track_namespace(f"e{uuid.uuid4().hex[:10]}")
    with localstack.local_stack(mongo_url, tmp, namespace, **settings) as stack:
        yield stack


def scripts(roles: dict[str, str]) -> dict[str, Path]:
    """Role -> `main.py` of the test data script `roles/<name>`."""
    return {role: role_script(name) for role, name in roles.items()}


async def create_job(
    client: FlameClient, folder: Path, roles: dict[str, str], *, max_run_time: int = 120
) -> str:
    return await localstack.create_job(client, folder, scripts(roles), max_run_time=max_run_time)


def role_pids(stack: LocalStack, job_id: str) -> list[int]:
    """Pids the `sleep` role code wrote next to its config."""
    files = (stack.home / "work" / job_id).glob("*/role.pid")
    return [int(text) for text in (p.read_text().strip() for p in files) if text]
