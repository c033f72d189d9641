"""Proofs of origin on the bus: HMAC-SHA256 of an event's identity or a command's body, in a header.

An agent signs its events with its task's key (`task:<hex>`), a control-plane service signs its
events and commands with the stack's service secret (`service:<hex>`). The header name has no
`x-` prefix so that it survives the controller's partition forwarding. Checks compare in
constant time; no function here logs or returns a key.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from schemas.events import EventBase

PROOF_HEADER = "flame-proof"
TASK = "task"
SERVICE = "service"
# Event types an agent may vouch for with its task key; every other type needs the service secret.
AGENT_TYPES = frozenset(
    {"task.status_changed", "task.metrics", "agent.registered", "agent.heartbeat"}
)


def identity(event: EventBase) -> bytes:
    """What a proof covers: id, type, job, task and a digest of the payload's JSON."""
    digest = hashlib.sha256(event.payload.model_dump_json().encode()).hexdigest()
    fields = (event.id, event.type, event.job_id or "", event.task_id or "", digest)
    return "\n".join(fields).encode()


def _mac(key: str, data: bytes) -> str:
    return hmac.new(key.encode(), data, hashlib.sha256).hexdigest()


def task_proof(key: str, event: EventBase) -> str:
    """The header value an agent holding `key` sends with `event`."""
    return f"{TASK}:{_mac(key, identity(event))}"


def service_proof(secret: str, event: EventBase) -> str:
    """The header value a control-plane service sends with `event`."""
    return f"{SERVICE}:{_mac(secret, identity(event))}"


def command_proof(secret: str, body: bytes) -> str:
    """The header value the apiserver sends with an RPC command (over its exact body)."""
    return f"{SERVICE}:{_mac(secret, body)}"


def proof_of(headers: Mapping[str, object] | None) -> str:
    """The proof header of a message ("" when it has none)."""
    value = (headers or {}).get(PROOF_HEADER)
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value if isinstance(value, str) else ""


def _matches(proof: str, kind: str, key: str, data: bytes) -> bool:
    sort, _, mac = proof.partition(":")
    return sort == kind and hmac.compare_digest(mac.encode(), _mac(key, data).encode())


def command_refusal(secret: str, body: bytes, proof: str) -> str | None:
    """Why a command is not proven to come from a service; None when it is."""
    if not proof:
        return "the command carries no service proof"
    if not _matches(proof, SERVICE, secret, body):
        return "the command's service proof is wrong"
    return None


def event_refusal(
    event: EventBase, proof: str, *, secret: str, task_keys: Mapping[str, str]
) -> str | None:
    """Why `event` is not proven (by the service secret, or for an agent type by the key of its
    task among `task_keys`, the keys of its job's tasks); None when it is."""
    if not proof:
        return "no proof (a sender without FLAME_SERVICE_SECRET or its task key)"
    sort = proof.partition(":")[0]
    if sort == SERVICE:
        ok = _matches(proof, SERVICE, secret, identity(event))
        return None if ok else "wrong service proof"
    if sort != TASK:
        return f"unknown proof kind {sort[:16]!r}"
    return task_refusal(event, proof, task_keys.get(event.task_id or ""))


def task_refusal(event: EventBase, proof: str, key: str | None) -> str | None:
    """Why `event` is not proven by its task's agent (`key`: its task's key, None when the task
    is not one of its job's); None when it is."""
    if not proof:
        return "no proof (a sender without its task key)"
    if event.type not in AGENT_TYPES:
        return f"an agent may not send {event.type}"
    if key is None:
        return "its task is not a task of its job"
    return None if _matches(proof, TASK, key, identity(event)) else "wrong task proof"
