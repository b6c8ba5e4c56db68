"""The JSON and file endpoints the web console needs, beside the Batch V2 routes they extend.

Same bearer authentication and tenant checks as the rest of the API: another account's task,
feature or file is a 404.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from eobatch.api.auth import current_account
from eobatch.errors import NotFound
from eobatch.web import quicklook, results

router = APIRouter(prefix="/api/v2/batch/process", tags=["console"])

_PNG = {"content": {"image/png": {}}, "description": "PNG image"}
_FILE = {"content": {"application/octet-stream": {}}, "description": "the delivered file"}


@router.get("/{task_id}/features/geojson")
def features_geojson(
    task_id: str,
    request: Request,
    geometry: bool = Query(True, description="false: null geometries, for polling statuses"),
    account: str = Depends(current_account),
) -> dict:
    """The task's features as GeoJSON in EPSG:4326 with their status, error and cost."""
    return results.features_geojson(request.app.state.db, account, task_id, geometry)


@router.get("/{task_id}/features/{feature_id:int}")
def feature_detail(
    task_id: str, feature_id: int, request: Request, account: str = Depends(current_account)
) -> dict:
    """One feature: status, error, attempts, cost, and its delivered files."""
    state = request.app.state
    return results.feature_detail(state.db, state.settings, account, task_id, feature_id)


@router.get(
    "/{task_id}/features/{feature_id:int}/outputs/{output_id}",
    response_class=Response,
    responses={200: _FILE},
)
async def download_output(
    task_id: str,
    feature_id: int,
    output_id: str,
    request: Request,
    account: str = Depends(current_account),
) -> Response:
    """The delivered file, read from the delivery bucket with the task's own credentials."""
    state = request.app.state
    file = await run_in_threadpool(
        results.delivered_file, state.db, state.settings, account, task_id, feature_id, output_id
    )
    media = "image/tiff" if file.is_raster else "application/json"
    if file.location.is_local:  # streamed from disk
        return FileResponse(
            file.location.gdal_path(file.key), media_type=media, filename=file.filename
        )
    data = await run_in_threadpool(file.location.get, file.key)
    disposition = f'attachment; filename="{file.filename}"'
    return Response(data, media_type=media, headers={"Content-Disposition": disposition})


@router.get(
    "/{task_id}/features/{feature_id:int}/outputs/{output_id}/quicklook",
    response_class=Response,
    responses={200: _PNG},
)
async def output_quicklook(
    task_id: str,
    feature_id: int,
    output_id: str,
    request: Request,
    size: int = Query(512, ge=16, le=quicklook.MAX_SIZE, description="longer side, pixels"),
    account: str = Depends(current_account),
) -> Response:
    """A PNG of a delivered GeoTIFF in Web Mercator, stretched 2-98 % per band, no-data
    transparent. Header `X-Bounds`: west,south,east,north in degrees."""
    state = request.app.state
    file = await run_in_threadpool(
        results.delivered_file, state.db, state.settings, account, task_id, feature_id, output_id
    )
    if not file.is_raster:
        raise NotFound(f"'{output_id}' is not a raster; it has no quicklook")
    image = await run_in_threadpool(
        quicklook.render,
        file.location.gdal_path(file.key),
        file.location.gdal_options(),
        size,
    )
    return Response(
        image.png,
        media_type="image/png",
        headers={
            "X-Bounds": ",".join(f"{v:.8f}" for v in image.bounds),
            "X-Stretch": ";".join(f"{low:.6g},{high:.6g}" for low, high in image.stretch),
            "Cache-Control": "private, no-store",
        },
    )


@router.get("/{task_id}/ledger")
def task_ledger(task_id: str, request: Request, account: str = Depends(current_account)) -> dict:
    """The PU ledger entries of this task: charges, transfer surcharges and the minimum."""
    return {"data": results.task_ledger(request.app.state.db, account, task_id)}
