"""`BrokerAccounts` on RabbitMQ's management HTTP API (httpx), with the admin credentials."""

from __future__ import annotations

from urllib.parse import quote, unquote, urlsplit

import httpx

from flame_common.datanames import data_resources
from flame_common.tls import client_context
from flame_controller.broker_accounts import BrokerAccountsError, BrokerLogin, jobs_of, user_name

TIMEOUT = 10.0  # seconds per management request


def vhost_of(amqp_url: str) -> str:
    """The virtual host of an AMQP URL (`/` when the path is empty or `/`)."""
    path = urlsplit(amqp_url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


class RabbitAccounts:
    """Job users tagged `flame-job`, with configure/write/read limited to the job's data names."""

    sort = "rabbitmq"

    def __init__(
        self, admin_url: str, namespace: str, vhost: str = "/", *, ca_file: str = ""
    ) -> None:
        """`ca_file`: the CA an https management API's certificate chains to ("": system's)."""
        parts = urlsplit(admin_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("the RabbitMQ management URL must be http(s)://user:pass@host:port")
        port = f":{parts.port}" if parts.port else ""
        self.base = f"{parts.scheme}://{parts.hostname}{port}{parts.path.rstrip('/')}/api"
        self.auth = (unquote(parts.username or "guest"), unquote(parts.password or "guest"))
        self.namespace = namespace
        self.vhost = vhost
        self.ca_file = ca_file
        self._client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> RabbitAccounts:
        self._client = httpx.AsyncClient(
            auth=self.auth, timeout=TIMEOUT, verify=client_context(self.ca_file or None)
        )
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def check(self) -> None:
        """Raise BrokerAccountsError unless the API answers and our user may manage users."""
        response = await self._request("GET", "/whoami", "reach the management API")
        if "administrator" not in response.json().get("tags", []):
            raise BrokerAccountsError("the management API user is not an administrator")

    async def open(self, job_id: str, login: BrokerLogin) -> None:
        user = quote(login.user, safe="")
        body = {"password": login.password, "tags": "flame-job"}
        await self._request("PUT", f"/users/{user}", f"create broker user {login.user}", body)
        names = data_resources(job_id)
        rights = {"configure": names, "write": names, "read": names}
        vhost = quote(self.vhost, safe="")
        await self._request(
            "PUT", f"/permissions/{vhost}/{user}", f"grant broker user {login.user}", rights
        )

    async def close(self, job_id: str) -> None:
        user = user_name(self.namespace, job_id)
        await self._request(
            "DELETE", f"/users/{quote(user, safe='')}", f"delete broker user {user}", absent_ok=True
        )

    async def jobs(self) -> set[str]:
        response = await self._request("GET", "/users", "list broker users")
        return jobs_of(self.namespace, [u.get("name", "") for u in response.json()])

    async def _request(
        self,
        method: str,
        path: str,
        what: str,
        body: dict[str, str] | None = None,
        *,
        absent_ok: bool = False,
    ) -> httpx.Response:
        if self._client is None:
            raise RuntimeError("RabbitAccounts used outside `async with`")
        try:
            response = await self._client.request(method, self.base + path, json=body)
        except httpx.HTTPError as exc:
            raise BrokerAccountsError(
                f"cannot {what}: management API at {self.base} unreachable ({type(exc).__name__})"
            ) from exc
        if response.status_code == 404 and absent_ok:
            return response
        if response.is_error:
            raise BrokerAccountsError(
                f"cannot {what}: management API answered {response.status_code}"
            )
        return response
