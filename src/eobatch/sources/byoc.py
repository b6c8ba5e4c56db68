"""BYOC collections and tiles: the catalogue behind `/api/v1/byoc` and `byoc-<id>` inputs.

A collection names a bucket (`s3Bucket`) of the deployment; its tiles are COG files there, one
file per band found by replacing `(BAND)` in the tile path (pu-byoc-process.md §2).
"""

from __future__ import annotations

import copy
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

import numpy as np
import rasterio
import shapely
from pyproj import CRS, Transformer
from rasterio.errors import RasterioError
from rasterio.warp import transform_bounds
from shapely.geometry import mapping, shape
from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from eobatch.config import Settings
from eobatch.errors import Conflict, InvalidRequest, NotFound
from eobatch.limits import check_search, path_violations
from eobatch.projection import pixel_meters, transformer
from eobatch.schemas import parse_model
from eobatch.schemas.byoc import CollectionIn, TileIn, TileUpdate
from eobatch.sealing import Keyring, keyring_for, open_secrets, seal_secrets
from eobatch.sources.scenes import BandSource, Scene
from eobatch.storage import Location, open_location, redact_locator
from eobatch.store import Database
from eobatch.store.models import Collection, Tile

_FORMATS = {  # numpy dtype -> (bitDepth, sampleFormat)
    "uint8": (8, "UINT"),
    "int8": (8, "INT"),
    "uint16": (16, "UINT"),
    "int16": (16, "INT"),
    "uint32": (32, "UINT"),
    "int32": (32, "INT"),
    "float32": (32, "FLOAT"),
}
_TIFF_SUFFIXES = (".tif", ".tiff")


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def collection_json(c: Collection, summary: dict[str, Any] | None = None) -> dict[str, Any]:
    """A collection as the API shows it; `summary` adds what its tiles say (extent, times)."""
    body: dict[str, Any] = {
        "id": c.id,
        "accountId": c.account_id,
        "userId": c.account_id,
        "name": c.name,
        "s3Bucket": c.s3_bucket,
        "isConfigured": bool(c.bands),
        "created": _iso(c.created),
        "requiresMetadataUpdate": False,
        "additionalData": {"bands": c.bands or {}, **(summary or {})},
    }
    if c.storage is not None:
        body["storage"] = redact_locator(c.storage)
    if c.no_data is not None:
        body["noData"] = c.no_data
    return body


def _tiles_summary(session: Session, collection_id: str) -> dict[str, Any]:
    """`extent` (WGS84 polygon of the ingested tiles), `hasSensingTimes`, from/to times, and
    `maxMetersPerPixel` (the coarsest pixels a request may ask for)."""
    tiles = session.execute(
        select(
            Tile.tile_geometry,
            Tile.epsg,
            Tile.cover_geometry,
            Tile.overview_meters,
            Tile.sensing_time,
        ).where(Tile.collection_id == collection_id, Tile.status == "INGESTED")
    ).all()
    most = max_meters_per_pixel([t.overview_meters for t in tiles if t.overview_meters])
    limit = {} if most is None else {"maxMetersPerPixel": round(most, 2)}
    if not tiles:
        return {"hasSensingTimes": "NO", **limit}
    times = [t for *_, t in tiles if t is not None]
    summary: dict[str, Any] = {
        "hasSensingTimes": "YES" if len(times) == len(tiles) else "PARTIALLY" if times else "NO",
        **limit,
    }
    # Bounds only, one reprojection per CRS: a GET stays fast with thousands of tiles.
    boxes: dict[int, list[tuple[float, ...]]] = {}
    for geometry, epsg, cover, _, _ in tiles:
        if cover is not None:
            boxes.setdefault(4326, []).append(shape(cover).bounds)
        elif geometry is not None:
            boxes.setdefault(epsg or 4326, []).append(shape(geometry).bounds)
    wgs84 = []
    for epsg, group in boxes.items():
        array = np.array(group, dtype=float)
        union = (*array[:, :2].min(axis=0), *array[:, 2:].max(axis=0))
        wgs84.append(transform_bounds(epsg, 4326, *union) if epsg != 4326 else union)
    if wgs84:
        array = np.array(wgs84)
        summary["extent"] = mapping(
            shapely.box(*array[:, :2].min(axis=0), *array[:, 2:].max(axis=0))
        )
    if times:
        summary["fromSensingTime"] = _iso(min(times))
        summary["toSensingTime"] = _iso(max(times))
    return summary


