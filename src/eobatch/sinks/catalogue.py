"""A task's results in one place: a STAC collection and a GDAL VRT mosaic per output and CRS.

Written when a task completes, in the folder `<requestId>/` under the delivery root (with the
default layout, the folder that holds the outputs):

    <requestId>/collection.json               the task: extent, every file it wrote, the mosaics
    <requestId>/<tileName>/<tileName>.json    one STAC item per delivered feature (proj:, raster:)
    <requestId>/mosaic-<outputId>-<epsg>.vrt  every delivered feature of one output in one CRS

Every link and every path inside a VRT is relative, so the catalogue reads the same from a local
folder, through `/vsis3/` or after the folder is copied elsewhere. Sentinel Hub writes neither;
openEO answers a batch job's results with a STAC collection of this shape.
"""

from __future__ import annotations

import json
import math
import posixpath
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pystac
import shapely
from pyproj import CRS
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import DataType, RasterBand, RasterExtension

from eobatch.planning import Feature
from eobatch.projection import transformer
from eobatch.script import ScriptOutput, sample_dtype
from eobatch.sinks.geotiff import (
    CogOptions,
    band_names,
    output_nodata,
    output_overview_levels,
    overview_resampling,
    plain_block_size,
)
from eobatch.storage import Location

COLLECTION_FILE = "collection.json"
GEOTIFF = "image/tiff; application=geotiff"
COG = "image/tiff; application=geotiff; profile=cloud-optimized"
VRT = "application/xml"  # GDAL's VRT has no registered media type; it is XML
_UPLOADS = 16  # objects uploaded at once: a task of many features has many small items
_DATA_TYPES = {
    "uint8": DataType.UINT8,
    "int8": DataType.INT8,
    "uint16": DataType.UINT16,
    "int16": DataType.INT16,
    "float32": DataType.FLOAT32,
}
_GDAL_TYPES = {
    "uint8": "Byte",
    "int8": "Int8",
    "uint16": "UInt16",
    "int16": "Int16",
    "float32": "Float32",
}


@dataclass(frozen=True)
class DeliveredFeature:
    """A feature whose outputs were delivered: its grid and its files (asset name -> key
    relative to the delivery root; script output ids, and `userdata` for the JSON)."""

    feature: Feature
    files: dict[str, str]


@dataclass(frozen=True)
class TaskResults:
    """What a completed task delivered, as the catalogue describes it."""

    task_id: str
    description: str | None
    time_range: tuple[datetime | None, datetime | None]  # the data filter's; None: open
    created: datetime
    outputs: tuple[ScriptOutput, ...]  # the GeoTIFF outputs, or the zarr arrays
    features: tuple[DeliveredFeature, ...]
    cog: CogOptions | None = None  # COG outputs (their block size); None: plain GeoTIFFs
    zarr_epsg: int | None = None  # zarr output: the group's CRS (the group is `<requestId>/`)
    bookkeeping: tuple[str, ...] = ()  # keys of the request JSON, manifest, execution db


def write_catalogue(delivery: Location, results: TaskResults) -> None:
    """Upload the task's collection, items and mosaics to `delivery` (the delivery root)."""
    objects = list(catalogue_objects(results).items())
    # One thread per slice rather than a pool task per object: submitting thousands of small
    # uploads to a pool costs more than writing them to a local folder.
    slices = [objects[n::_UPLOADS] for n in range(min(_UPLOADS, len(objects)))]

    def upload(part: list[tuple[str, bytes]]) -> None:
        for key, data in part:
            delivery.put(key, data)

    with ThreadPoolExecutor(len(slices)) as pool:
        list(pool.map(upload, slices))


