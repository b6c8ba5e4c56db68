"""Sentinel-2 (and other STAC collections) as scenes: search a STAC source, map assets to bands.

A deployment names one STAC source (`EOBATCH_STAC_SOURCE`): a STAC API URL, searched with rustac,
or a local stac-geoparquet file, searched with DuckDB (predicates pushed down to the Parquet
reader, so a continent's items are not all loaded). A mapping file (`EOBATCH_STAC_MAPPING`,
default `data/stac_collections.json`, for Earth Search v1) says which STAC collection serves a
Sentinel Hub data type, which asset holds each band, the units a band can be read in and how
the processing-baseline offset is harmonised. docs/collections.md describes the format.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import shapely

from eobatch.sources.scenes import BandSource, Scene

DEFAULT_MAPPING = "stac_collections.json"
DEFAULT_SOURCE = "https://earth-search.aws.element84.com/v1"
# Sentinel Hub's older names for the same data types (evalscript-v3.md §6).
ALIASES = {"S2L1C": "sentinel-2-l1c", "S2L2A": "sentinel-2-l2a"}


@dataclass(frozen=True)
class StacBand:
    """One band of a data type: the asset holding it and how its stored values convert."""

    asset: str
    resolution: float  # native pixel size in metres (informative: the reader uses the file's)
    units: dict[str, float]  # unit name -> factor applied to the stored value; first = default
    harmonize: bool = False  # subject to the processing-baseline offset
    resampling: str | None = None  # forced resampling (class bands such as SCL: NEAREST)

    @property
    def default_units(self) -> str:
        return next(iter(self.units))


@dataclass(frozen=True)
class Harmonization:
    """The processing-baseline offset: products of baseline >= `since` store DN - `offset`."""

    baseline: str  # item property holding the baseline, e.g. "05.10"
    since: str
    offset: float  # added to harmonise (e.g. -1000)
    already_applied: str | None = None  # item property: true when the source removed it already


@dataclass(frozen=True)
class StacCollection:
    """How one Sentinel Hub data type (e.g. `sentinel-2-l2a`) is served from the STAC source."""

    data_type: str
    stac_collection: str
    bands: dict[str, StacBand]
    no_data: float | None = 0
    cloud_cover: str | None = None  # item property with the cloud cover in percent
    harmonization: Harmonization | None = None

    def band_info(self) -> dict[str, dict[str, Any]]:
        """The bands as analysis checks them (the same shape as a BYOC collection's bands)."""
        return {name: {"units": list(b.units)} for name, b in self.bands.items()}


@dataclass(frozen=True)
class StacItem:
    """What the reader needs of a STAC item."""

    id: str
    datetime: datetime
    geometry: shapely.Geometry  # lon/lat footprint
    properties: dict[str, Any]
    assets: dict[str, str]  # asset key -> href


def load_mapping(path: str | Path | None = None) -> dict[str, StacCollection]:
    """The data types the mapping file declares; the built-in Earth Search mapping by default."""
    if path is None:
        text = resources.files("eobatch.sources.data").joinpath(DEFAULT_MAPPING).read_text()
    else:
        text = Path(path).read_text()
    return _parse_mapping(text)


@lru_cache(maxsize=8)
def _parse_mapping(text: str) -> dict[str, StacCollection]:
    collections = {}
    for data_type, entry in json.loads(text).items():
        harmonization = entry.get("harmonization")
        collections[data_type] = StacCollection(
            data_type=data_type,
            stac_collection=entry.get("stacCollection", data_type),
            bands={
                name: StacBand(
                    asset=band["asset"],
                    resolution=float(band.get("resolution", 0)),
                    units={u: float(f) for u, f in (band.get("units") or {"DN": 1}).items()},
                    harmonize=bool(band.get("harmonize", False)),
                    resampling=band.get("resampling"),
                )
                for name, band in entry["bands"].items()
            },
            no_data=entry.get("noData", 0),
            cloud_cover=entry.get("cloudCover"),
            harmonization=Harmonization(
                baseline=harmonization["baseline"],
                since=harmonization["since"],
                offset=float(harmonization["offset"]),
                already_applied=harmonization.get("alreadyApplied"),
            )
            if harmonization
            else None,
        )
    return collections


@dataclass(frozen=True)
class StacQuery:
    """Items of `collection` whose footprint meets `bbox` (lon/lat), sensed in [start, end]."""

    collection: str
    bbox: tuple[float, float, float, float]
    start: datetime | None = None
    end: datetime | None = None


def search_items(source: str, query: StacQuery) -> list[StacItem]:
    """The items of the STAC source (API URL or stac-geoparquet file) that answer `query`."""
    if _is_geoparquet(source):
        items = _search_geoparquet(_local_path(source), query)
    else:
        items = _search_api(source, query)
    area = shapely.box(*query.bbox)
    return [item for item in items if item.geometry.intersects(area)]


def _is_geoparquet(source: str) -> bool:
    return urlsplit(source).path.lower().endswith((".parquet", ".geoparquet"))


def _local_path(source: str) -> str:
    parts = urlsplit(source)
    if parts.scheme not in ("", "file"):
        raise ValueError(
            f"stac-geoparquet source {source} must be a local file; serve remote catalogues "
            "through a STAC API"
        )
    return parts.path if parts.scheme == "file" else source


def _rfc3339(value: datetime | None) -> str:
    if value is None:
        return ".."
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _search_api(url: str, query: StacQuery) -> list[StacItem]:
    import rustac  # imported here: only deployments with a STAC API need it loaded

    start, end = query.start, query.end
    # An open range is left out: some STAC APIs refuse "../..".
    when = None if start is None and end is None else f"{_rfc3339(start)}/{_rfc3339(end)}"
    found = rustac.search_sync(
        url, collections=[query.collection], bbox=list(query.bbox), datetime=when, limit=500
    )
    return [_from_geojson(item) for item in found]


def _from_geojson(item: dict[str, Any]) -> StacItem:
    properties = dict(item.get("properties") or {})
    return StacItem(
        id=str(item["id"]),
        datetime=_parse_time(properties.get("datetime") or properties.get("start_datetime")),
        geometry=shapely.geometry.shape(item["geometry"]),
        properties=properties,
        assets={k: a["href"] for k, a in (item.get("assets") or {}).items() if "href" in a},
    )


def _parse_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


_CORE_COLUMNS = ("type", "stac_version", "stac_extensions", "id", "geometry", "bbox", "links",
                 "assets", "collection")  # fmt: skip


def _search_geoparquet(path: str, query: StacQuery) -> list[StacItem]:
    """stac-geoparquet keeps item properties as top-level columns and the bbox as a struct the
    Parquet reader can prune row groups by."""
    import duckdb

    if not Path(path).is_file():
        raise ValueError(f"stac-geoparquet file {path} does not exist")
    # Parquet and ST_AsWKB are built in: never let DuckDB fetch an extension from the internet.
    with duckdb.connect(config={"autoinstall_known_extensions": False}) as con:
        return _query_geoparquet(con, path, query)


def _query_geoparquet(con: Any, path: str, query: StacQuery) -> list[StacItem]:
    source = "read_parquet(?)"
    described = con.execute(f"DESCRIBE SELECT * FROM {source}", [path]).fetchall()
    types = {row[0]: str(row[1]) for row in described}
    properties = [c for c in types if c not in _CORE_COLUMNS]
    minx, miny, maxx, maxy = query.bbox
    where = ["bbox.xmin <= ?", "bbox.xmax >= ?", "bbox.ymin <= ?", "bbox.ymax >= ?"]
    params: list[Any] = [maxx, minx, maxy, miny]
    if "collection" in types:
        where.append("collection = ?")
        params.append(query.collection)
    # Times cross as epoch microseconds: DuckDB's own datetime conversion would need pytz.
    if query.start is not None:
        where.append("epoch_us(datetime) >= ?")
        params.append(_epoch_us(query.start))
    if query.end is not None:
        where.append("epoch_us(datetime) <= ?")
        params.append(_epoch_us(query.end))
    selected = ", ".join(
        f"epoch_us({_quote(c)})" if types[c].startswith("TIMESTAMP") else _quote(c)
        for c in properties
    )
    sql = (
        f"SELECT id, ST_AsWKB(geometry), to_json(assets), {selected} FROM {source} "
        f"WHERE {' AND '.join(where)}"
    )
    items = []
    for row in con.execute(sql, [path, *params]).fetchall():
        item_id, wkb, assets_json, *values = row
        props = {
            name: _from_epoch_us(value) if types[name].startswith("TIMESTAMP") else value
            for name, value in zip(properties, values, strict=True)
        }
        assets = json.loads(assets_json or "{}")
        items.append(
            StacItem(
                id=str(item_id),
                datetime=_parse_time(props.get("datetime") or props.get("start_datetime")),
                geometry=shapely.from_wkb(bytes(wkb)),
                properties=props,
                assets={k: a["href"] for k, a in assets.items() if a and a.get("href")},
            )
        )
    return items


def _epoch_us(value: datetime) -> int:
    return round(value.timestamp() * 1_000_000)


def _from_epoch_us(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value / 1_000_000, UTC)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def item_scene(
    item: StacItem,
    collection: StacCollection,
    harmonize: bool,
    locate: Callable[[str], tuple[str, dict[str, str]]],
) -> Scene:
    """The scene of a STAC item: one `BandSource` per mapped band whose asset the item has.

    `locate` turns an asset href into a GDAL path and the `rasterio.Env` options to read it.
    `harmonize` is the request's `processing.harmonizeValues`.
    """
    shift = _baseline_shift(item, collection.harmonization, harmonize)
    bands, options = {}, {}
    for name, band in collection.bands.items():
        href = item.assets.get(band.asset)
        if href is None:
            continue
        path, options = locate(href)
        bands[name] = BandSource(
            path,
            1,
            collection.no_data,
            offset=shift if band.harmonize else 0.0,
            resampling=band.resampling,
        )
    cloud = item.properties.get(collection.cloud_cover) if collection.cloud_cover else None
    return Scene(
        id=item.id,
        sensing_time=item.datetime,
        created=None,
        bands=bands,
        cover_wkb=None,
        gdal_options=options,
        cloud_cover=float(cloud) if cloud is not None else None,
    )


def _baseline_shift(item: StacItem, rule: Harmonization | None, harmonize: bool) -> float:
    """The DN shift that gives the values the request asks for: with `harmonizeValues` the
    offset of new baselines is removed; without, values as ESA delivers them (if the source
    removed the offset already, it is added back)."""
    if rule is None:
        return 0.0
    baseline = item.properties.get(rule.baseline)
    if baseline is None or _version(str(baseline)) < _version(rule.since):
        return 0.0
    applied = bool(item.properties.get(rule.already_applied)) if rule.already_applied else False
    if harmonize:
        return 0.0 if applied else rule.offset
    return -rule.offset if applied else 0.0


def _version(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.split("."))
    except ValueError:
        return (0,)
