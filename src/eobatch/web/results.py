"""What the console shows of a task: its features on a map, their outputs, its PU ledger.

Every function takes the signed-in account and finds the task among that account's tasks only,
so another account's task, feature or file is a 404 exactly like one that does not exist.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import shapely
from sqlalchemy import select

from eobatch.config import Settings
from eobatch.engine import USERDATA
from eobatch.errors import InvalidRequest, NotFound
from eobatch.lifecycle.billing import to_pu
from eobatch.lifecycle.tasks import _owned_task as owned_task
from eobatch.projection import transformer
from eobatch.schemas import BatchRequest
from eobatch.schemas.batch import RasterOutput
from eobatch.sinks import DeliveryTemplate
from eobatch.storage import Location, open_location
from eobatch.store import Database
from eobatch.store.models import Feature, LedgerEntry, Task

API = "/api/v2/batch/process"


@dataclass(frozen=True)
class DeliveredFile:
    """One output file of a feature: where it is and what the console may do with it."""

    identifier: str
    location: Location  # the delivery root
    key: str  # relative to `location`

    @property
    def is_raster(self) -> bool:
        return self.identifier != USERDATA

    @property
    def filename(self) -> str:
        return self.key.rsplit("/", 1)[-1]


def features_geojson(
    db: Database, account_id: str, task_id: str, geometry: bool = True
) -> dict[str, Any]:
    """The task's features as a GeoJSON FeatureCollection in EPSG:4326 (lon, lat), with status,
    error and cost; without `geometry`, every geometry is null (for cheap status polling)."""
    with db.reading() as session:
        owned_task(session, account_id, task_id)
        columns = [Feature.id, Feature.name, Feature.status, Feature.error, Feature.cost_micro_pu]
        if geometry:
            columns += [Feature.epsg, Feature.geometry]
        rows = session.execute(
            select(*columns).where(Feature.task_id == task_id).order_by(Feature.id)
        ).all()
    shapes: list[dict[str, Any] | None] = [None] * len(rows)
    if geometry and rows:
        shapes = _to_wgs84([(row.epsg, row.geometry) for row in rows])
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "id": row.id,
                "geometry": shape,
                "properties": {
                    "id": row.id,
                    "name": row.name,
                    "status": row.status,
                    "error": row.error,
                    "costPU": to_pu(row.cost_micro_pu),
                },
            }
            for row, shape in zip(rows, shapes, strict=True)
        ],
    }


def _to_wgs84(footprints: list[tuple[int, bytes]]) -> list[dict[str, Any] | None]:
    """GeoJSON geometries of (EPSG code, WKB) footprints, coordinates rounded to ~1 cm."""
    geometries = shapely.from_wkb([wkb for _, wkb in footprints])
    epsgs = np.array([epsg for epsg, _ in footprints])
    for epsg in np.unique(epsgs):
        selected = epsgs == epsg
        if epsg != 4326:
            geometries[selected] = shapely.transform(geometries[selected], _projector(int(epsg)))
    return [json.loads(text) for text in shapely.to_geojson(geometries)]


@cache
def _projector(epsg: int) -> Callable[[np.ndarray], np.ndarray]:
    to_wgs84 = transformer(epsg, 4326)

    def project(xy: np.ndarray) -> np.ndarray:
        lon, lat = to_wgs84.transform(xy[:, 0], xy[:, 1])
        return np.round(np.column_stack([lon, lat]), 7)

    return project


def feature_detail(
    db: Database, settings: Settings, account_id: str, task_id: str, feature_id: int
) -> dict[str, Any]:
    """One feature: status, attempts, error, cost, grid, and its delivered files with the URLs
    to download them and to render their quicklooks."""
    task, feature = _owned_feature(db, account_id, task_id, feature_id)
    outputs = []
    for file in _delivered_files(task, feature, settings):
        href = f"{API}/{task_id}/features/{feature_id}/outputs/{file.identifier}"
        outputs.append(
            {
                "identifier": file.identifier,
                "url": file.location.url_for(file.key),
                "download": href,
                "quicklook": f"{href}/quicklook" if file.is_raster else None,
            }
        )
    return {
        "id": feature.id,
        "name": feature.name,
        "status": feature.status,
        "error": feature.error,
        "attempts": feature.attempts,
        "delivered": feature.delivered,
        "crs": f"http://www.opengis.net/def/crs/EPSG/0/{feature.epsg}",
        "bbox": [feature.minx, feature.miny, feature.maxx, feature.maxy],
        "width": feature.width,
        "height": feature.height,
        "samples": feature.samples,
        "bytesWritten": feature.bytes_written,
        "costPU": to_pu(feature.cost_micro_pu),
        "transferPU": to_pu(feature.surcharge_micro_pu),
        "outputs": outputs,
    }


def delivered_file(
    db: Database, settings: Settings, account_id: str, task_id: str, feature_id: int, output: str
) -> DeliveredFile:
    """The delivered file of output `output` of a feature (404 if it was not delivered)."""
    task, feature = _owned_feature(db, account_id, task_id, feature_id)
    for file in _delivered_files(task, feature, settings):
        if file.identifier == output:
            if not file.location.exists(file.key):
                raise NotFound(
                    f"{file.location.url_for(file.key)} is no longer in the delivery bucket"
                )
            return file
    raise NotFound(f"Feature {feature_id} of task {task_id} has no delivered output '{output}'")


def task_ledger(db: Database, account_id: str, task_id: str) -> list[dict[str, Any]]:
    """The account's ledger entries for this task (charges, surcharges, minimum), oldest first."""
    with db.reading() as session:
        owned_task(session, account_id, task_id)
        rows = session.scalars(
            select(LedgerEntry)
            .where(LedgerEntry.account_id == account_id, LedgerEntry.task_id == task_id)
            .order_by(LedgerEntry.id)
        ).all()
    return [
        {
            "id": row.id,
            "created": row.created.isoformat().replace("+00:00", "Z"),
            "kind": row.kind,
            "amountPU": to_pu(row.amount_micro_pu),
            "balanceAfterPU": to_pu(row.balance_after_micro_pu),
            "note": row.note,
        }
        for row in rows
    ]


