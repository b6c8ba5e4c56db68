"""Sentinel Hub data types served from STAC catalogues, and their STAC items as scenes.

A mapping file says, per Sentinel Hub data type (`sentinel-2-l2a`, `landsat-ot-l2`,
`sentinel-1-grd`, `dem`, ...), which catalogue and STAC collections serve it, which asset holds
each band, the units a band can be read in, its no-data value, and which of the type's
`dataFilter`/`processing` options this deployment serves and how (an item property filter, or
other STAC collections). The built-in mapping (`data/stac_collections.json`) points every type
at a public catalogue; a deployment's own file (`EOBATCH_STAC_MAPPING`) is laid over it, entry
by entry. docs/collections.md describes the format; docs/collections/ each type.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import shapely

from eobatch.sources.scenes import BandSource, Scene
from eobatch.sources.stac_search import StacItem
from eobatch.sources.units import IDENTITY, Conversion, parse_conversion

DEFAULT_MAPPING = "stac_collections.json"
# Sentinel Hub's older names for the same data types ("previously S2L2A", ...).
ALIASES = {
    "S2L1C": "sentinel-2-l1c",
    "S2L2A": "sentinel-2-l2a",
    "S1GRD": "sentinel-1-grd",
    "LOTL1": "landsat-ot-l1",
    "LOTL2": "landsat-ot-l2",
    "LETML2": "landsat-etm-l2",
    "LTML2": "landsat-tm-l2",
    "DEM": "dem",
    "MODIS": "modis",
    "HLS": "hls",
}
MOSAICKING = ("SIMPLE", "ORBIT", "TILE")
# Options every data type has; the others are the type's own (mapping file `options`).
_COMMON_FILTER = frozenset({"timeRange", "mosaickingOrder", "maxCloudCoverage", "collectionId"})
_COMMON_PROCESSING = frozenset({"upsampling", "downsampling", "harmonizeValues"})
_MISSING: Any = object()


@dataclass(frozen=True)
class StacBand:
    """One band of a data type: the asset holding it and how its stored values convert."""

    assets: dict[str, str]  # STAC collection ("*": any) -> asset key
    resolution: float  # native pixel size in metres (informative: the reader uses the file's)
    units: dict[str, Conversion]  # unit name -> conversion of the stored values; first = default
    no_data: float | None = 0  # stored no-data value; None: the file's own, if any
    harmonize: bool = False  # subject to the processing-baseline offset
    resampling: str | None = None  # forced resampling (class and bit-flag bands: NEAREST)

    @property
    def default_units(self) -> str:
        return next(iter(self.units))

    def asset(self, collection: str | None) -> str | None:
        """The asset key holding this band in items of `collection`."""
        return self.assets.get(collection or "", self.assets.get("*"))


@dataclass(frozen=True)
class Harmonization:
    """The processing-baseline offset: products of baseline >= `since` store DN - `offset`."""

    baseline: str  # item property holding the baseline, e.g. "05.10"
    since: str
    offset: float  # added to harmonise (e.g. -1000)
    already_applied: str | None = None  # item property: true when the source removed it already


@dataclass(frozen=True)
class OptionChoice:
    """What one served value of an option selects: an item property filter, or other STAC
    collections searched instead of the type's."""

    filter: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    collections: tuple[str, ...] = ()


@dataclass(frozen=True)
class Option:
    """A `dataFilter`/`processing` option of a data type (e.g. `dataFilter.tiers`)."""

    parameter: str  # "dataFilter.tiers", "processing.backCoeff"
    served: dict[str, OptionChoice]  # the values this deployment serves
    default: str | None = None  # what an omitted option means; None: no constraint


