"""`BrokerAccounts` on Mosquitto's dynamic-security plugin, driven over MQTT as its admin client."""

from __future__ import annotations

import asyncio
import json
import ssl
import uuid
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import aiomqtt

from flame_common.tls import client_context
from flame_controller.broker_accounts import BrokerAccountsError, BrokerLogin, jobs_of, user_name

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"
TIMEOUT = 10.0  # seconds per request: connect, subscribe, publish and the plugin's answer
ABSENT = frozenset({"Client not found", "Role not found"})  # a delete with nothing to do
# a job's role: its own topics (allowed first), then everything else denied whatever the
# plugin's default ACL access says
ALLOW, DENY = 10, 0
ACL_TYPES = ("publishClientSend", "publishClientReceive", "subscribePattern")


def job_topics(job_id: str) -> tuple[str, str]:
    """The topic filters of a job's data plane (flame_sdk.backends.mqtt): its health topic and
    everything under it."""
    if not job_id or any(c in job_id for c in "/+#$"):
        raise ValueError(f"job id {job_id!r} cannot be used in an MQTT topic")
    return f"/flame/{job_id}", f"/flame/{job_id}/#"


def role_acls(job_id: str) -> list[dict[str, Any]]:
    """The ACLs of the job's role: publish, receive and subscribe on its topics only."""
    allowed = [
        {"acltype": kind, "topic": topic, "priority": ALLOW, "allow": True}
        for topic in job_topics(job_id)
        for kind in ACL_TYPES
    ]
    denied = [
        {"acltype": kind, "topic": "#", "priority": DENY, "allow": False} for kind in ACL_TYPES
    ]
    return allowed + denied


class MosquittoAccounts:
    """Job clients `<namespace>.job.<job>` of the dynamic-security plugin, each with a role of
    the same name limited to the job's topics; one short admin connection per request."""

    sort = "mqtt"

    def __init__(self, admin_url: str, namespace: str, *, ca_file: str = "") -> None:
        """`admin_url`: mqtt(s)://user:password@host:port of the plugin's admin client; an
        mqtts:// one is verified with its `?cafile=`, else `ca_file`, else the system's CAs."""
        parts = urlsplit(admin_url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname or not parts.username:
            raise ValueError("the Mosquitto admin URL must be mqtt(s)://user:pass@host:port")
        tls = parts.scheme == "mqtts"
        self.host, self.port = parts.hostname, parts.port or (8883 if tls else 1883)
        self.where = f"{parts.scheme}://{self.host}:{self.port}"
        self.username, self.password = unquote(parts.username), unquote(parts.password or "")
        cafile = dict(parse_qsl(parts.query)).get("cafile") or ca_file
        self.tls: ssl.SSLContext | None = client_context(cafile or None) if tls else None
        self.namespace = namespace

    async def check(self) -> None:
        """Raise BrokerAccountsError unless the plugin answers our admin client."""
        await self._request("reach the dynamic-security plugin", [{"command": "listRoles"}])

    async def open(self, job_id: str, login: BrokerLogin) -> None:
        commands: list[dict[str, Any]] = [
            {"command": "deleteClient", "username": login.user},  # a reset: drops its sessions
            {"command": "deleteRole", "rolename": login.user},
            {"command": "createRole", "rolename": login.user, "acls": role_acls(job_id)},
            {
                "command": "createClient",
                "username": login.user,
                "password": login.password,
                "roles": [{"rolename": login.user}],
            },
        ]
        await self._request(f"create MQTT client {login.user}", commands)

    async def close(self, job_id: str) -> None:
        user = user_name(self.namespace, job_id)
        commands = [
            {"command": "deleteClient", "username": user},
            {"command": "deleteRole", "rolename": user},
        ]
        await self._request(f"delete MQTT client {user}", commands)

    async def jobs(self) -> set[str]:
        """Jobs with a client or a role (one left by a half-done open)."""
        clients, roles = await self._request(
            "list MQTT clients",
            [{"command": "listClients", "count": -1}, {"command": "listRoles", "count": -1}],
        )
        names = [
            *clients.get("data", {}).get("clients", []),
            *roles.get("data", {}).get("roles", []),
        ]
        return jobs_of(self.namespace, names)

    async def _request(self, what: str, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send `commands` in one message; their answers, in order. Raises BrokerAccountsError
        (naming `what`, never a password) on a refusal or when no answer comes in TIMEOUT."""
        request = uuid.uuid4().hex
        tagged = [{**c, "correlationData": f"{request}:{i}"} for i, c in enumerate(commands)]
        try:
            async with asyncio.timeout(TIMEOUT):
                answers = await self._exchange(what, request, tagged)
        except TimeoutError:
            raise BrokerAccountsError(
                f"cannot {what}: no answer from the dynamic-security plugin at {self.where} "
                f"within {TIMEOUT:g} s (is it loaded, and is the admin user its admin?)"
            ) from None
        except aiomqtt.MqttError as exc:
            raise BrokerAccountsError(
                f"cannot {what}: Mosquitto at {self.where} unreachable or refused the admin "
                f"client ({type(exc).__name__}: {exc})"
            ) from None
        for answer in answers:
            error = answer.get("error")
            if error and not (answer.get("command", "").startswith("delete") and error in ABSENT):
                raise BrokerAccountsError(f"cannot {what}: {answer.get('command')}: {error}")
        return answers

    async def _exchange(
        self, what: str, request: str, commands: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        client = aiomqtt.Client(
            self.host,
            self.port,
            username=self.username,
            password=self.password,
            identifier=f"flame-dynsec-{request[:12]}",
            protocol=aiomqtt.ProtocolVersion.V5,
            tls_context=self.tls,
            timeout=TIMEOUT,
        )
        async with client:
            (granted,) = await client.subscribe(RESPONSE_TOPIC, qos=1)
            if not isinstance(granted, int) and granted.is_failure:
                raise BrokerAccountsError(
                    f"cannot {what}: the admin client may not read {RESPONSE_TOPIC} ({granted})"
                )
            await client.publish(CONTROL_TOPIC, json.dumps({"commands": commands}), qos=1)
            async for message in client.messages:
                answers = _answers(message.payload, request)
                if answers is not None:
                    return answers
        raise aiomqtt.MqttError("the connection ended before the plugin answered")


def _answers(payload: Any, request: str) -> list[dict[str, Any]] | None:
    """The responses of a plugin message when they answer `request` (other admin clients'
    answers are published on the same topic)."""
    try:
        responses = json.loads(payload).get("responses", [])
    except (TypeError, ValueError, AttributeError):
        return None
    if not responses or not str(responses[0].get("correlationData", "")).startswith(f"{request}:"):
        return None
    return list(responses)
