"""The synchronous Process API (`POST /api/v1/process`): a thin wrapper of `lifecycle.process`."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool

from eobatch.api.auth import current_account
from eobatch.api.bodies import MULTIPART_PARTS, json_or_multipart
from eobatch.api.openapi import json_body
from eobatch.lifecycle.process import process
from eobatch.schemas.process import ProcessApiRequest
from eobatch.sinks.images import EXTENSIONS

router = APIRouter(tags=["process"])

_MULTIPART = {
    **MULTIPART_PARTS,
    "request": {"type": "string", "description": "the process request JSON (input, output)"},
}
_ANSWERS = {
    200: {
        "description": "The image of the single response, or a tar of `<identifier>.<ext>` "
        "files for several; header `x-processingunits-spent` holds the PUs charged.",
        "content": {media: {} for media in (*EXTENSIONS, "application/x-tar")},
    }
}


@router.post(
    "/api/v1/process",
    openapi_extra=json_body(ProcessApiRequest, _MULTIPART),
    response_class=Response,
    responses=_ANSWERS,  # type: ignore[arg-type]
)
async def process_request(request: Request, account: str = Depends(current_account)) -> Response:
    """Render an evalscript over an area synchronously, as a batch task would render it."""
    body, evalscript = await json_or_multipart(request)
    state = request.app.state
    result = await run_in_threadpool(
        process, state.db, state.settings, account, body, evalscript, request.headers.get("accept")
    )
    spent = f"{result.cost_pu:g}"
    headers = {"x-processingunits-spent": spent, "x-processunits": spent}
    return Response(result.body, media_type=result.media_type, headers=headers)
