"""What the Catalog API serves: the caller's BYOC collections (tiles as items) and the data
types the deployment reads from STAC (items of their catalogue, searched like a task's scenes).

Collections and items come out as STAC 1.0.0 dictionaries without links (the API adds those,
knowing its own URL). Items are ordered by datetime, then id, so offsets page stably.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import shapely
from shapely.geometry import mapping

from eobatch.config import Settings
from eobatch.errors import InvalidRequest, NotFound
from eobatch.lifecycle.validation import collection_id_of, stac_collections
from eobatch.sources.byoc import get_collection, list_collections, tile_footprints
from eobatch.sources.cql2 import Condition
from eobatch.sources.stac import StacCollection, search_terms
from eobatch.sources.stac_search import Retry, StacItem, StacQuery, search_items
from eobatch.store import Database

STAC_VERSION = "1.0.0"
CRS84 = {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC::CRS84"}}
_WORLD = (-180.0, -90.0, 180.0, 90.0)
_CACHE_S = 60.0  # how long a STAC search is reused by the next pages of the same search
_CACHE_SIZE = 32


@dataclass(frozen=True)
class CatalogCollection:
    """One collection of the catalogue: a BYOC collection or a data type served from STAC."""

    id: str  # byoc-<uuid>, or the data type (sentinel-2-l2a)
    title: str
    description: str
    bbox: tuple[float, float, float, float]
    interval: tuple[str | None, str | None]
    bands: tuple[str, ...]
    queryables: dict[str, dict[str, Any]]  # filterable property -> its JSON schema
    stac: StacCollection | None = None
    byoc_id: str | None = None

    def as_stac(self) -> dict[str, Any]:
        return {
            "type": "Collection",
            "stac_version": STAC_VERSION,
            "stac_extensions": [],
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "license": "proprietary",
            "extent": {
                "spatial": {"bbox": [list(self.bbox)]},
                "temporal": {"interval": [list(self.interval)]},
            },
            "summaries": {"eo:bands": [{"name": band} for band in self.bands]},
        }


@dataclass(frozen=True)
class ItemQuery:
    """Which items of a collection a search wants (all given parts must hold)."""

    area: shapely.Geometry | None = None  # lon/lat
    start: datetime | None = None
    end: datetime | None = None
    ids: tuple[str, ...] | None = None
    conditions: tuple[Condition, ...] = field(default_factory=tuple)


def visible_collections(
    db: Database, settings: Settings, account_id: str
) -> list[CatalogCollection]:
    """The STAC-served data types of the deployment, then the account's BYOC collections."""
    served = [_stac_collection(name, entry) for name, entry in sorted(_served(settings).items())]
    return served + [_byoc_collection(c) for c in list_collections(db, account_id, 0, 10_000)]


def find_collection(
    db: Database, settings: Settings, account_id: str, collection_id: str
) -> CatalogCollection:
    """The collection `collection_id` if the account may see it (404 otherwise)."""
    byoc = collection_id_of(collection_id, None)
    if byoc is not None:
        return _byoc_collection(get_collection(db, account_id, byoc))
    served = _served(settings)
    if collection_id not in served:
        raise NotFound(f"Collection {collection_id} not found")
    return _stac_collection(collection_id, served[collection_id])


def items(
    db: Database,
    settings: Settings,
    account_id: str,
    collection: CatalogCollection,
    query: ItemQuery,
) -> list[dict[str, Any]]:
    """Every item of `collection` that `query` selects, as STAC items without links."""
    unknown = [c.property for c in query.conditions if c.property not in collection.queryables]
    if unknown:
        allowed = ", ".join(collection.queryables) or "none"
        raise InvalidRequest.at(
            "filter",
            f"{', '.join(unknown)} cannot be filtered on in {collection.id}; queryable: {allowed}",
        )
    if collection.byoc_id is not None:
        found = _byoc_items(db, account_id, collection, query)
    else:
        found = _stac_items(settings, collection, query)
    found.sort(key=lambda item: (item["properties"]["datetime"], item["id"]))
    return found


# -- BYOC ---------------------------------------------------------------------------------------


def _byoc_collection(body: dict[str, Any]) -> CatalogCollection:
    extra = body.get("additionalData", {})
    extent = extra.get("extent")
    bbox = shapely.geometry.shape(extent).bounds if extent else _WORLD
    return CatalogCollection(
        id=f"byoc-{body['id']}",
        title=body["name"],
        description=f"BYOC collection {body['name']}",
        bbox=bbox,
        interval=(extra.get("fromSensingTime"), extra.get("toSensingTime")),
        bands=tuple(extra.get("bands", {})),
        queryables={},
        byoc_id=body["id"],
    )


