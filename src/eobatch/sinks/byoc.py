"""BYOC ingestion of a task's COGs (createCollection / collectionId, batch-v2-api.md §4.4).

Each output becomes bands of the collection named after it: an output `result` with 3 bands
gives bands `result`, `result2`, `result3` (all read from the file `result.tiff`, band index 1,
2, 3). Every delivered feature becomes one tile whose path is the feature's key with
`(BAND)` in place of the output id, so the collection reads the files where they were delivered.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import shapely
from sqlalchemy import select

from eobatch.errors import AnalysisError
from eobatch.script import ScriptSetup
from eobatch.sinks.geotiff import band_names
from eobatch.store import Database
from eobatch.store.models import Collection, Tile

# sampleType -> (bitDepth, sampleFormat) of the BYOC band holding it
BAND_FORMATS = {
    "AUTO": (8, "UINT"),
    "UINT8": (8, "UINT"),
    "INT8": (8, "INT"),
    "UINT16": (16, "UINT"),
    "INT16": (16, "INT"),
    "FLOAT32": (32, "FLOAT"),
}
_NAMESPACE = uuid.UUID("4f0c8f1e-9a55-4d55-8d0e-6f2b7c1b2a10")


def new_collection_id(task_id: str) -> str:
    """The id of the collection `createCollection` makes for a task (the same on re-analysis)."""
    return str(uuid.uuid5(_NAMESPACE, task_id))


def collection_bands(setup: ScriptSetup, output_ids: list[str]) -> dict[str, dict[str, Any]]:
    """BYOC bands of the outputs; raises `AnalysisError` when generated names clash."""
    bands: dict[str, dict[str, Any]] = {}
    for output_id in output_ids:
        output = setup.output(output_id)
        depth, fmt = BAND_FORMATS[output.sample_type]
        for index, name in enumerate(band_names(output_id, output.bands), start=1):
            if name in bands:
                raise AnalysisError(
                    f"BYOC band name '{name}' of output '{output_id}' clashes with another "
                    "output's band; multi-band outputs are named <id>, <id>2, <id>3, ..."
                )
            band: dict[str, Any] = {
                "source": output_id,
                "bandIndex": index,
                "bitDepth": depth,
                "sampleFormat": fmt,
            }
            if output.nodata_value is not None:
                band["noData"] = output.nodata_value
            bands[name] = band
    return bands


def check_collection(existing: dict[str, Any], wanted: dict[str, Any], collection_id: str) -> None:
    """An existing collection's bands must hold the outputs: same names, same types."""
    if not existing:
        return  # a collection without bands takes the outputs' bands
    for name, band in wanted.items():
        have = existing.get(name)
        if have is None:
            raise AnalysisError(
                f"Collection {collection_id} has no band '{name}' (bands: "
                f"{', '.join(sorted(existing))}); output identifiers must match its band names"
            )
        if (have.get("bitDepth"), have.get("sampleFormat", "UINT")) != (
            band["bitDepth"],
            band["sampleFormat"],
        ):
            raise AnalysisError(
                f"Band '{name}' of collection {collection_id} is {have.get('bitDepth')}-bit "
                f"{have.get('sampleFormat', 'UINT')}; the output's sampleType gives "
                f"{band['bitDepth']}-bit {band['sampleFormat']}"
            )


def prepare_collection(
    db: Database,
    account_id: str,
    collection_id: str,
    create: bool,
    name: str,
    bucket: str,
    bands: dict[str, Any],
) -> None:
    """Create the task's new collection, or check and complete an existing one."""
    with db.session() as session:
        collection = session.get(Collection, collection_id)
        if collection is not None and collection.account_id != account_id:
            collection = None
        if collection is None and not create:
            raise AnalysisError(f"BYOC collection {collection_id} not found")
        if collection is None:
            session.add(
                Collection(
                    id=collection_id,
                    account_id=account_id,
                    name=name,
                    s3_bucket=bucket,
                    bands=bands,
                )
            )
            return
        if collection.s3_bucket != bucket:
            raise AnalysisError(
                f"BYOC collection {collection_id} reads bucket '{collection.s3_bucket}'; the "
                f"delivery bucket '{bucket}' must be the same"
            )
        check_collection(collection.bands or {}, bands, collection_id)
        if not collection.bands:
            collection.bands = bands


def register_tiles(
    db: Database,
    collection_id: str,
    tiles: Sequence[tuple[str, int, tuple[float, ...], float]],
    sensing_time: datetime | None,
) -> int:
    """Add one INGESTED tile per (path with (BAND), EPSG, bounds, metres per pixel of its
    coarsest overview); returns how many were new."""
    with db.session() as session:
        known = set(session.scalars(select(Tile.path).where(Tile.collection_id == collection_id)))
        added = 0
        for path, epsg, bounds, overview_meters in tiles:
            if path in known:
                continue  # the same feature delivered again (overwrite): same files, same tile
            geometry = shapely.geometry.mapping(shapely.box(*bounds))
            session.add(
                Tile(
                    id=str(uuid.uuid4()),
                    collection_id=collection_id,
                    path=path,
                    sensing_time=sensing_time,
                    epsg=epsg,
                    overview_meters=overview_meters,
                    status="INGESTED",
                    tile_geometry={
                        **geometry,
                        "crs": {
                            "type": "name",
                            "properties": {"name": f"urn:ogc:def:crs:EPSG::{epsg}"},
                        },
                    },
                )
            )
            added += 1
        return added
