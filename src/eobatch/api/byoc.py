"""BYOC routes (`/api/v1/byoc`, pu-byoc-process.md §2.2): thin wrappers around `sources.byoc`."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from eobatch.api.auth import current_account
from eobatch.api.openapi import json_body
from eobatch.api.pagination import page, page_window
from eobatch.schemas import parse_json
from eobatch.schemas.byoc import CollectionIn, TileIn, TileUpdate
from eobatch.sources import byoc

router = APIRouter(prefix="/api/v1/byoc", tags=["byoc"])


@router.get("/collections")
def list_collections(
    request: Request,
    count: int | None = None,
    viewtoken: str | None = None,
    search: str | None = None,
    account: str = Depends(current_account),
) -> dict:
    offset, limit = page_window(count, viewtoken)
    items = byoc.list_collections(request.app.state.db, account, offset, limit, search)
    return page(request, items, offset, limit)


@router.post("/collections", status_code=201, openapi_extra=json_body(CollectionIn))
async def create_collection(request: Request, account: str = Depends(current_account)) -> dict:
    body = parse_json(await request.body())
    state = request.app.state
    return {
        "data": await run_in_threadpool(
            byoc.create_collection, state.db, state.settings, account, body
        )
    }


@router.get("/collections/{collection_id}")
def get_collection(
    collection_id: str, request: Request, account: str = Depends(current_account)
) -> dict:
    return {"data": byoc.get_collection(request.app.state.db, account, collection_id)}


@router.put("/collections/{collection_id}", status_code=204, openapi_extra=json_body(CollectionIn))
async def update_collection(
    collection_id: str, request: Request, account: str = Depends(current_account)
) -> Response:
    body = parse_json(await request.body())
    state = request.app.state
    await run_in_threadpool(
        byoc.update_collection, state.db, state.settings, account, collection_id, body
    )
    return Response(status_code=204)


@router.delete("/collections/{collection_id}", status_code=204)
def delete_collection(
    collection_id: str, request: Request, account: str = Depends(current_account)
) -> Response:
    byoc.delete_collection(request.app.state.db, account, collection_id)
    return Response(status_code=204)


@router.get("/collections/{collection_id}/tiles")
def list_tiles(
    collection_id: str,
    request: Request,
    count: int | None = None,
    viewtoken: str | None = None,
    sort: str | None = None,
    path: str | None = None,
    status: str | None = None,
    account: str = Depends(current_account),
) -> dict:
    offset, limit = page_window(count, viewtoken)
    items = byoc.list_tiles(
        request.app.state.db, account, collection_id, offset, limit, sort, path, status
    )
    return page(request, items, offset, limit)


@router.post("/collections/{collection_id}/tiles", status_code=201, openapi_extra=json_body(TileIn))
async def create_tile(
    collection_id: str, request: Request, account: str = Depends(current_account)
) -> dict:
    body = parse_json(await request.body())
    state = request.app.state
    return {
        "data": await run_in_threadpool(
            byoc.create_tile, state.db, state.settings, account, collection_id, body
        )
    }


@router.get("/collections/{collection_id}/tiles/{tile_id}")
def get_tile(
    collection_id: str, tile_id: str, request: Request, account: str = Depends(current_account)
) -> dict:
    return {"data": byoc.get_tile(request.app.state.db, account, collection_id, tile_id)}


@router.put(
    "/collections/{collection_id}/tiles/{tile_id}",
    status_code=204,
    openapi_extra=json_body(TileUpdate),
)
async def update_tile(
    collection_id: str, tile_id: str, request: Request, account: str = Depends(current_account)
) -> Response:
    body = parse_json(await request.body())
    byoc.update_tile(request.app.state.db, account, collection_id, tile_id, body)
    return Response(status_code=204)


@router.delete("/collections/{collection_id}/tiles/{tile_id}", status_code=204)
def delete_tile(
    collection_id: str, tile_id: str, request: Request, account: str = Depends(current_account)
) -> Response:
    byoc.delete_tile(request.app.state.db, account, collection_id, tile_id)
    return Response(status_code=204)


@router.post("/collections/{collection_id}/tiles/{tile_id}/reingest", status_code=204)
async def reingest_tile(
    collection_id: str, tile_id: str, request: Request, account: str = Depends(current_account)
) -> Response:
    state = request.app.state
    await run_in_threadpool(
        byoc.reingest_tile, state.db, state.settings, account, collection_id, tile_id
    )
    return Response(status_code=204)


@router.post("/collections/{collection_id}/copyTiles", status_code=204)
def copy_tiles(
    collection_id: str,
    request: Request,
    to_collection: str | None = Query(default=None, alias="toCollection"),
    account: str = Depends(current_account),
) -> Response:
    byoc.copy_tiles(request.app.state.db, account, collection_id, to_collection)
    return Response(status_code=204)