def _footprint(
    tile_geometry: dict[str, Any] | None, epsg: int | None, cover: dict[str, Any] | None
) -> shapely.Geometry | None:
    """A tile's lon/lat footprint: its files' bounds, cut to its cover geometry."""
    footprint = _to_wgs84(shape(tile_geometry), epsg) if tile_geometry else None
    if cover is not None:
        covered = shape(cover)
        footprint = covered if footprint is None else footprint.intersection(covered)
    return footprint


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


def collection_location(settings: Settings, collection: Collection) -> Location:
    """Where a collection's tiles are: its own storage locator, or its deployment bucket."""
    if collection.storage is not None:
        return open_location(collection.storage, settings, "storage")
    return bucket_location(settings, collection.s3_bucket)


def _checked_storage(
    settings: Settings, s3_bucket: str | None, storage: dict[str, Any] | None
) -> tuple[str, dict[str, Any] | None]:
    """(s3Bucket, storage) of a collection, the bucket checked to exist and be readable. With
    both, s3Bucket must name the locator's bucket (what a GET returns)."""
    if storage is None:
        assert s3_bucket is not None
        bucket_location(settings, s3_bucket, "s3Bucket")
        return s3_bucket, None
    if isinstance(storage.get("s3"), dict) and storage["s3"].get("iamRoleARN"):
        raise InvalidRequest.at(
            "storage->s3->iamRoleARN",
            "collections read with an accessKey/secretAccessKey pair; roles are for deliveries",
        )
    for kind, fields in storage.items():
        if isinstance(fields, dict) and isinstance(fields.get("url"), str):
            refused = path_violations(fields["url"], f"storage->{kind}->url", settings, what="URL")
            if refused:
                problem = refused[0]
                raise InvalidRequest(
                    f"Invalid request: {problem.parameter}: {problem.violation}", refused
                )
    location = open_location(storage, settings, "storage")
    if s3_bucket is not None and s3_bucket != location.bucket:
        raise InvalidRequest.at(
            "s3Bucket", f"'{s3_bucket}' is not the bucket of storage ({location.bucket}); give one"
        )
    return location.bucket, storage


def _with_stored_secrets(storage: dict[str, Any], stored: dict[str, Any] | None) -> dict[str, Any]:
    """`storage` as a client sends it back after a GET: `***` keeps the stored secret."""
    merged = copy.deepcopy(storage)
    for kind, fields in merged.items():
        if not isinstance(fields, dict):
            continue
        for name, value in fields.items():
            if value != "***":
                continue
            old = ((stored or {}).get(kind) or {}).get(name)
            if old is None:
                raise InvalidRequest.at(f"storage->{kind}->{name}", "give the secret itself")
            fields[name] = old
    return merged


def _where(storage: dict[str, Any] | None) -> dict[str, Any] | None:
    """A storage locator without its credentials."""
    return redact_locator(storage) if storage is not None else None