def _owned_feature(
    db: Database, account_id: str, task_id: str, feature_id: int
) -> tuple[Task, Feature]:
    with db.reading() as session:
        task = owned_task(session, account_id, task_id)
        # ids are 32-bit in the store: a larger one would be a database error, not a miss
        feature = session.get(Feature, (task_id, feature_id)) if feature_id < 2**31 else None
        if feature is None:
            raise NotFound(f"Feature {feature_id} of batch task {task_id} not found")
        session.expunge_all()
    return task, feature


def _delivered_files(task: Task, feature: Feature, settings: Settings) -> list[DeliveredFile]:
    """The files a delivered feature wrote: a GeoTIFF per image/tiff response and, if asked
    for, `userdata.json` (zarr outputs are one store per task, not files per feature)."""
    if not feature.delivered:
        return []
    request = BatchRequest.model_validate(task.request)
    output = request.output
    if not isinstance(output, RasterOutput):
        return []
    responses = request.process_request.output.responses
    kind = "s3" if output.delivery.s3 is not None else "gs"
    locator = output.delivery.wire()[kind]
    tiffs = [r.identifier for r in responses if r.format.type == "image/tiff"]
    try:
        template = DeliveryTemplate.parse(
            locator["url"], tiffs or [r.identifier for r in responses], "output"
        )
        root = open_location({kind: {**locator, "url": template.root}}, settings, "output")
    except InvalidRequest as exc:
        raise NotFound(f"The delivery of task {task.id} is not reachable: {exc.message}") from exc
    return [
        DeliveredFile(
            r.identifier,
            root,
            template.key(
                task.id,
                feature.name,
                feature.id,
                r.identifier,
                "json" if r.identifier == USERDATA else "tiff",
            ),
        )
        for r in responses
        if r.format.type == "image/tiff" or r.identifier == USERDATA
    ]