@dataclass(frozen=True)
class StacCollection:
    """How one Sentinel Hub data type (e.g. `sentinel-2-l2a`) is served from a STAC source."""

    data_type: str
    stac_collections: tuple[str, ...]
    bands: dict[str, StacBand]
    source: str | None = None  # STAC API URL or stac-geoparquet file; None: EOBATCH_STAC_SOURCE
    description: str = ""
    cloud_cover: str | None = None  # item property with the cloud cover in percent
    harmonization: Harmonization | None = None
    filter: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # always applied
    options: dict[str, Option] = field(default_factory=dict)
    requester_pays: bool = False  # s3:// assets in a requester-pays bucket
    alternate_href: str | None = None  # read assets' `alternate.<name>.href` (e.g. "s3")
    timeless: bool = False  # the time range does not apply (the DEM)
    fill: float | None = None  # value of pixels no scene covers (they then have data)
    mosaicking: tuple[str, ...] = MOSAICKING
    upsampling_only: bool = False  # `upsampling` for every resampling (Sentinel-1)

    def band_info(self) -> dict[str, dict[str, Any]]:
        """The bands as analysis checks them (the same shape as a BYOC collection's bands)."""
        return {name: {"units": list(b.units)} for name, b in self.bands.items()}

    @property
    def scene_properties(self) -> tuple[str, ...]:
        """Item properties a scene keeps: what its units and harmonisation read."""
        names: list[str] = []
        for band in self.bands.values():
            for conversion in band.units.values():
                names.extend(conversion.properties)
        if self.harmonization:
            names.append(self.harmonization.baseline)
            if self.harmonization.already_applied:
                names.append(self.harmonization.already_applied)
        return tuple(dict.fromkeys(names))

    @property
    def asset_keys(self) -> frozenset[str]:
        return frozenset(key for band in self.bands.values() for key in band.assets.values())


# -- the mapping file ----------------------------------------------------------------------------


def load_mapping(path: str | Path | None = None) -> dict[str, StacCollection]:
    """The served data types: the built-in mapping with the file at `path` laid over it.

    An entry of the file replaces the keys it gives of the built-in entry of that type (so
    `{"landsat-ot-l2": {"source": "https://..."}}` only moves Landsat to another catalogue), adds
    a type, or, as `null`, withdraws one.
    """
    builtin = resources.files("eobatch.sources.data").joinpath(DEFAULT_MAPPING).read_text()
    overlay = Path(path).read_text() if path is not None else None
    return _parse_mapping(builtin, overlay)


@lru_cache(maxsize=8)
def _parse_mapping(builtin: str, overlay: str | None) -> dict[str, StacCollection]:
    entries: dict[str, Any] = json.loads(builtin)
    if overlay is not None:
        layer = json.loads(overlay)
        if not isinstance(layer, dict):
            raise ValueError("the STAC mapping file must hold one object of data types")
        for data_type, entry in layer.items():
            if entry is None:
                entries.pop(data_type, None)
            elif not isinstance(entry, dict):
                raise ValueError(f"STAC mapping entry {data_type} must be an object or null")
            else:
                entries[data_type] = {**entries.get(data_type, {}), **entry}
    collections = {}
    for data_type, entry in entries.items():
        try:
            collections[data_type] = _parse_entry(data_type, entry)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ValueError(f"STAC mapping entry {data_type}: {exc!r}") from exc
    return collections


def _parse_entry(data_type: str, entry: dict[str, Any]) -> StacCollection:
    harmonization = entry.get("harmonization")
    stac_collections = entry.get("stacCollections") or [entry.get("stacCollection", data_type)]
    no_data = entry.get("noData", 0)
    mosaicking = tuple(entry.get("mosaicking", MOSAICKING))
    if not set(mosaicking) <= set(MOSAICKING):
        raise ValueError(f"mosaicking must be among {', '.join(MOSAICKING)}")
    return StacCollection(
        data_type=data_type,
        stac_collections=tuple(stac_collections),
        bands={name: _parse_band(band, no_data) for name, band in entry["bands"].items()},
        source=entry.get("source"),
        description=entry.get("description", ""),
        cloud_cover=entry.get("cloudCover"),
        harmonization=Harmonization(
            baseline=harmonization["baseline"],
            since=harmonization["since"],
            offset=float(harmonization["offset"]),
            already_applied=harmonization.get("alreadyApplied"),
        )
        if harmonization
        else None,
        filter=_parse_filter(entry.get("filter") or {}),
        options={
            parameter: _parse_option(parameter, option)
            for parameter, option in (entry.get("options") or {}).items()
        },
        requester_pays=bool(entry.get("requesterPays", False)),
        alternate_href=entry.get("alternateHref"),
        timeless=bool(entry.get("timeless", False)),
        fill=float(entry["fill"]) if entry.get("fill") is not None else None,
        mosaicking=mosaicking,
        upsampling_only=bool(entry.get("upsamplingOnly", False)),
    )