def catalogue_objects(results: TaskResults) -> dict[str, bytes]:
    """Every object of the catalogue, key (relative to the delivery root) -> bytes."""
    folder = results.task_id
    objects: dict[str, bytes] = {}
    footprints = [_to_wgs84(d.feature.geometry, d.feature.epsg) for d in results.features]
    items: list[pystac.Item] = []
    mosaics = {}
    if results.zarr_epsg is None:  # a zarr group is one asset: no files per feature
        for delivered, footprint in zip(results.features, footprints, strict=True):
            item = _item(results, delivered, footprint, folder)
            items.append(item)
            objects[_item_key(folder, delivered.feature.name)] = _json(
                item.to_dict(transform_hrefs=False), compact=True
            )
        mosaics = _mosaics(results, folder)
    objects |= {key: data for key, (data, _, _) in mosaics.items()}
    collection = _collection(
        results, footprints, items, {k: (o, e) for k, (_, o, e) in mosaics.items()}
    )
    objects[f"{folder}/{COLLECTION_FILE}"] = _json(
        collection.to_dict(include_self_link=False, transform_hrefs=False)
    )
    return objects


# -- STAC ---------------------------------------------------------------------------------------


def _item_key(folder: str, name: str) -> str:
    """Where the item of feature `name` goes: in the folder its outputs have by default."""
    return f"{folder}/{name}/{name}.json"


def _relative(key: str, from_key: str) -> str:
    """`key` as a link from the object `from_key` (both normalised keys relative to the
    delivery root): posixpath.relpath without its file-system calls, thousands of times faster
    than it, which matters at one item per feature."""
    start = [part for part in posixpath.dirname(from_key).split("/") if part]
    parts = key.split("/")
    common = 0
    while common < min(len(start), len(parts)) and start[common] == parts[common]:
        common += 1
    return "/".join([".."] * (len(start) - common) + parts[common:]) or "."


def _item(
    results: TaskResults, delivered: DeliveredFeature, footprint: shapely.Geometry, folder: str
) -> pystac.Item:
    feature = delivered.feature
    start, end = results.time_range
    item = pystac.Item(
        id=feature.name,
        geometry=shapely.geometry.mapping(footprint),
        bbox=list(footprint.bounds),
        datetime=None if start or end else results.created,
        properties={},
        start_datetime=start or end,
        end_datetime=end or start,
        collection=results.task_id,
    )
    projection = ProjectionExtension.ext(item, add_if_missing=True)
    projection.code = f"EPSG:{feature.epsg}"
    projection.bbox = list(feature.bounds)
    projection.shape = [feature.height, feature.width]
    projection.transform = list(feature.transform)[:6]
    own_key = _item_key(folder, feature.name)
    outputs = {o.id: o for o in results.outputs}
    for name, key in delivered.files.items():
        href = _relative(key, own_key)
        if name not in outputs:  # userdata.json
            item.add_asset(
                name, pystac.Asset(href, media_type="application/json", roles=["metadata"])
            )
            continue
        asset = pystac.Asset(
            href, title=name, media_type=COG if results.cog else GEOTIFF, roles=["data"]
        )
        item.add_asset(name, asset)
        RasterExtension.ext(asset, add_if_missing=True).bands = _raster_bands(
            outputs[name], feature.resolution[0]
        )
    collection_key = f"{folder}/{COLLECTION_FILE}"
    for rel in (pystac.RelType.COLLECTION, pystac.RelType.PARENT, pystac.RelType.ROOT):
        item.add_link(pystac.Link(rel, _relative(collection_key, own_key), pystac.MediaType.JSON))
    return item


def _raster_bands(output: ScriptOutput, resolution: float) -> list[RasterBand]:
    nodata = output_nodata(output)
    return [
        RasterBand.create(
            nodata=nodata if not math.isnan(nodata) else "nan",  # type: ignore[arg-type]
            data_type=_DATA_TYPES[sample_dtype(output.sample_type).name],
            spatial_resolution=resolution,
        )
        for _ in band_names(output.id, output.bands)
    ]


