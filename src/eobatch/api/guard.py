"""An ASGI middleware that refuses oversized bodies and control characters in URLs up front.

The body limit is enforced while the body streams in: a declared `Content-Length` over the
limit is refused before a byte is read, and a body without one (chunked) is refused as soon as
the bytes received pass the limit, so it is never buffered whole.
"""

from __future__ import annotations

from urllib.parse import unquote

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eobatch.api.errors import error_response
from eobatch.errors import Violation
from eobatch.limits import text_violation


class BodyTooLarge(HTTPException):
    """Raised from `receive` when the body passes the limit; the API's error handlers (or the
    guard itself, if nothing else answered yet) turn it into a 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            413,
            f"The request body is larger than {limit} bytes, the most this server accepts "
            "(setting EOBATCH_MAX_BODY_BYTES).",
        )


class InputGuard:
    """Wraps the API: 413 for bodies over `max_body_bytes`, 400 for control characters in the
    path or query (a NUL in `search` would otherwise reach the database)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        problem = _url_problem(scope)
        if problem is not None:
            response = error_response(400, "Invalid request parameters.", errors=[problem])
            await response(scope, receive, send)
            return
        limit = self.max_body_bytes
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await error_response(413, BodyTooLarge(limit).detail)(scope, receive, send)
            return

        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracked_send)
        except BodyTooLarge as exc:
            if started:
                raise
            await error_response(413, exc.detail)(scope, receive, send)


def _url_problem(scope: Scope) -> Violation | None:
    """A control character in the path or in a query parameter, as the route would see it."""
    if (problem := text_violation("path", scope.get("path", ""))) is not None:
        return problem
    query = scope.get("query_string", b"").decode("latin-1")
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        decoded = unquote(value.replace("+", " "), errors="replace")
        if (problem := text_violation(unquote(name) or "query", decoded)) is not None:
            return problem
    return None
