"""One exception root with stable error codes; edges translate them (HTTP, exit codes, acks)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel


class ErrorCode(StrEnum):
    BAD_REQUEST = "bad_request"  # malformed input (400)
    UNAUTHORIZED = "unauthorized"  # missing/wrong key (401)
    FORBIDDEN = "forbidden"  # resource of another user (403)
    NOT_FOUND = "not_found"  # 404
    CONFLICT = "conflict"  # duplicate or illegal state transition (409)
    TOO_LARGE = "too_large"  # payload above a limit (413)
    INVALID = "invalid"  # well-formed but semantically invalid (422)
    NOT_IMPLEMENTED = "not_implemented"  # 501
    UNAVAILABLE = "unavailable"  # a dependency did not answer (503)
    INTERNAL = "internal"  # 500


HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.CONFLICT: 409,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.INVALID: 422,
    ErrorCode.NOT_IMPLEMENTED: 501,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.INTERNAL: 500,
}


class ErrorBody(BaseModel):
    """The JSON body of every error response: `{code, message}`."""

    code: ErrorCode
    message: str


class FlameError(Exception):
    """Root of every Flame error; carries a stable code and a one-line message."""

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]

    def body(self) -> ErrorBody:
        return ErrorBody(code=self.code, message=self.message)

    @classmethod
    def from_body(cls, body: ErrorBody) -> FlameError:
        sub = _BY_CODE.get(body.code, FlameError)
        return sub(body.message, body.code)


class BadRequest(FlameError):
    code = ErrorCode.BAD_REQUEST


class Unauthorized(FlameError):
    code = ErrorCode.UNAUTHORIZED


class Forbidden(FlameError):
    code = ErrorCode.FORBIDDEN


class NotFound(FlameError):
    code = ErrorCode.NOT_FOUND


class Conflict(FlameError):
    code = ErrorCode.CONFLICT


class TooLarge(FlameError):
    code = ErrorCode.TOO_LARGE


class Invalid(FlameError):
    code = ErrorCode.INVALID


class NotImplementedYet(FlameError):
    code = ErrorCode.NOT_IMPLEMENTED


class Unavailable(FlameError):
    code = ErrorCode.UNAVAILABLE


_BY_CODE: dict[ErrorCode, type[FlameError]] = {
    c.code: c
    for c in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        TooLarge,
        Invalid,
        NotImplementedYet,
        Unavailable,
    )
}
