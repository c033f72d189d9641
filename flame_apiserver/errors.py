"""Translate errors to HTTP at the edge: every error body is `{"code", "message"}`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pymongo.errors import ConnectionFailure
from starlette.exceptions import HTTPException

from flame_common.logs import get_logger
from schemas.errors import ErrorBody, ErrorCode, FlameError

log = get_logger(__name__)

_CODE_OF_STATUS = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    409: ErrorCode.CONFLICT,
    413: ErrorCode.TOO_LARGE,
    422: ErrorCode.INVALID,
    501: ErrorCode.NOT_IMPLEMENTED,
    503: ErrorCode.UNAVAILABLE,
}


def error_response(status: int, code: ErrorCode, message: str) -> JSONResponse:
    return JSONResponse(ErrorBody(code=code, message=message).model_dump(mode="json"), status)


def _where(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc[1:]] if loc and loc[0] == "body" else [str(p) for p in loc]
    return ".".join(parts) or "body"


def _describe(err: dict[str, Any]) -> str:
    where = _where(err.get("loc", ()))
    kind = err.get("type", "")
    if tuple(err.get("loc", ())) == ("body",):
        if kind == "missing":
            return "a request body is required"
        return "request body must be a JSON object sent with Content-Type: application/json"
    if kind == "missing":
        return f"missing required field '{where}'"
    if kind == "extra_forbidden":
        return f"unknown field '{where}'"
    return f"'{where}': {err.get('msg', 'invalid value')}"


def validation_status(errors: Sequence[dict[str, Any]]) -> tuple[int, ErrorCode]:
    """Malformed JSON and bad query/path/header values are 400; body content problems 422."""
    for err in errors:
        loc = err.get("loc", ())
        if err.get("type") == "json_invalid" or (loc and loc[0] in ("query", "path", "header")):
            return 400, ErrorCode.BAD_REQUEST
    return 422, ErrorCode.INVALID


async def _on_flame_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, FlameError)
    return error_response(exc.http_status, exc.code, exc.message)


async def _on_validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    status, code = validation_status(errors)
    if code is ErrorCode.BAD_REQUEST and any(e.get("type") == "json_invalid" for e in errors):
        return error_response(status, code, "request body is not valid JSON")
    return error_response(status, code, "; ".join(_describe(e) for e in errors))


async def _on_http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = _CODE_OF_STATUS.get(exc.status_code, ErrorCode.BAD_REQUEST)
    return error_response(exc.status_code, code, str(exc.detail))


async def _on_db_down(_: Request, exc: Exception) -> JSONResponse:
    log.error("database unavailable", error=str(exc))
    return error_response(503, ErrorCode.UNAVAILABLE, "the database is unavailable; retry later")


async def _on_unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", error=repr(exc))
    return error_response(500, ErrorCode.INTERNAL, "internal server error (see apiserver logs)")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(FlameError, _on_flame_error)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(HTTPException, _on_http)
    app.add_exception_handler(ConnectionFailure, _on_db_down)
    app.add_exception_handler(Exception, _on_unexpected)