def _collection(
    results: TaskResults,
    footprints: list[shapely.Geometry],
    items: list[pystac.Item],
    mosaics: dict[str, tuple[ScriptOutput, int]],
) -> pystac.Collection:
    folder = results.task_id
    # no delivered feature (all "No data"): the whole world, as STAC requires some extent
    bbox = [-180.0, -90.0, 180.0, 90.0]
    if footprints:
        bounds = shapely.bounds(np.array(footprints, dtype=object))
        bbox = [*bounds[:, :2].min(axis=0).tolist(), *bounds[:, 2:].max(axis=0).tolist()]
    start, end = results.time_range
    if not (start or end):
        start = end = results.created
    collection = pystac.Collection(
        id=results.task_id,
        title=f"eobatch task {results.task_id}",
        description=results.description or f"Results of batch task {results.task_id}",
        extent=pystac.Extent(pystac.SpatialExtent([bbox]), pystac.TemporalExtent([[start, end]])),
        license="other",
    )
    own_key = f"{folder}/{COLLECTION_FILE}"
    collection.add_link(
        pystac.Link(pystac.RelType.ROOT, f"./{COLLECTION_FILE}", pystac.MediaType.JSON)
    )
    for item in items:
        href = "./" + _relative(_item_key(folder, item.id), own_key)
        collection.add_link(
            pystac.Link(pystac.RelType.ITEM, href, pystac.MediaType.GEOJSON, title=item.id)
        )
    for key, (output, epsg) in sorted(mosaics.items()):
        collection.add_asset(
            posixpath.basename(key).removesuffix(".vrt"),
            pystac.Asset(
                "./" + _relative(key, own_key),
                media_type=VRT,
                roles=["data", "mosaic"],
                title=f"{output.id}: every delivered feature in EPSG:{epsg}",
            ),
        )
    if results.zarr_epsg is not None:
        asset = pystac.Asset(
            "./", title="Zarr group", media_type="application/vnd+zarr", roles=["data"]
        )
        collection.add_asset("zarr", asset)
        ProjectionExtension.ext(asset, add_if_missing=True).code = f"EPSG:{results.zarr_epsg}"
    for key in results.bookkeeping:
        name = posixpath.basename(key).split("-", 1)[0]
        media = {
            "request": "application/json",
            "featureManifest": "application/geopackage+sqlite3",
            "execution": "application/vnd.sqlite3",
        }.get(name)
        collection.add_asset(
            name, pystac.Asset(_relative(key, own_key), media_type=media, roles=["metadata"])
        )
    return collection


def _to_wgs84(geometry: shapely.Geometry, epsg: int) -> shapely.Geometry:
    if epsg == 4326:
        return geometry
    to_wgs84 = transformer(epsg, 4326)
    # densified, so that the footprint of a projected square is still right in lon/lat
    dense = shapely.segmentize(geometry, max_segment_length=_segment(geometry))
    return shapely.transform(dense, lambda xy: np.column_stack(to_wgs84.transform(*xy.T)))


def _segment(geometry: shapely.Geometry) -> float:
    minx, miny, maxx, maxy = geometry.bounds
    return max(maxx - minx, maxy - miny) / 16 or 1.0


def _json(body: dict[str, Any], compact: bool = False) -> bytes:
    """Indented for people; `compact` for the items, one per feature: the C encoder runs only
    without indentation, several times faster (at 3000 features the difference is seconds)."""
    if compact:
        return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
    return json.dumps(body, indent=2, allow_nan=False).encode()


# -- VRT mosaics --------------------------------------------------------------------------------


def _mosaics(results: TaskResults, folder: str) -> dict[str, tuple[bytes, ScriptOutput, int]]:
    """key -> (VRT XML, output, EPSG) for every output and CRS with delivered features."""
    by_crs: dict[int, list[DeliveredFeature]] = defaultdict(list)
    for delivered in results.features:
        by_crs[delivered.feature.epsg].append(delivered)
    mosaics = {}
    for output in results.outputs:
        for epsg, features in sorted(by_crs.items()):
            with_output = [d for d in features if output.id in d.files]
            if not with_output:
                continue
            key = f"{folder}/mosaic-{output.id}-{epsg}.vrt"
            xml = mosaic_vrt(output, epsg, with_output, results.cog, posixpath.dirname(key))
            mosaics[key] = (xml, output, epsg)
    return mosaics


