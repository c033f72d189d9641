"""Stable process exit codes of flamectl: one per error code, plus job outcomes for `job watch`."""

from __future__ import annotations

from enum import IntEnum

from schemas.errors import ErrorCode
from schemas.states import JobState


class ExitCode(IntEnum):
    OK = 0
    INTERNAL = 1
    USAGE = 2  # bad command line (Typer/Click)
    BAD_REQUEST = 3
    UNAUTHORIZED = 4
    FORBIDDEN = 5
    NOT_FOUND = 6
    CONFLICT = 7
    TOO_LARGE = 8
    INVALID = 9
    NOT_IMPLEMENTED = 10
    UNAVAILABLE = 11
    JOB_FAILED = 20
    JOB_TERMINATED = 21
    INTERRUPTED = 130


_BY_ERROR: dict[ErrorCode, ExitCode] = {
    ErrorCode.BAD_REQUEST: ExitCode.BAD_REQUEST,
    ErrorCode.UNAUTHORIZED: ExitCode.UNAUTHORIZED,
    ErrorCode.FORBIDDEN: ExitCode.FORBIDDEN,
    ErrorCode.NOT_FOUND: ExitCode.NOT_FOUND,
    ErrorCode.CONFLICT: ExitCode.CONFLICT,
    ErrorCode.TOO_LARGE: ExitCode.TOO_LARGE,
    ErrorCode.INVALID: ExitCode.INVALID,
    ErrorCode.NOT_IMPLEMENTED: ExitCode.NOT_IMPLEMENTED,
    ErrorCode.UNAVAILABLE: ExitCode.UNAVAILABLE,
    ErrorCode.INTERNAL: ExitCode.INTERNAL,
}

_BY_JOB_STATE: dict[JobState, ExitCode] = {
    JobState.COMPLETED: ExitCode.OK,
    JobState.FAILED: ExitCode.JOB_FAILED,
    JobState.TERMINATED: ExitCode.JOB_TERMINATED,
}


def for_error(code: ErrorCode) -> ExitCode:
    return _BY_ERROR.get(code, ExitCode.INTERNAL)


def for_job_state(state: JobState) -> ExitCode:
    """Exit code of a job that ended in `state` (only terminal states are outcomes)."""
    return _BY_JOB_STATE.get(state, ExitCode.INTERNAL)
