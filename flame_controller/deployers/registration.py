"""Register the compute with the apiserver (`POST /computes`), retrying until it answers."""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path

import httpx

from flame_common.logs import get_logger
from flame_common.tls import client_context
from schemas.compute import ComputeSpec

log = get_logger(__name__)


def api_key(home: Path, compute_id: str) -> str:
    """The compute's API key, generated once and kept in `<home>/computes/<id>.key` (mode 600)."""
    path = home / "computes" / f"{compute_id}.key"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(24)
    path.touch(mode=0o600)
    path.write_text(key)
    return key


REGISTRATION_PATIENCE = 300.0  # seconds a deployer waits for the apiserver before it gives up


class RegistrationError(RuntimeError):
    """The apiserver did not take the compute's registration in time."""


async def register_compute(
    apiserver: str,
    spec: ComputeSpec,
    token: str,
    *,
    max_delay: float = 30.0,
    ca_file: str = "",
    patience: float = REGISTRATION_PATIENCE,
) -> None:
    """POST the compute until the apiserver accepts it (201) or says it exists with our key;
    RegistrationError when it has not answered within `patience` seconds (the deployer exits
    and its supervisor starts it again).

    `token` is an admin or compute-registration token (settings.registration_token); an https
    apiserver's certificate must chain to `ca_file` (else to the system's CAs).
    """
    verify = client_context(ca_file or None)
    delay = 0.5
    url = f"{apiserver.rstrip('/')}/computes"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    deadline = time.monotonic() + patience
    while True:
        try:
            async with httpx.AsyncClient(timeout=10, headers=headers, verify=verify) as client:
                response = await client.post(url, json=spec.wire())
            if response.status_code in (200, 201):
                log.info("compute registered", compute_id=spec.compute_id)
                return
            if response.status_code < 500:
                log.error(
                    "compute registration refused",
                    compute_id=spec.compute_id,
                    status=response.status_code,
                    body=response.text[:200],
                )
                return
            log.warning("compute registration failed, retrying", status=response.status_code)
        except httpx.HTTPError as exc:
            log.info("apiserver not reachable yet", error=str(exc) or type(exc).__name__)
        if time.monotonic() + delay > deadline:
            raise RegistrationError(
                f"compute {spec.compute_id} not registered: apiserver {url} gave no answer "
                f"within {patience:g} s"
            )
        await asyncio.sleep(delay)
        delay = min(delay * 2, max_delay)