def mosaic_vrt(
    output: ScriptOutput,
    epsg: int,
    features: Sequence[DeliveredFeature],
    cog: CogOptions | None,
    folder: str,
) -> bytes:
    """A GDAL VRT of `output` over `features` (all in EPSG `epsg`), sources relative to
    `folder`. Its grid is the features' union at the finest feature resolution; where features
    overlap (buffers) a later one is drawn over an earlier one except where it has no data."""
    res = min(min(d.feature.resolution) for d in features)
    minx = min(d.feature.bounds[0] for d in features)
    maxy = max(d.feature.bounds[3] for d in features)
    width = round((max(d.feature.bounds[2] for d in features) - minx) / res)
    height = round((maxy - min(d.feature.bounds[1] for d in features)) / res)
    dtype = sample_dtype(output.sample_type).name
    nodata = _gdal_number(output_nodata(output))
    root = ET.Element("VRTDataset", rasterXSize=str(width), rasterYSize=str(height))
    # Without dataAxisToSRSAxisMapping GDAL takes x as easting, as it does for GeoTIFFs.
    ET.SubElement(root, "SRS").text = CRS.from_epsg(epsg).to_wkt()
    ET.SubElement(root, "GeoTransform").text = ", ".join(
        repr(v) for v in (minx, res, 0.0, maxy, 0.0, -res)
    )
    for band, name in enumerate(band_names(output.id, output.bands), start=1):
        element = ET.SubElement(root, "VRTRasterBand", dataType=_GDAL_TYPES[dtype], band=str(band))
        ET.SubElement(element, "Description").text = name
        ET.SubElement(element, "NoDataValue").text = nodata
        for delivered in features:
            element.append(
                _source(delivered, output.id, band, dtype, nodata, cog, folder, (minx, maxy, res))
            )
    # The factors every source has overviews at: GDAL then reads those when zoomed out
    # (sources without overviews would each be read at full resolution).
    levels = set.intersection(
        *(set(output_overview_levels(d.feature.width, d.feature.height, cog)) for d in features)
    )
    if levels:
        resampling = cog.resampling if cog else overview_resampling(output)
        ET.SubElement(root, "OverviewList", resampling=resampling).text = " ".join(
            map(str, sorted(levels))
        )
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8")


def _source(
    delivered: DeliveredFeature,
    output_id: str,
    band: int,
    dtype: str,
    nodata: str,
    cog: CogOptions | None,
    folder: str,
    grid: tuple[float, float, float],
) -> ET.Element:
    feature = delivered.feature
    minx, maxy, res = grid
    block_x, block_y = (
        (cog.blockxsize, cog.blockysize)
        if cog
        else (plain_block_size(feature.width, feature.height),) * 2
    )
    source = ET.Element("ComplexSource")
    ET.SubElement(source, "SourceFilename", relativeToVRT="1").text = posixpath.relpath(
        delivered.files[output_id], folder
    )
    ET.SubElement(source, "SourceBand").text = str(band)
    # Declared, so that GDAL opens a source only when a read needs its pixels.
    ET.SubElement(
        source,
        "SourceProperties",
        RasterXSize=str(feature.width),
        RasterYSize=str(feature.height),
        DataType=_GDAL_TYPES[dtype],
        BlockXSize=str(block_x),
        BlockYSize=str(block_y),
    )
    ET.SubElement(
        source, "SrcRect", xOff="0", yOff="0", xSize=str(feature.width), ySize=str(feature.height)
    )
    f_minx, f_miny, f_maxx, f_maxy = feature.bounds
    ET.SubElement(
        source,
        "DstRect",
        xOff=str(round((f_minx - minx) / res)),
        yOff=str(round((maxy - f_maxy) / res)),
        xSize=str(round((f_maxx - f_minx) / res)),
        ySize=str(round((f_maxy - f_miny) / res)),
    )
    ET.SubElement(source, "NODATA").text = nodata
    return source


def _gdal_number(value: float) -> str:
    return "nan" if math.isnan(value) else repr(value)
