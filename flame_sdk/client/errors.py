"""Translate HTTP error responses of the apiserver into the typed errors of `schemas.errors`."""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import ValidationError

from schemas.errors import HTTP_STATUS, ErrorBody, ErrorCode, FlameError

_CODE_BY_STATUS: dict[int, ErrorCode] = {status: code for code, status in HTTP_STATUS.items()}


def code_for_status(status: int) -> ErrorCode:
    """The error code of an HTTP status without a `{code, message}` body."""
    if status in _CODE_BY_STATUS:
        return _CODE_BY_STATUS[status]
    return ErrorCode.INTERNAL if status >= 500 else ErrorCode.BAD_REQUEST


def _message(body: Any) -> str:
    """A one-line message from whatever error body a server sent."""
    if isinstance(body, str):
        return body
    if isinstance(body, dict):
        for key in ("message", "detail"):
            if key in body:
                value = body[key]
                return value if isinstance(value, str) else _describe_detail(value)
    return ""


def _describe_detail(detail: Any) -> str:
    """FastAPI-style validation details -> `loc: msg; loc: msg`."""
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict) and "msg" in item:
                loc = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
                parts.append(f"{loc}: {item['msg']}" if loc else str(item["msg"]))
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return str(detail)


def error_from_response(response: httpx.Response) -> FlameError:
    """The FlameError a non-2xx response stands for (typed by its `code`, else by its status)."""
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text.strip()
    if isinstance(body, dict):
        try:
            return FlameError.from_body(ErrorBody.model_validate(body))
        except ValidationError:
            pass  # not our error shape: fall back on the status code
    message = " ".join(_message(body).split())
    if not message:
        message = f"HTTP {response.status_code} {response.reason_phrase}".strip()
    code = code_for_status(response.status_code)
    return FlameError.from_body(ErrorBody(code=code, message=message))
