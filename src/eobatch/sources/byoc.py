"""BYOC collections and tiles: the catalogue behind `/api/v1/byoc` and `byoc-<id>` inputs.

A collection names a bucket (`s3Bucket`) of the deployment; its tiles are COG files there, one
file per band found by replacing `(BAND)` in the tile path (pu-byoc-process.md §2).
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

import numpy as np
import rasterio
import shapely
from pyproj import CRS, Transformer
from rasterio.errors import RasterioError
from shapely.geometry import mapping, shape
from sqlalchemy import delete, or_, select

from eobatch.config import Settings
from eobatch.errors import Conflict, InvalidRequest, NotFound
from eobatch.schemas import parse_model
from eobatch.schemas.byoc import CollectionIn, TileIn, TileUpdate
from eobatch.sources.scenes import BandSource, Scene
from eobatch.storage import Location, open_location
from eobatch.store import Database
from eobatch.store.models import Collection, Tile

_FORMATS = {  # numpy dtype -> (bitDepth, sampleFormat)
    "uint8": (8, "UINT"), "int8": (8, "INT"), "uint16": (16, "UINT"), "int16": (16, "INT"),
    "uint32": (32, "UINT"), "int32": (32, "INT"), "float32": (32, "FLOAT"),
}  # fmt: skip
_TIFF_SUFFIXES = (".tif", ".tiff")


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def collection_json(c: Collection) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": c.id,
        "accountId": c.account_id,
        "userId": c.account_id,
        "name": c.name,
        "s3Bucket": c.s3_bucket,
        "isConfigured": bool(c.bands),
        "created": _iso(c.created),
        "requiresMetadataUpdate": False,
        "additionalData": {"bands": c.bands or {}},
    }
    if c.no_data is not None:
        body["noData"] = c.no_data
    return body


def tile_json(t: Tile) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": t.id,
        "path": t.path,
        "status": t.status,
        "sensingTime": _iso(t.sensing_time),
        "created": _iso(t.created),
        "ingestionStart": _iso(t.ingestion_start),
        "additionalData": {"failedIngestionCause": t.failed_cause},
    }
    if t.cover_geometry is not None:
        body["coverGeometry"] = t.cover_geometry
    if t.tile_geometry is not None:
        body["tileGeometry"] = t.tile_geometry
    return {k: v for k, v in body.items() if v is not None}


def bucket_location(settings: Settings, bucket: str, parameter: str = "s3Bucket") -> Location:
    """The deployment's view of a collection bucket (its own credentials, never the user's)."""
    s3: dict[str, Any] = {"url": f"s3://{bucket}"}
    if settings.s3_access_key and settings.s3_secret_key:
        s3 |= {"accessKey": settings.s3_access_key, "secretAccessKey": settings.s3_secret_key}
    return open_location({"s3": s3}, settings, parameter)


def _uuid_or_404(value: str, what: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise NotFound(f"{what} {value} not found") from None


def _owned_collection(session: Any, account_id: str, collection_id: str) -> Collection:
    cid = _uuid_or_404(collection_id, "Collection")
    collection = session.get(Collection, cid)
    if collection is None or collection.account_id != account_id:
        raise NotFound(f"Collection {collection_id} not found")
    return collection


def _bands_json(body: CollectionIn) -> dict[str, Any]:
    bands = body.additional_data.bands if body.additional_data else None
    return {name: band.wire() for name, band in (bands or {}).items()}


def create_collection(
    db: Database, settings: Settings, account_id: str, raw: Any
) -> dict[str, Any]:
    body = parse_model(CollectionIn, raw)
    bucket_location(settings, body.s3_bucket, "s3Bucket")  # validates the bucket name
    with db.session() as session:
        collection = Collection(
            id=str(uuid.uuid4()),
            account_id=account_id,
            name=body.name,
            s3_bucket=body.s3_bucket,
            no_data=body.no_data,
            bands=_bands_json(body),
        )
        session.add(collection)
        session.flush()
        return collection_json(collection)


def list_collections(
    db: Database, account_id: str, offset: int, limit: int, search: str | None = None
) -> list[dict[str, Any]]:
    query = select(Collection).where(Collection.account_id == account_id)
    if search:
        query = query.where(
            or_(
                *(
                    Collection.name.ilike(f"%{w.strip()}%")
                    for w in search.replace("&", "|").split("|")
                )
            )
        )
    query = query.order_by(Collection.created, Collection.id).offset(offset).limit(limit + 1)
    with db.session() as session:
        return [collection_json(c) for c in session.scalars(query)]


def get_collection(db: Database, account_id: str, collection_id: str) -> dict[str, Any]:
    with db.session() as session:
        return collection_json(_owned_collection(session, account_id, collection_id))


def update_collection(
    db: Database, settings: Settings, account_id: str, collection_id: str, raw: Any
) -> None:
    body = parse_model(CollectionIn, raw)
    with db.session() as session:
        collection = _owned_collection(session, account_id, collection_id)
        has_tiles = session.scalars(
            select(Tile.id).where(Tile.collection_id == collection.id).limit(1)
        ).first()
        if body.s3_bucket != collection.s3_bucket:
            if has_tiles:
                raise Conflict("s3Bucket can only be changed while the collection has no tiles")
            bucket_location(settings, body.s3_bucket, "s3Bucket")
            collection.s3_bucket = body.s3_bucket
        if body.additional_data is not None and body.additional_data.bands is not None:
            new_bands = _bands_json(body)
            if has_tiles and not _only_renames_or_nodata(collection.bands or {}, new_bands):
                raise Conflict(
                    "bands of a collection with tiles can only be renamed, removed or get a new "
                    "noData; bitDepth, sampleFormat, source and bandIndex are fixed"
                )
            collection.bands = new_bands
        collection.name = body.name
        collection.no_data = body.no_data


def _only_renames_or_nodata(old: dict[str, Any], new: dict[str, Any]) -> bool:
    def key(band: dict[str, Any]) -> tuple:
        return (
            band.get("source"),
            band.get("bandIndex"),
            band.get("bitDepth"),
            band.get("sampleFormat"),
        )

    old_keys = {key(b) for b in old.values()}
    return all(key(b) in old_keys for b in new.values())


def delete_collection(db: Database, account_id: str, collection_id: str) -> None:
    with db.session() as session:
        collection = _owned_collection(session, account_id, collection_id)
        session.execute(delete(Tile).where(Tile.collection_id == collection.id))
        session.delete(collection)


def _band_key(tile_path: str, source: str) -> str:
    if "(BAND)" in tile_path:
        return tile_path.replace("(BAND)", source)
    return f"{tile_path.rstrip('/')}/{source}.tif"


def _discover_bands(location: Location, tile_path: str) -> dict[str, Any]:
    """Bands of an unconfigured collection from its first tile: one band per file, named by what
    `(BAND)` stands for in the path (or by the file stem, for a folder path)."""
    if "(BAND)" in tile_path:
        folder, _, pattern = tile_path.rpartition("/")
        head, _, tail = pattern.partition("(BAND)")
        match = re.compile(re.escape(head) + r"(?P<band>[^/]+)" + re.escape(tail) + "$")
        found = {m.group("band"): key for key in location.list(folder)
                 if (m := match.fullmatch(PurePosixPath(key).name))}  # fmt: skip
    else:
        found = {PurePosixPath(k).stem: k for k in location.list(tile_path)
                 if k.lower().endswith(_TIFF_SUFFIXES)}  # fmt: skip
    if not found:
        raise ValueError(f"no band files found for tile path '{tile_path}'")
    names = sorted(found.items())
    bands: dict[str, Any] = {}
    for stem, key in names:
        with rasterio.Env(**location.gdal_options()), rasterio.open(location.gdal_path(key)) as src:
            depth, fmt = _FORMATS.get(src.dtypes[0], (None, None))
            if depth is None:
                raise ValueError(f"{key}: data type {src.dtypes[0]} is not supported")
            for index in range(1, src.count + 1):
                name = stem if src.count == 1 else f"{stem}_{index}"
                band = {"source": stem, "bandIndex": index, "bitDepth": depth, "sampleFormat": fmt}
                if src.nodata is not None:
                    band["noData"] = src.nodata
                bands[name] = band
    return bands


def _inspect_tile(location: Location, tile_path: str, bands: dict[str, Any]) -> tuple[int, Any]:
    """Check every band file of a tile; returns its EPSG code and bounds (tile CRS)."""
    epsg, bounds = None, None
    with rasterio.Env(**location.gdal_options()):
        for name, band in bands.items():
            key = _band_key(tile_path, band.get("source") or name)
            if not location.exists(key):
                raise ValueError(f"band {name}: file '{key}' does not exist")
            with rasterio.open(location.gdal_path(key)) as src:
                if band.get("bandIndex", 1) > src.count:
                    raise ValueError(
                        f"band {name}: '{key}' has {src.count} band(s), "
                        f"bandIndex {band['bandIndex']} does not exist"
                    )
                found = _FORMATS.get(src.dtypes[band.get("bandIndex", 1) - 1])
                expected = (band["bitDepth"], band.get("sampleFormat", "UINT"))
                if found != expected:
                    raise ValueError(
                        f"band {name}: '{key}' holds {src.dtypes[0]}, the collection "
                        f"expects bitDepth {expected[0]} {expected[1]}"
                    )
                code = src.crs.to_epsg() if src.crs else None
                if code is None:
                    raise ValueError(
                        f"band {name}: '{key}' has no EPSG coordinate reference system"
                    )
                if epsg is not None and code != epsg:
                    raise ValueError(
                        f"band {name}: '{key}' is in EPSG:{code}, other files of the "
                        f"tile in EPSG:{epsg}"
                    )
                if not src.is_tiled and max(src.width, src.height) > 512:
                    raise ValueError(f"band {name}: '{key}' is not tiled; upload a COG")
                epsg, bounds = code, src.bounds
    return epsg, bounds  # type: ignore[return-value]


def _cover_to_crs84(geometry: dict[str, Any]) -> dict[str, Any]:
    if geometry.get("type") not in ("Polygon", "MultiPolygon"):
        raise InvalidRequest.at("coverGeometry", "must be a GeoJSON Polygon or MultiPolygon")
    crs_name = (geometry.get("crs") or {}).get("properties", {}).get("name")
    try:
        geom = shape(geometry)
        if crs_name and CRS.from_user_input(crs_name).to_epsg() != 4326:
            to_wgs = Transformer.from_crs(CRS.from_user_input(crs_name), 4326, always_xy=True)
            geom = shapely.transform(geom, lambda xy: _xy(to_wgs, xy))
    except Exception as exc:  # shapely/pyproj raise many kinds for bad geometries and CRSs
        raise InvalidRequest.at("coverGeometry", f"is not a valid geometry: {exc}") from exc
    if not geom.is_valid or geom.is_empty:
        raise InvalidRequest.at("coverGeometry", shapely.is_valid_reason(geom))
    return mapping(geom)  # type: ignore[return-value]


def _xy(transformer: Transformer, xy: Any) -> Any:
    x, y = transformer.transform(xy[:, 0], xy[:, 1])
    return np.column_stack([x, y])


def create_tile(
    db: Database, settings: Settings, account_id: str, collection_id: str, raw: Any
) -> dict[str, Any]:
    """Register a tile and ingest it: INGESTED, or FAILED with the reason."""
    body = parse_model(TileIn, raw)
    cover = _cover_to_crs84(body.cover_geometry) if body.cover_geometry else None
    with db.session() as session:
        collection = _owned_collection(session, account_id, collection_id)
        clash = session.scalars(
            select(Tile.id).where(Tile.collection_id == collection.id, Tile.path == body.path)
        ).first()
        if clash:
            raise Conflict(f"A tile with path '{body.path}' already exists in this collection")
        tile = Tile(
            id=str(uuid.uuid4()),
            collection_id=collection.id,
            path=body.path,
            sensing_time=body.sensing_time,
            cover_geometry=cover,
            status="INGESTING",
            ingestion_start=datetime.now(UTC),
        )
        location = bucket_location(settings, collection.s3_bucket)
        try:
            bands = collection.bands or _discover_bands(location, body.path)
            epsg, bounds = _inspect_tile(location, body.path, bands)
        except (ValueError, RasterioError, OSError) as exc:
            tile.status, tile.failed_cause = "FAILED", str(exc)
        else:
            if not collection.bands:
                collection.bands = bands
                if "(BAND)" not in body.path:
                    tile.path = f"{body.path.rstrip('/')}/(BAND).tif"
            tile.status, tile.epsg = "INGESTED", epsg
            tile.tile_geometry = {
                **mapping(shapely.box(*bounds)),
                "crs": {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{epsg}"}},
            }
        session.add(tile)
        session.flush()
        return tile_json(tile)


def _owned_tile(session: Any, account_id: str, collection_id: str, tile_id: str) -> Tile:
    collection = _owned_collection(session, account_id, collection_id)
    tile = session.get(Tile, _uuid_or_404(tile_id, "Tile"))
    if tile is None or tile.collection_id != collection.id:
        raise NotFound(f"Tile {tile_id} not found")
    return tile


def list_tiles(
    db: Database,
    account_id: str,
    collection_id: str,
    offset: int,
    limit: int,
    sort: str | None = None,
    path: str | None = None,
    status: str | None = None,
) -> list[dict[str, Any]]:
    orders = {None: Tile.created.asc(), "created:asc": Tile.created.asc(),
              "created:desc": Tile.created.desc()}  # fmt: skip
    if sort not in orders:
        raise InvalidRequest.at("sort", "must be created:asc or created:desc")
    with db.session() as session:
        collection = _owned_collection(session, account_id, collection_id)
        query = select(Tile).where(Tile.collection_id == collection.id)
        if path:
            query = query.where(Tile.path == path)
        if status:
            query = query.where(Tile.status == status)
        query = query.order_by(orders[sort], Tile.id).offset(offset).limit(limit + 1)
        return [tile_json(t) for t in session.scalars(query)]


def get_tile(db: Database, account_id: str, collection_id: str, tile_id: str) -> dict[str, Any]:
    with db.session() as session:
        return tile_json(_owned_tile(session, account_id, collection_id, tile_id))


def update_tile(db: Database, account_id: str, collection_id: str, tile_id: str, raw: Any) -> None:
    body = parse_model(TileUpdate, raw)
    cover = _cover_to_crs84(body.cover_geometry) if body.cover_geometry else None
    with db.session() as session:
        tile = _owned_tile(session, account_id, collection_id, tile_id)
        if body.sensing_time is not None:
            tile.sensing_time = body.sensing_time
        if cover is not None:
            tile.cover_geometry = cover


def delete_tile(db: Database, account_id: str, collection_id: str, tile_id: str) -> None:
    with db.session() as session:
        session.delete(_owned_tile(session, account_id, collection_id, tile_id))


def collection_scenes(
    db: Database, settings: Settings, account_id: str, collection_id: str, with_tiles: bool = True
) -> tuple[list[tuple[Scene, shapely.Geometry]], dict[str, Any]]:
    """The ingested tiles of a collection as reader scenes with their WGS84 footprints (none
    without `with_tiles`), and the collection's bands."""
    with db.session() as session:
        collection = _owned_collection(session, account_id, collection_id)
        bands, collection_nodata = collection.bands or {}, collection.no_data
        if not with_tiles:
            return [], bands
        tiles = session.scalars(
            select(Tile).where(Tile.collection_id == collection.id, Tile.status == "INGESTED")
        ).all()
        bucket = collection.s3_bucket
    location = bucket_location(settings, bucket)
    options = location.gdal_options()
    scenes = []
    for tile in tiles:
        sources = {
            name: BandSource(
                path=location.gdal_path(_band_key(tile.path, band.get("source") or name)),
                index=band.get("bandIndex", 1),
                nodata=band.get("noData", collection_nodata),
            )
            for name, band in bands.items()
        }
        footprint = _to_wgs84(shape(tile.tile_geometry), tile.epsg) if tile.tile_geometry else None
        cover = shape(tile.cover_geometry) if tile.cover_geometry else None
        if cover is not None:
            footprint = cover if footprint is None else footprint.intersection(cover)
        cover_wkb = shapely.to_wkb(cover) if cover is not None else None
        scene = Scene(tile.id, tile.sensing_time, tile.created, sources, cover_wkb, options)
        scenes.append((scene, footprint))
    return scenes, bands


def _to_wgs84(geometry: shapely.Geometry, epsg: int | None) -> shapely.Geometry:
    """A tile-CRS geometry in lon/lat, edges densified so the curved outline is kept."""
    if epsg in (None, 4326):
        return geometry
    minx, miny, maxx, maxy = geometry.bounds
    dense = shapely.segmentize(geometry, max((maxx - minx), (maxy - miny)) / 16)
    to_wgs = Transformer.from_crs(epsg, 4326, always_xy=True)
    return shapely.transform(dense, lambda xy: _xy(to_wgs, xy))
