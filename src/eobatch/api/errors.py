"""The one place where errors become Sentinel Hub's `{"error": {...}}` body."""

from __future__ import annotations

import logging
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from eobatch.errors import EobatchError, Violation
from eobatch.schemas.parsing import violations

log = logging.getLogger(__name__)

_CODES = {
    400: "COMMON_BAD_PAYLOAD",
    401: "COMMON_UNAUTHORIZED",
    403: "COMMON_INSUFFICIENT_PERMISSIONS",
    404: "COMMON_NOT_FOUND",
    405: "COMMON_METHOD_NOT_ALLOWED",
    409: "COMMON_EXCEPTION",
    413: "COMMON_PAYLOAD_TOO_LARGE",
    415: "COMMON_UNSUPPORTED_MEDIA_TYPE",
}


def error_response(
    status: int, message: str, code: str | None = None, errors: list[Violation] | None = None
) -> JSONResponse:
    body: dict = {
        "status": status,
        "reason": HTTPStatus(status).phrase,
        "message": message,
        "code": code or _CODES.get(status, "COMMON_EXCEPTION"),
    }
    if errors:
        body["errors"] = [{"parameter": e.parameter, "violation": e.violation} for e in errors]
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(EobatchError)
    async def _domain(_: Request, exc: EobatchError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.code, exc.errors)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        found = [
            Violation(
                "->".join(str(p) for p in e["loc"] if p not in ("query", "path", "body")), e["msg"]
            )
            for e in exc.errors()
        ]
        return error_response(400, "Invalid request parameters.", errors=found)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        return error_response(exc.status_code, message)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=exc)
        return error_response(500, "Internal server error; the incident has been logged.")


__all__ = ["error_response", "install_error_handlers", "violations"]
