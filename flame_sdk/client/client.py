"""FlameClient: the async management client, one small resource client per REST resource."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

import httpx

from flame_sdk.client.computes import ComputesClient
from flame_sdk.client.datasets import DatasetsClient
from flame_sdk.client.deadletters import DeadLettersClient
from flame_sdk.client.designs import CodeClient, DesignsClient, SchemasClient
from flame_sdk.client.http import Transport
from flame_sdk.client.jobs import JobsClient
from flame_sdk.client.tasks import TasksClient
from flame_sdk.client.tokens import TokensClient
from schemas.errors import Invalid


class FlameClient:
    """Async client of one Flame apiserver for one user; use as `async with FlameClient(...) as c`.

    `token` is the API token sent as `Authorization: Bearer` (the user's own, or an admin's).
    An https endpoint's certificate is verified against `ca_file` (else the system's CAs);
    `verify=False` skips the check (only when asked for: `flamectl --insecure`).

    Every method returns pydantic models of `schemas`; failures raise `schemas.errors.FlameError`
    subclasses (NotFound, Conflict, Invalid, ...; Unavailable when the server cannot be reached).
    """

    def __init__(
        self,
        endpoint: str,
        user: str,
        timeout: float = 30.0,
        *,
        token: str = "",
        verify: bool = True,
        ca_file: str | Path | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not user.strip():
            raise Invalid("the Flame user name is empty")
        self.user = user
        self._transport = Transport(
            endpoint,
            timeout=timeout,
            token=token,
            verify=verify,
            ca_file=ca_file,
            transport=transport,
        )
        self.designs = DesignsClient(self._transport, user)
        self.schemas = SchemasClient(self._transport, user)
        self.code = CodeClient(self._transport, user)
        self.datasets = DatasetsClient(self._transport, user)
        self.tasks = TasksClient(self._transport, user)
        self.jobs = JobsClient(self._transport, user, self.tasks)
        self.computes = ComputesClient(self._transport, user)
        self.deadletters = DeadLettersClient(self._transport, user)
        self.tokens = TokensClient(self._transport, user)

    @property
    def endpoint(self) -> str:
        return self._transport.endpoint

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def __aenter__(self) -> FlameClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