def _parse_band(band: dict[str, Any], no_data: float | None) -> StacBand:
    asset = band["asset"]
    units = band.get("units") or {"DN": 1}
    own = band.get("noData", _MISSING)
    return StacBand(
        assets=dict(asset) if isinstance(asset, dict) else {"*": str(asset)},
        resolution=float(band.get("resolution", 0)),
        units={name: parse_conversion(unit) for name, unit in units.items()},
        no_data=no_data if own is _MISSING else own,
        harmonize=bool(band.get("harmonize", False)),
        resampling=band.get("resampling"),
    )


def _parse_filter(spec: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
    return {name: tuple(values) for name, values in spec.items()}


def _parse_option(parameter: str, spec: dict[str, Any]) -> Option:
    if parameter.split(".")[0] not in ("dataFilter", "processing") or "." not in parameter:
        raise ValueError(f"option {parameter} must be dataFilter.<name> or processing.<name>")
    served = {
        str(value): OptionChoice(
            filter=_parse_filter((choice or {}).get("filter") or {}),
            collections=tuple((choice or {}).get("collections") or ()),
        )
        for value, choice in (spec.get("served") or {}).items()
    }
    default = spec.get("default")
    return Option(parameter, served, option_value(default) if default is not None else None)


# -- the request's options -----------------------------------------------------------------------


def option_value(value: Any) -> str:
    """An option's value as the mapping names it: booleans `true`/`false`, objects by their
    `type` (speckleFilter), anything else as text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return str(value.get("type"))
    return str(value)


def requested_options(
    data_filter: Mapping[str, Any], processing: Mapping[str, Any]
) -> dict[str, Any]:
    """The type-specific options an `input.data` entry sets, as `dataFilter.tiers` etc."""
    options = {f"dataFilter.{k}": v for k, v in data_filter.items() if k not in _COMMON_FILTER}
    options.update(
        {f"processing.{k}": v for k, v in processing.items() if k not in _COMMON_PROCESSING}
    )
    return options


def check_source(
    collection: StacCollection, data_filter: Mapping[str, Any], processing: Mapping[str, Any]
) -> list[tuple[str, str]]:
    """(parameter, violation) for what an `input.data` entry asks of this data type that it has
    not or this deployment does not serve; parameters as `dataFilter->tiers`."""
    name = collection.data_type
    found = []
    served_note = f" ({collection.description})" if collection.description else ""
    cloud = data_filter.get("maxCloudCoverage")
    if collection.cloud_cover is None and cloud is not None and cloud < 100:
        found.append(("dataFilter->maxCloudCoverage", f"{name} has no cloud cover to filter by"))
    if collection.cloud_cover is None and data_filter.get("mosaickingOrder") == "leastCC":
        found.append(
            (
                "dataFilter->mosaickingOrder",
                f"leastCC needs cloud cover, which {name} lacks; use mostRecent or leastRecent",
            )
        )
    if collection.harmonization is None and processing.get("harmonizeValues") is not None:
        found.append(("processing->harmonizeValues", "applies to Sentinel-2 data only"))
    options = requested_options(data_filter, processing)
    for parameter, value in options.items():
        option = collection.options.get(parameter)
        where = parameter.replace(".", "->")
        if option is None:
            own = ", ".join(sorted(collection.options)) or "none"
            found.append((where, f"is not an option of {name} (its options: {own})"))
        elif not option.served:
            found.append(
                (
                    where,
                    f"cannot be chosen for {name} on this deployment (omit it): it serves "
                    f"{collection.description or 'the data as its catalogue holds it'}",
                )
            )
        elif option_value(value) not in option.served:
            found.append(
                (
                    where,
                    f"{option_value(value)} is not served for {name} on this deployment; served: "
                    f"{', '.join(option.served)}{served_note}",
                )
            )
    for parameter, option in collection.options.items():
        if parameter in options or option.default is None or option.default in option.served:
            continue
        found.append(
            (
                parameter.replace(".", "->"),
                f"defaults to {option.default}, which is not served for {name} on this "
                f"deployment{served_note}; set it to one of: {', '.join(option.served)}",
            )
        )
    return found


def search_terms(
    collection: StacCollection, options: Mapping[str, Any]
) -> tuple[tuple[str, ...], dict[str, tuple[Any, ...]]]:
    """The STAC collections to search and the item property filter, for a request's options
    (already checked by `check_source`)."""
    collections = collection.stac_collections
    accepted = dict(collection.filter)
    for parameter, option in collection.options.items():
        value = option_value(options[parameter]) if parameter in options else option.default
        choice = option.served.get(value) if value is not None else None
        if choice is None:  # no constraint (or a value `check_source` refuses)
            continue
        if choice.collections:
            collections = choice.collections
        accepted.update(choice.filter)
    return collections, accepted


# -- what is served ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServedType:
    """One data type a deployment serves from STAC: for listings (Catalog API, docs)."""

    data_type: str
    source: str  # the STAC API URL or stac-geoparquet file searched
    stac_collections: tuple[str, ...]
    bands: tuple[str, ...]
    description: str


def served_types(mapping: str | Path | None, default_source: str) -> list[ServedType]:
    """What each data type the deployment serves from STAC maps to (`EOBATCH_STAC_MAPPING`
    and `EOBATCH_STAC_SOURCE`)."""
    return [
        ServedType(
            data_type=name,
            source=entry.source or default_source,
            stac_collections=_all_collections(entry),
            bands=(*entry.bands, "dataMask"),
            description=entry.description,
        )
        for name, entry in sorted(load_mapping(mapping).items())
    ]


def _all_collections(entry: StacCollection) -> tuple[str, ...]:
    names = list(entry.stac_collections)
    for option in entry.options.values():
        for choice in option.served.values():
            names.extend(choice.collections)
    return tuple(dict.fromkeys(names))


# -- items as scenes -----------------------------------------------------------------------------


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
    bands: dict[str, BandSource] = {}
    options: dict[str, str] = {}
    for name, band in collection.bands.items():
        key = band.asset(item.collection)
        href = item.assets.get(key) if key is not None else None
        if href is None:
            continue
        path, options = locate(href)
        if collection.requester_pays and href.startswith("s3://"):
            options = {**options, "AWS_REQUEST_PAYER": "requester"}
        bands[name] = BandSource(
            path,
            1,
            band.no_data,
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
        properties={
            p: item.properties[p] for p in collection.scene_properties if p in item.properties
        },
    )


def unit_conversion(collection: StacCollection, band: str, units: str | None) -> Conversion:
    """The conversion of `band` into `units` (its default units when None)."""
    entry = collection.bands[band]
    return entry.units.get(units or entry.default_units, IDENTITY)


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


# -- items pinned in the store -------------------------------------------------------------------


def item_record(item: StacItem, collection: StacCollection) -> dict[str, Any]:
    """What the store keeps of an item found at analysis (JSON): what its scene needs, so a
    controller restart reads exactly the same scenes without searching again."""
    keep = {*collection.scene_properties, *(p for p in [collection.cloud_cover] if p)}
    return {
        "id": item.id,
        "collection": item.collection,
        "datetime": item.datetime.isoformat(),
        "geometry": shapely.to_wkb(item.geometry, hex=True),
        "properties": {k: _json_value(v) for k, v in item.properties.items() if k in keep},
        "assets": {k: v for k, v in item.assets.items() if k in collection.asset_keys},
    }


def item_from_record(record: Mapping[str, Any]) -> StacItem:
    return StacItem(
        id=record["id"],
        datetime=datetime.fromisoformat(record["datetime"]),
        geometry=shapely.from_wkb(record["geometry"]),
        properties=dict(record["properties"]),
        assets=dict(record["assets"]),
        collection=record.get("collection"),
    )


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple):
        return list(value)
    return value
