"""Request bodies that come as JSON, or as a multipart form with the evalscript apart."""

from __future__ import annotations

from fastapi import Request

from eobatch.errors import InvalidRequest
from eobatch.schemas import parse_json

MULTIPART_PARTS = {
    "request": {"type": "string", "description": "the request JSON"},
    "evalscript": {"type": "string", "description": "the evalscript, replacing the request's"},
}


async def json_or_multipart(request: Request) -> tuple[object, str | None]:
    """The request JSON and, for multipart bodies, the separate evalscript part."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form()
        part = form.get("request")
        if part is None:
            raise InvalidRequest.at("request", "the multipart body needs a 'request' part")
        raw = await part.read() if hasattr(part, "read") else str(part).encode()
        script = form.get("evalscript")
        if script is not None and hasattr(script, "read"):
            script = (await script.read()).decode("utf-8", errors="replace")
        return parse_json(raw), script  # type: ignore[return-value]
    return parse_json(await request.body()), None