def _uuid_or_404(value: str, what: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise NotFound(f"{what} {value} not found") from None


def _owned_collection(session: Session, account_id: str, collection_id: str) -> Collection:
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
    storage = _with_stored_secrets(body.storage, None) if body.storage is not None else None
    bucket, storage = _checked_storage(settings, body.s3_bucket, storage)
    with db.session() as session:
        collection = Collection(
            id=str(uuid.uuid4()),
            account_id=account_id,
            name=body.name,
            s3_bucket=bucket,
            storage=seal_secrets(storage, keyring_for(settings)),
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
        check_search(search)
        query = query.where(
            or_(
                *(
                    Collection.name.ilike(f"%{w.strip()}%")
                    for w in search.replace("&", "|").split("|")
                )
            )
        )
    query = query.order_by(Collection.created, Collection.id).offset(offset).limit(limit + 1)
    with db.reading() as session:
        return [collection_json(c, _tiles_summary(session, c.id)) for c in session.scalars(query)]


def get_collection(db: Database, account_id: str, collection_id: str) -> dict[str, Any]:
    with db.reading() as session:
        collection = _owned_collection(session, account_id, collection_id)
        return collection_json(collection, _tiles_summary(session, collection.id))


def update_collection(
    db: Database, settings: Settings, account_id: str, collection_id: str, raw: Any
) -> None:
    body = parse_model(CollectionIn, raw)
    keyring = keyring_for(settings)
    with db.reading() as session:
        storage, moved = _storage_change(
            _owned_collection(session, account_id, collection_id), body, keyring
        )
    # A new bucket is checked (storage I/O) before the writing transaction, not in it.
    checked = _checked_storage(settings, body.s3_bucket, storage) if moved else None
    with db.session() as session:
        collection = _owned_collection(session, account_id, collection_id)
        has_tiles = session.scalars(
            select(Tile.id).where(Tile.collection_id == collection.id).limit(1)
        ).first()
        if _storage_change(collection, body, keyring) != (storage, moved):
            raise Conflict("the collection changed while this update was checked; send it again")
        if moved:
            if has_tiles:
                raise Conflict(
                    "s3Bucket and storage can only be changed while the collection has no tiles"
                )
            assert checked is not None
            collection.s3_bucket = checked[0]
            collection.storage = seal_secrets(checked[1], keyring)
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


def _storage_change(
    collection: Collection, body: CollectionIn, keyring: Keyring
) -> tuple[dict[str, Any] | None, bool]:
    """(the storage an update asks for, with the stored secrets it omits; whether it moves the
    collection to another bucket or other credentials)."""
    if body.storage is not None:
        storage = _with_stored_secrets(body.storage, collection.storage)
        return storage, open_secrets(storage, keyring) != open_secrets(collection.storage, keyring)
    # s3Bucket alone: the same name keeps the collection's storage
    return None, body.s3_bucket != collection.s3_bucket


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
        found = {
            m.group("band"): key
            for key in location.list(folder)
            if (m := match.fullmatch(PurePosixPath(key).name))
        }
    else:
        found = {
            PurePosixPath(k).stem: k
            for k in location.list(tile_path)
            if k.lower().endswith(_TIFF_SUFFIXES)
        }
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


def _supported_epsg(code: int) -> bool:
    """CRSs BYOC tiles may use (pu-byoc-process.md §2.5)."""
    return code in (4326, 3857, 3035) or 32601 <= code <= 32660 or 32701 <= code <= 32760


def _check_cog_layout(src: rasterio.DatasetReader, key: str) -> None:
    """Tiled with 256..2048 px blocks (small files may be one strip), no JPEG compression."""
    height, width = src.block_shapes[0]
    if width != src.width or width == height:  # strips span the whole width
        if not (256 <= width <= 2048 and 256 <= height <= 2048):
            raise ValueError(
                f"'{key}' has {width} x {height} px internal tiles; BYOC needs between 256 and "
                "2048 (1024 recommended): rewrite it as a COG, e.g. gdal_translate -of COG"
            )
    elif max(src.width, src.height) > 512:  # a small file may be one strip
        raise ValueError(f"'{key}' is not tiled; upload a COG (gdal_translate -of COG)")
    compression = (src.compression.name if src.compression else "").upper()
    if "JPEG" in compression:
        raise ValueError(f"'{key}' is JPEG-compressed; use DEFLATE, ZSTD or LZW")


# A request may be at most this many times coarser than a collection's tiles' coarsest
# overviews (at least 256 px wide or high), and never be refused under 500 m per pixel.
_OVERVIEW_FACTOR, _FLOOR_METERS, _OVERVIEW_MIN_PX = 5.0, 500.0, 256


def max_meters_per_pixel(overview_meters: list[float]) -> float | None:
    """A collection's `maxMetersPerPixel`: five times the median of its tiles' coarsest
    overview pixel sizes, at least 500; None (no limit) while no tile has a size (tiles
    ingested before sizes were recorded keep serving what they served)."""
    if not overview_meters:
        return None
    return max(_FLOOR_METERS, _OVERVIEW_FACTOR * float(np.median(overview_meters)))


def collection_max_meters_per_pixel(session: Session, collection_id: str) -> float | None:
    sizes = session.scalars(
        select(Tile.overview_meters).where(
            Tile.collection_id == collection_id, Tile.status == "INGESTED"
        )
    ).all()
    return max_meters_per_pixel([s for s in sizes if s])


def coarsest_overview_meters(
    width: int, height: int, factors: Sequence[int], bounds: Sequence[float], epsg: int
) -> float:
    """Metres per pixel of a raster's coarsest level (itself or an overview at one of
    `factors`) at least 256 px wide or high."""
    level = 1
    for factor in factors:
        if max(-(-width // factor), -(-height // factor)) >= _OVERVIEW_MIN_PX:
            level = max(level, factor)
    res_x = (bounds[2] - bounds[0]) / width * level
    res_y = (bounds[3] - bounds[1]) / height * level
    return pixel_meters(res_x, res_y, epsg, (bounds[1] + bounds[3]) / 2)


def _inspect_tile(
    location: Location, tile_path: str, bands: dict[str, Any]
) -> tuple[int, Any, float]:
    """Check every band file of a tile; returns its EPSG code, its bounds (tile CRS): the
    intersection of the files' bounds, which must agree within a pixel, and the pixel size in
    metres of the coarsest overview every band has."""
    epsg, bounds, pixel = None, None, 0.0
    overview_meters = float("inf")
    with rasterio.Env(**location.gdal_options()):
        for name, band in bands.items():
            key = _band_key(tile_path, band.get("source") or name)
            if not location.exists(key):
                raise ValueError(f"band {name}: file '{key}' does not exist")
            with rasterio.open(location.gdal_path(key)) as src:
                _check_cog_layout(src, key)
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
                if not _supported_epsg(code):
                    raise ValueError(
                        f"band {name}: '{key}' is in EPSG:{code}; BYOC tiles must be in "
                        "EPSG:4326, 3857, 3035 or a WGS84 UTM zone (326xx/327xx)"
                    )
                if epsg is not None and code != epsg:
                    raise ValueError(
                        f"band {name}: '{key}' is in EPSG:{code}, other files of the "
                        f"tile in EPSG:{epsg}"
                    )
                pixel = max(pixel, abs(src.transform.a), abs(src.transform.e))
                if (
                    bounds is not None
                    and max(abs(a - b) for a, b in zip(bounds, src.bounds, strict=True)) > pixel
                ):
                    raise ValueError(
                        f"band {name}: '{key}' covers {tuple(src.bounds)}, other files of the "
                        f"tile {tuple(bounds)}; they must agree within a pixel"
                    )
                epsg = code
                overview_meters = min(
                    overview_meters,
                    coarsest_overview_meters(
                        src.width,
                        src.height,
                        src.overviews(band.get("bandIndex", 1)),
                        tuple(src.bounds),
                        code,
                    ),
                )
                bounds = (
                    tuple(src.bounds)
                    if bounds is None
                    else (
                        max(bounds[0], src.bounds.left),
                        max(bounds[1], src.bounds.bottom),
                        min(bounds[2], src.bounds.right),
                        min(bounds[3], src.bounds.top),
                    )
                )
    return epsg, bounds, overview_meters  # type: ignore[return-value]


def _cover_to_crs84(geometry: dict[str, Any]) -> dict[str, Any]:
    if geometry.get("type") not in ("Polygon", "MultiPolygon"):
        raise InvalidRequest.at("coverGeometry", "must be a GeoJSON Polygon or MultiPolygon")
    crs_name = (geometry.get("crs") or {}).get("properties", {}).get("name")
    try:
        geom = shape(geometry)
        if crs_name and CRS.from_user_input(crs_name).to_epsg() != 4326:
            to_wgs = transformer(CRS.from_user_input(crs_name).to_wkt(), 4326)
            geom = shapely.transform(geom, lambda xy: _xy(to_wgs, xy))
    except Exception as exc:  # shapely/pyproj raise many kinds for bad geometries and CRSs
        raise InvalidRequest.at("coverGeometry", f"is not a valid geometry: {exc}") from exc
    if not geom.is_valid or geom.is_empty:
        raise InvalidRequest.at("coverGeometry", shapely.is_valid_reason(geom))
    return mapping(geom)  # type: ignore[return-value]


def _xy(projection: Transformer, xy: Any) -> Any:
    x, y = projection.transform(xy[:, 0], xy[:, 1])
    return np.column_stack([x, y])


def create_tile(
    db: Database, settings: Settings, account_id: str, collection_id: str, raw: Any
) -> dict[str, Any]:
    """Register a tile and ingest it: INGESTED, or FAILED with the reason."""
    body = parse_model(TileIn, raw)
    refused = path_violations(body.path, "path", settings, what="tile path")
    if refused:
        raise InvalidRequest(f"Invalid request: path: {refused[0].violation}", refused)
    cover = _cover_to_crs84(body.cover_geometry) if body.cover_geometry else None
    with db.reading() as session:
        collection = _owned_collection(session, account_id, collection_id)
        _refuse_clash(session, collection.id, body.path)
    tile = Tile(
        id=str(uuid.uuid4()),
        collection_id=collection.id,
        path=body.path,
        sensing_time=body.sensing_time,
        cover_geometry=cover,
        status="WAITING",
    )
    # The files are read with no transaction open: a slow bucket holds up no other writer.
    bands = _ingest(settings, collection, tile)
    with db.session() as session:
        collection = _owned_collection(session, account_id, collection_id)
        _refuse_clash(session, collection.id, body.path, tile.path)
        _configure(collection, tile, bands)
        session.add(tile)
        session.flush()
        return tile_json(tile)


def _refuse_clash(session: Session, collection_id: str, *paths: str) -> None:
    clash = session.scalars(
        select(Tile.path).where(Tile.collection_id == collection_id, Tile.path.in_(paths))
    ).first()
    if clash:
        raise Conflict(f"A tile with path '{clash}' already exists in this collection")


def _ingest(settings: Settings, collection: Collection, tile: Tile) -> dict[str, Any] | None:
    """Check the tile's files and record the outcome on `tile`: INGESTED, or FAILED with why.
    Returns the bands found in the files when the collection has none yet (the first tile
    configures it: `_configure`)."""
    tile.status, tile.failed_cause = "INGESTING", None
    tile.ingestion_start = datetime.now(UTC)
    try:
        location = collection_location(settings, collection)
        bands = collection.bands or _discover_bands(location, tile.path)
        epsg, bounds, overview_meters = _inspect_tile(location, tile.path, bands)
    except InvalidRequest as exc:  # the storage itself is gone or refuses us
        tile.status, tile.failed_cause = "FAILED", f"storage: {exc.message}"
        return None
    except (ValueError, RasterioError, OSError) as exc:
        tile.status, tile.failed_cause = "FAILED", str(exc)
        return None
    tile.status, tile.epsg, tile.overview_meters = "INGESTED", epsg, overview_meters
    tile.tile_geometry = {
        **mapping(shapely.box(*bounds)),
        "crs": {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{epsg}"}},
    }
    if collection.bands:
        return None
    if "(BAND)" not in tile.path:
        tile.path = f"{tile.path.rstrip('/')}/(BAND).tif"
    return bands


def _configure(collection: Collection, tile: Tile, bands: dict[str, Any] | None) -> None:
    """Give the collection the bands its first tile brought (in the writing transaction);
    if another tile configured it meanwhile with other bands, this tile's check is void."""
    if bands is None:
        return
    if not collection.bands:
        collection.bands = bands
    elif collection.bands != bands:
        tile.status = "FAILED"
        tile.failed_cause = (
            "the collection's bands were set by another tile while this one was checked; "
            "reingest it"
        )


def reingest_tile(
    db: Database, settings: Settings, account_id: str, collection_id: str, tile_id: str
) -> None:
    """Check a tile's files again (after they changed in the bucket)."""
    with db.reading() as session:
        checked = _owned_tile(session, account_id, collection_id, tile_id)
        collection = session.get(Collection, checked.collection_id)
        assert collection is not None
    bands = _ingest(settings, collection, checked)  # no transaction open meanwhile
    with db.session() as session:
        tile = _owned_tile(session, account_id, collection_id, tile_id)
        collection = session.get(Collection, tile.collection_id)
        assert collection is not None
        if checked.path != tile.path:  # now `<path>/(BAND).tif`: that must be free too
            _refuse_clash(session, collection.id, checked.path)
        for field in _INGESTION_FIELDS:
            setattr(tile, field, getattr(checked, field))
        _configure(collection, tile, bands)


# What `_ingest` sets on a tile.
_INGESTION_FIELDS = (
    "path",
    "status",
    "failed_cause",
    "ingestion_start",
    "epsg",
    "overview_meters",
    "tile_geometry",
)


def copy_tiles(db: Database, account_id: str, collection_id: str, target_id: str | None) -> None:
    """Copy the ingested tiles of a collection whose path the target lacks (same bucket and
    bands, or a target without bands, which takes the source's)."""
    if not target_id:
        raise InvalidRequest.at("toCollection", "is required: the id of the target collection")
    with db.session() as session:
        source = _owned_collection(session, account_id, collection_id)
        target = _owned_collection(session, account_id, target_id)
        if target.id == source.id:
            raise InvalidRequest.at("toCollection", "must be another collection")
        # The same bucket: credentials (sealed, so never equal as stored) are not compared.
        if (target.s3_bucket, _where(target.storage)) != (source.s3_bucket, _where(source.storage)):
            raise Conflict("tiles can only be copied between collections of the same bucket")
        if target.bands and target.bands != source.bands:
            raise Conflict(
                "the target collection's bands differ from the source's; tiles can only be "
                "copied into a collection with the same bands or none"
            )
        present = set(session.scalars(select(Tile.path).where(Tile.collection_id == target.id)))
        tiles = session.scalars(
            select(Tile).where(Tile.collection_id == source.id, Tile.status == "INGESTED")
        ).all()
        target.bands = source.bands
        for tile in tiles:
            if tile.path in present:
                continue
            session.add(
                Tile(
                    id=str(uuid.uuid4()),
                    collection_id=target.id,
                    path=tile.path,
                    sensing_time=tile.sensing_time,
                    cover_geometry=tile.cover_geometry,
                    tile_geometry=tile.tile_geometry,
                    epsg=tile.epsg,
                    overview_meters=tile.overview_meters,
                    status="INGESTED",
                    ingestion_start=tile.ingestion_start,
                )
            )


def _owned_tile(session: Session, account_id: str, collection_id: str, tile_id: str) -> Tile:
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
    orders = {
        None: Tile.created.asc(),
        "created:asc": Tile.created.asc(),
        "created:desc": Tile.created.desc(),
    }
    if sort not in orders:
        raise InvalidRequest.at("sort", "must be created:asc or created:desc")
    with db.reading() as session:
        collection = _owned_collection(session, account_id, collection_id)
        query = select(Tile).where(Tile.collection_id == collection.id)
        if path:
            query = query.where(Tile.path == path)
        if status:
            query = query.where(Tile.status == status)
        query = query.order_by(orders[sort], Tile.id).offset(offset).limit(limit + 1)
        return [tile_json(t) for t in session.scalars(query)]


def get_tile(db: Database, account_id: str, collection_id: str, tile_id: str) -> dict[str, Any]:
    with db.reading() as session:
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
    with db.reading() as session:
        collection = _owned_collection(session, account_id, collection_id)
        bands, collection_nodata = collection.bands or {}, collection.no_data
        if not with_tiles:
            return [], bands
        tiles = session.scalars(
            select(Tile).where(Tile.collection_id == collection.id, Tile.status == "INGESTED")
        ).all()
        location = collection_location(settings, collection)
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
        footprint = _footprint(tile.tile_geometry, tile.epsg, tile.cover_geometry)
        cover = shape(tile.cover_geometry) if tile.cover_geometry else None
        cover_wkb = shapely.to_wkb(cover) if cover is not None else None
        # A tile may have no sensing time (null in the API): such a scene is read as it is, but
        # a time filter or a time order over it would fail; how it should take part is open.
        sensed = tile.sensing_time
        scene = Scene(tile.id, sensed, tile.created, sources, cover_wkb, options)  # type: ignore[arg-type]
        scenes.append((scene, footprint))
    return scenes, bands


def _to_wgs84(geometry: shapely.Geometry, epsg: int | None) -> shapely.Geometry:
    """A tile-CRS geometry in lon/lat, edges densified so the curved outline is kept."""
    if epsg in (None, 4326):
        return geometry
    minx, miny, maxx, maxy = geometry.bounds
    dense = shapely.segmentize(geometry, max((maxx - minx), (maxy - miny)) / 16)
    to_wgs = transformer(epsg, 4326)
    return shapely.transform(dense, lambda xy: _xy(to_wgs, xy))


@dataclass(frozen=True)
class TileFootprint:
    """An ingested tile as the Catalog API lists it."""

    id: str
    path: str  # in the collection's bucket, with (BAND)
    sensing_time: datetime | None
    footprint: shapely.Geometry | None  # lon/lat
    epsg: int | None


def tile_footprints(
    db: Database, account_id: str, collection_id: str
) -> tuple[str, list[TileFootprint]]:
    """The bucket of an account's collection and its ingested tiles with lon/lat footprints."""
    with db.reading() as session:
        collection = _owned_collection(session, account_id, collection_id)
        tiles = session.scalars(
            select(Tile).where(Tile.collection_id == collection.id, Tile.status == "INGESTED")
        ).all()
        return collection.s3_bucket, [
            TileFootprint(
                t.id,
                t.path,
                t.sensing_time,
                _footprint(t.tile_geometry, t.epsg, t.cover_geometry),
                t.epsg,
            )
            for t in tiles
        ]