def _byoc_items(
    db: Database, account_id: str, collection: CatalogCollection, query: ItemQuery
) -> list[dict[str, Any]]:
    assert collection.byoc_id is not None
    bucket, tiles = tile_footprints(db, account_id, collection.byoc_id)
    found = []
    for tile in tiles:
        if tile.sensing_time is None or tile.footprint is None:
            continue  # an item needs a datetime and a geometry
        if not _wanted(tile.id, tile.sensing_time, tile.footprint, query):
            continue
        properties: dict[str, Any] = {"datetime": _iso(tile.sensing_time)}
        if tile.epsg:
            properties["proj:epsg"] = tile.epsg
        asset = {"href": f"s3://{bucket}/{tile.path}", "title": "s3", "roles": ["data"]}
        found.append(_item(collection.id, tile.id, tile.footprint, properties, {"data": asset}))
    return found


# -- STAC-served data types ---------------------------------------------------------------------


def _served(settings: Settings) -> dict[str, StacCollection]:
    try:
        return stac_collections(settings)
    except (OSError, ValueError, KeyError):
        return {}  # validation logs an unreadable mapping; the catalogue then has BYOC only


def _stac_collection(name: str, entry: StacCollection) -> CatalogCollection:
    queryables = {}
    if entry.cloud_cover:
        queryables["eo:cloud_cover"] = {
            "description": "Cloud Cover",
            "type": "number",
            "minimum": 0,
            "maximum": 100,
        }
    return CatalogCollection(
        id=name,
        title=name,
        description=entry.description or name,
        bbox=_WORLD,
        interval=(None, None),
        bands=tuple(entry.bands),
        queryables=queryables,
        stac=entry,
    )


def _stac_items(
    settings: Settings, collection: CatalogCollection, query: ItemQuery
) -> list[dict[str, Any]]:
    entry = collection.stac
    assert entry is not None
    if query.area is None:
        raise InvalidRequest.at(
            "bbox",
            f"{collection.id} is searched in its upstream catalogue, which needs an area: give "
            "bbox or intersects",
        )
    names, accepted = search_terms(entry, {})
    catalogue = entry.source or settings.stac_source
    search = StacQuery(
        names, query.area.bounds, query.start, query.end, accepted, entry.alternate_href
    )
    retry = Retry(settings.stac_attempts, settings.stac_backoff_s)
    cloud = entry.cloud_cover
    found = []
    for item in _cached_search(catalogue, search, retry):
        properties = {k: v for k, v in item.properties.items() if k != "datetime"}
        if cloud and cloud != "eo:cloud_cover" and cloud in properties:
            properties["eo:cloud_cover"] = properties[cloud]
        properties["datetime"] = _iso(item.datetime)
        if not _wanted(item.id, item.datetime, item.geometry, query, properties):
            continue
        assets = {key: {"href": href} for key, href in item.assets.items()}
        found.append(_item(collection.id, item.id, item.geometry, properties, assets))
    return found


_cache: OrderedDict[str, tuple[float, list[StacItem]]] = OrderedDict()
_cache_lock = threading.Lock()


def _cached_search(catalogue: str, query: StacQuery, retry: Retry) -> list[StacItem]:
    """`search_items`, reused for a minute: the pages of one search ask for the same items."""
    key = f"{catalogue} {query!r}"
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None and now - hit[0] < _CACHE_S:
            return hit[1]
    found = search_items(catalogue, query, retry)
    with _cache_lock:
        _cache[key] = (now, found)
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return found


# -- items --------------------------------------------------------------------------------------


def _wanted(
    item_id: str,
    sensed: datetime,
    footprint: shapely.Geometry,
    query: ItemQuery,
    properties: dict[str, Any] | None = None,
) -> bool:
    if query.ids is not None and item_id not in query.ids:
        return False
    if query.start is not None and sensed < query.start:
        return False
    if query.end is not None and sensed > query.end:
        return False
    if query.area is not None and not footprint.intersects(query.area):
        return False
    return all(c.holds(properties or {}) for c in query.conditions)


def _item(
    collection_id: str,
    item_id: str,
    footprint: shapely.Geometry,
    properties: dict[str, Any],
    assets: dict[str, Any],
) -> dict[str, Any]:
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": [],
        "id": item_id,
        "collection": collection_id,
        "geometry": {**mapping(footprint), "crs": CRS84},
        "bbox": list(footprint.bounds),
        "properties": properties,
        "assets": assets,
    }


def _iso(value: datetime) -> str:
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
