"""Batch V2 routes (batch-v2-api.md §2): thin wrappers around `eobatch.lifecycle.tasks`."""

from __future__ import annotations

import re
from collections.abc import Callable

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool

from eobatch.api.auth import current_account
from eobatch.api.bodies import MULTIPART_PARTS, json_or_multipart
from eobatch.api.openapi import json_body
from eobatch.api.pagination import page, page_window
from eobatch.errors import InvalidRequest, NotFound
from eobatch.lifecycle import tasks
from eobatch.lifecycle.states import UserAction
from eobatch.limits import shown
from eobatch.planning import GRIDS
from eobatch.schemas import BatchRequest, DescriptionUpdate, parse_json

router = APIRouter(prefix="/api/v2/batch", tags=["batch"])
_GRID_IDS = ", ".join(map(str, GRIDS))
_INTEGER = re.compile(r"-?[0-9]+")


_MULTIPART = {
    **MULTIPART_PARTS,
    "request": {"type": "string", "description": "the BatchRequest JSON"},
}


@router.post("/process", status_code=201, openapi_extra=json_body(BatchRequest, _MULTIPART))
async def create(request: Request, account: str = Depends(current_account)) -> dict:
    body, evalscript = await json_or_multipart(request)
    state = request.app.state
    return await run_in_threadpool(
        tasks.create_task, state.db, state.settings, account, body, evalscript
    )


@router.get("/process")
def list_tasks(
    request: Request,
    count: int | None = None,
    viewtoken: str | None = None,
    sort: str | None = None,
    search: str | None = None,
    account: str = Depends(current_account),
) -> dict:
    offset, limit = page_window(count, viewtoken)
    items = tasks.list_tasks(request.app.state.db, account, offset, limit, sort, search)
    return page(request, items, offset, limit)


@router.get("/process/{task_id}")
def get_task(task_id: str, request: Request, account: str = Depends(current_account)) -> dict:
    return tasks.get_task(request.app.state.db, account, task_id)


@router.get("/process/{task_id}/features")
def list_features(
    task_id: str,
    request: Request,
    count: int | None = None,
    viewtoken: str | None = None,
    account: str = Depends(current_account),
) -> dict:
    """The task's features with status, samples, bytes and PU charged (an eobatch extension)."""
    offset, limit = page_window(count, viewtoken)
    items = tasks.list_features(request.app.state.db, account, task_id, offset, limit)
    return page(request, items, offset, limit)


@router.put("/process/{task_id}", openapi_extra=json_body(DescriptionUpdate))
async def update_task(
    task_id: str, request: Request, account: str = Depends(current_account)
) -> dict:
    body = parse_json(await request.body())
    return await run_in_threadpool(
        tasks.update_description, request.app.state.db, account, task_id, body
    )


def _action(action: UserAction) -> Callable[..., Response]:
    def act(task_id: str, request: Request, account: str = Depends(current_account)) -> Response:
        state = request.app.state
        tasks.record_user_action(state.db, state.settings, account, task_id, action)
        if state.controller is not None:
            state.controller.wake()
        return Response(status_code=204)

    return act


for _name, _act in (
    ("analyse", UserAction.ANALYSE),
    ("start", UserAction.START),
    ("stop", UserAction.STOP),
):
    router.add_api_route(
        f"/process/{{task_id}}/{_name}", _action(_act), methods=["POST"], status_code=204
    )


@router.get("/tilinggrids")
def list_grids(
    request: Request,
    count: int | None = None,
    viewtoken: str | None = None,
    _: str = Depends(current_account),
) -> dict:
    offset, limit = page_window(count, viewtoken)
    grids = [g.descriptor() for g in GRIDS.values()]
    return page(request, grids[offset : offset + limit + 1], offset, limit)


@router.get("/tilinggrids/{grid_id}")
def get_grid(grid_id: str, _: str = Depends(current_account)) -> dict:
    if _INTEGER.fullmatch(grid_id) is None:
        raise InvalidRequest.at(
            "id", f"{shown(grid_id)} is not a tiling grid id; ids are integers: {_GRID_IDS}"
        )
    try:  # a number too long for int() is no grid either
        grid = GRIDS[int(grid_id) if len(grid_id) < 20 else -1]
    except KeyError:
        raise NotFound(f"Tiling grid {shown(grid_id)} not found; available: {_GRID_IDS}") from None
    return grid.descriptor()
