"""Domain exceptions raised by the core; the API maps them to the Sentinel Hub error body.

Parameter paths use Sentinel Hub's `->` separator (`input->resolution`), as real SH errors do.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Violation:
    """One bad parameter: where it is and what is wrong with it."""

    parameter: str
    violation: str


class EobatchError(Exception):
    """Base of every error that reaches a client with an HTTP status."""

    status: int = 500
    code: str = "COMMON_EXCEPTION"

    def __init__(self, message: str, errors: list[Violation] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or []


class InvalidRequest(EobatchError):
    """The request body or a parameter is invalid (400, COMMON_BAD_PAYLOAD)."""

    status = 400
    code = "COMMON_BAD_PAYLOAD"

    @classmethod
    def at(cls, parameter: str, violation: str) -> InvalidRequest:
        """A single-parameter error whose message repeats the violation."""
        return cls(f"{parameter}: {violation}", [Violation(parameter, violation)])


class IllegalAction(EobatchError):
    """A user action that the task's current status does not allow (400)."""

    status = 400
    code = "COMMON_EXCEPTION"


class Unauthorized(EobatchError):
    status = 401
    code = "COMMON_UNAUTHORIZED"


class Forbidden(EobatchError):
    status = 403
    code = "COMMON_INSUFFICIENT_PERMISSIONS"


class NotFound(EobatchError):
    status = 404
    code = "COMMON_NOT_FOUND"


class Conflict(EobatchError):
    status = 409
    code = "COMMON_EXCEPTION"


class Unavailable(EobatchError):
    """A server the request needs did not answer as it should: the service's problem, not the
    request's (503, worth retrying)."""

    status = 503
    code = "COMMON_EXCEPTION"


class AnalysisError(Exception):
    """The analysis of a task failed; the message becomes the task's `error`."""


@dataclass
class FeatureError(Exception):
    """Processing one feature failed; `retryable` says whether another attempt may succeed."""

    message: str
    retryable: bool = True
    details: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message


def describe(error: BaseException, limit: int = 1000) -> str:
    """`Type: message` of an error and of what caused it ("Read failed. See previous
    exception" says nothing without its cause), on one line, at most `limit` characters (some
    storage errors carry kilobytes of debug output)."""
    parts: list[str] = []
    seen: BaseException | None = error
    while seen is not None and len(parts) < 3:
        text = " ".join(str(seen).split())
        part = f"{type(seen).__name__}: {text}" if text else type(seen).__name__
        if part not in parts:
            parts.append(part)
        seen = seen.__cause__ or (None if seen.__suppress_context__ else seen.__context__)
    described = "; caused by ".join(parts)
    return described if len(described) <= limit else described[: limit - 1] + "…"
