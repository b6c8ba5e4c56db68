"""Zarr output (batch-v2-api.md §4.5): one group per task, one array per output, coordinates.

The group is laid out once, at analysis (`group_objects`): metadata and the coordinate arrays
`x`, `y` and `time`. Every output array has dimensions (time, y, x) over the union of the
task's features; features are tiles of a single-CRS grid and chunks divide the tile size, so
each feature owns whole chunks and workers write them concurrently without ever sharing one
(`feature_chunks`).

Both are encoded by zarr-python into an in-memory store and uploaded object by object through
`Location.put`, so the same code writes to local folders, S3 and GCS.

Georeferencing follows the CF conventions as rioxarray writes them: a scalar `spatial_ref`
variable holds the CRS (`crs_wkt`, the CF grid mapping parameters, GDAL's `GeoTransform`) and
every output array names it in `grid_mapping`. Output arrays also carry GDAL's own `_CRS`
attribute, which GDAL before 3.9 (QGIS on older systems) needs to read the CRS.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import numcodecs
import numpy as np
import zarr
import zarr.codecs
from pyproj import CRS
from zarr.storage import MemoryStore

from eobatch.errors import InvalidRequest, Violation

DTYPES = ("|u1", "|i1", "<u2", ">u2", "<i2", ">i2", "<f4", ">f4", "<f8", ">f8")
DEFAULT_COMPRESSOR = {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1, "blocksize": 0}
ZARR_FORMATS = (2, 3)  # 2 is what the API defines; 3 is this server's opt-in extension
DIMENSIONS = ("time", "y", "x")
GRID_MAPPING = "spatial_ref"  # the CF grid mapping variable, named as rioxarray names it
# sampleType -> dtypes that hold every value of it
_COMPATIBLE = {
    "AUTO": ("|u1", "<u2", ">u2", "<i2", ">i2", "<f4", ">f4", "<f8", ">f8"),
    "UINT8": ("|u1", "<u2", ">u2", "<i2", ">i2", "<f4", ">f4", "<f8", ">f8"),
    "INT8": ("|i1", "<i2", ">i2", "<f4", ">f4", "<f8", ">f8"),
    "UINT16": ("<u2", ">u2", "<f4", ">f4", "<f8", ">f8"),
    "INT16": ("<i2", ">i2", "<f4", ">f4", "<f8", ">f8"),
    "FLOAT32": ("<f4", ">f4", "<f8", ">f8"),
}
_REQUIRED = ("dtype", "order", "chunks", "fill_value")
_SHUFFLE: dict[int, Literal["noshuffle", "shuffle", "bitshuffle"]] = {
    0: "noshuffle",
    1: "shuffle",
    2: "bitshuffle",
    -1: "shuffle",
}


@dataclass(frozen=True)
class ZarrArraySpec:
    """One output array: `arrayParameters` merged with its `arrayOverrides` entry."""

    name: str
    dtype: str
    chunks: tuple[int, int, int]
    fill_value: float | int
    compressor: dict[str, Any] | None
    attributes: dict[str, Any] = field(default_factory=dict)

    def compatible_with(self, sample_type: str) -> bool:
        return self.dtype in _COMPATIBLE.get(sample_type, ())


def _format(layout: ZarrLayout) -> Literal[2, 3]:
    return 3 if layout.zarr_format == 3 else 2


@dataclass(frozen=True)
class ZarrLayout:
    """The pixel grid of the group: bounds in EPSG `epsg`, square pixels of `resolution`."""

    zarr_format: int  # one of ZARR_FORMATS (validation.py refuses others)
    epsg: int
    bounds: tuple[float, float, float, float]
    resolution: float
    origin: str  # topLeft: row 0 at the top (y decreasing); bottomLeft: row 0 at the bottom
    time: datetime
    arrays: tuple[ZarrArraySpec, ...]
    attributes: dict[str, Any] = field(default_factory=dict)  # group customAttributes

    @property
    def width(self) -> int:
        return round((self.bounds[2] - self.bounds[0]) / self.resolution)

    @property
    def height(self) -> int:
        return round((self.bounds[3] - self.bounds[1]) / self.resolution)

    def array(self, name: str) -> ZarrArraySpec:
        return next(a for a in self.arrays if a.name == name)

    def offset(self, bounds: tuple[float, float, float, float]) -> tuple[int, int]:
        """(row, col) of the first pixel of a feature with `bounds` in the group's arrays."""
        col = round((bounds[0] - self.bounds[0]) / self.resolution)
        if self.origin == "bottomLeft":
            row = round((bounds[1] - self.bounds[1]) / self.resolution)
        else:
            row = round((self.bounds[3] - bounds[3]) / self.resolution)
        return row, col


# -- request parsing ------------------------------------------------------------------------------


def parse_arrays(
    parameters: dict[str, Any] | None,
    overrides: dict[str, dict[str, Any]] | None,
    output_ids: list[str],
    tile_px: int | None,
) -> dict[str, ZarrArraySpec]:
    """Array specs per output id; raises `InvalidRequest` listing every problem.

    `tile_px` is the tile size in pixels that chunks must divide (None: not known).
    """
    found: list[Violation] = []
    parameters = parameters or {}
    overrides = overrides or {}
    for name in sorted(set(overrides) - set(output_ids)):
        found.append(
            Violation(
                f"output->arrayOverrides->{name}",
                f"'{name}' is not an output of processRequest.output.responses",
            )
        )
    specs = {}
    for output_id in output_ids:
        merged = {**parameters, **(overrides.get(output_id) or {})}
        where = (
            f"output->arrayOverrides->{output_id}"
            if output_id in overrides
            else "output->arrayParameters"
        )
        missing = [k for k in _REQUIRED if k not in merged]
        if missing:
            found.append(
                Violation(
                    where,
                    f"output '{output_id}' has no {', '.join(missing)}; give "
                    "them in arrayParameters or arrayOverrides",
                )
            )
            continue
        spec = _spec(output_id, merged, where, tile_px, found)
        if spec is not None:
            specs[output_id] = spec
    if found:
        raise InvalidRequest(f"Invalid zarr array parameters: {found[0].violation}", found)
    return specs


def _spec(
    name: str, p: dict[str, Any], where: str, tile_px: int | None, found: list[Violation]
) -> ZarrArraySpec | None:
    before = len(found)
    dtype = p["dtype"]
    if dtype not in DTYPES:
        found.append(Violation(f"{where}->dtype", f"{dtype!r} is not one of {', '.join(DTYPES)}"))
    if p["order"] != "C":
        found.append(Violation(f"{where}->order", 'only "C" is supported'))
    chunks = p["chunks"]
    if (
        not isinstance(chunks, list)
        or len(chunks) != 3
        or not all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in chunks)
    ):
        found.append(Violation(f"{where}->chunks", "must be three positive integers [1, y, x]"))
    elif chunks[0] != 1:
        found.append(Violation(f"{where}->chunks", "the first (time) chunk size must be 1"))
    elif tile_px is not None and (tile_px % chunks[1] or tile_px % chunks[2]):
        found.append(
            Violation(
                f"{where}->chunks",
                f"{chunks[1:]} must divide the tile size of {tile_px} pixels (e.g. "
                + ", ".join(str(d) for d in _divisors(tile_px)[:6])
                + ")",
            )
        )
    fill = p["fill_value"]
    if dtype in DTYPES and not _representable(fill, dtype):
        found.append(Violation(f"{where}->fill_value", f"{fill!r} is not a value of dtype {dtype}"))
    compressor = p.get("compressor", DEFAULT_COMPRESSOR)
    if compressor is not None:
        try:
            numcodecs.get_codec(dict(compressor))
        except Exception:
            found.append(
                Violation(
                    f"{where}->compressor", f"{compressor!r} is not a numcodecs codec configuration"
                )
            )
    attributes = p.get("customAttributes") or {}
    if not isinstance(attributes, dict):
        found.append(Violation(f"{where}->customAttributes", "must be an object"))
    if len(found) > before:
        return None
    value = float("nan") if isinstance(fill, str) else fill
    return ZarrArraySpec(name, dtype, tuple(chunks), value, compressor, attributes)  # type: ignore[arg-type]


def _representable(value: Any, dtype: str) -> bool:
    kind = np.dtype(dtype).kind
    if isinstance(value, str):
        return value == "NaN" and kind == "f"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if kind == "f":
        return math.isfinite(value) and abs(value) <= np.finfo(np.dtype(dtype)).max
    info = np.iinfo(np.dtype(dtype))
    return float(value).is_integer() and info.min <= value <= info.max


def _divisors(n: int) -> list[int]:
    return sorted((d for d in range(1, n + 1) if n % d == 0), reverse=True)


# -- encoding --------------------------------------------------------------------------------------


def group_objects(layout: ZarrLayout, request_id: str) -> dict[str, bytes]:
    """Every object of the group's skeleton: metadata and coordinate arrays, key -> bytes."""
    store, objects = _memory()
    group = zarr.open_group(store, mode="w", zarr_format=_format(layout))
    minx, miny, maxx, maxy = layout.bounds
    group.attrs.update(
        {
            "requestId": request_id,
            "crs": f"EPSG:{layout.epsg}",
            "extent": [minx, miny, maxx, maxy],
            "resolution": layout.resolution,
            "origin": layout.origin,
            "date_created": datetime.now(UTC).isoformat(),
            "date_modified": datetime.now(UTC).isoformat(),
            **layout.attributes,
        }
    )
    res = layout.resolution
    x = minx + res * (np.arange(layout.width) + 0.5)
    y = maxy - res * (np.arange(layout.height) + 0.5)
    if layout.origin == "bottomLeft":
        y = y[::-1]
    epoch = int(layout.time.astimezone(UTC).timestamp())
    crs = CRS.from_epsg(layout.epsg)
    coordinates = {
        "x": (x, _axis_attributes(crs, "x")),
        "y": (y, _axis_attributes(crs, "y")),
        "time": (
            np.array([epoch], dtype="<i8"),
            {
                "units": "seconds since 1970-01-01T00:00:00",
                "calendar": "proleptic_gregorian",
                "axis": "T",
            },
        ),
    }
    for name, (values, attrs) in coordinates.items():
        array = _create(
            group,
            layout.zarr_format,
            name,
            values.shape,
            values.shape,
            values.dtype.str,
            None,
            None,
            (name,),
        )
        array.attrs.update(attrs)
        array[...] = values
    grid_mapping = _create(group, layout.zarr_format, GRID_MAPPING, (), (), "<i4", None, None, ())
    grid_mapping.attrs.update(grid_mapping_attributes(layout))
    grid_mapping[...] = 0
    gdal_crs = {"wkt": crs.to_wkt(), "url": f"http://www.opengis.net/def/crs/EPSG/0/{layout.epsg}"}
    for spec in layout.arrays:
        array = _output_array(group, layout, spec)
        array.attrs.update(
            {
                "crs": f"EPSG:{layout.epsg}",
                "grid_mapping": GRID_MAPPING,
                "coordinates": GRID_MAPPING,  # so xarray opens it as a coordinate, not data
                "_CRS": gdal_crs,
                **spec.attributes,
            }
        )
    with warnings.catch_warnings():
        # zarr-python warns that consolidated metadata is not in the format 3 spec; xarray
        # and zarr-python read it, and other readers fall back to the per-array metadata.
        warnings.simplefilter("ignore", category=UserWarning)
        zarr.consolidate_metadata(store)
    return _objects(objects)


def grid_mapping_attributes(layout: ZarrLayout) -> dict[str, Any]:
    """The CF grid mapping of the group: CRS parameters, WKT and GDAL's geotransform.

    The geotransform is the group's top-left corner and pixel size, row 0 at the top; with a
    bottomLeft origin rows are stored bottom-up and the `y` coordinate says so to readers.
    """
    crs = CRS.from_epsg(layout.epsg)
    minx, miny, _, maxy = layout.bounds
    res = layout.resolution
    if layout.origin == "bottomLeft":
        transform = (minx, res, 0.0, miny, 0.0, res)
    else:
        transform = (minx, res, 0.0, maxy, 0.0, -res)
    wkt = crs.to_wkt()
    return {
        **crs.to_cf(),
        "crs_wkt": wkt,
        "spatial_ref": wkt,  # the name GDAL and older rioxarray versions read
        "GeoTransform": " ".join(repr(float(v)) for v in transform),
    }


def _axis_attributes(crs: CRS, axis: str) -> dict[str, Any]:
    if crs.is_geographic:
        name = "longitude" if axis == "x" else "latitude"
        units = "degrees_east" if axis == "x" else "degrees_north"
        return {"standard_name": name, "long_name": name, "units": units, "axis": axis.upper()}
    return {
        "standard_name": f"projection_{axis}_coordinate",
        "long_name": f"{axis} coordinate of projection",
        "units": "metre",
        "axis": axis.upper(),
    }


def feature_chunks(
    layout: ZarrLayout, name: str, data: np.ndarray, row: int, col: int
) -> dict[str, bytes]:
    """The chunk objects of array `name` holding `data` (height, width) at (`row`, `col`).

    `data` is north-up; it is flipped for a bottomLeft origin. Chunks that hold only the fill
    value are left out: readers see the fill value there anyway.
    """
    spec = layout.array(name)
    if data.ndim == 3:
        data = data[0]
    if layout.origin == "bottomLeft":
        data = data[::-1]
    store, objects = _memory()
    group = zarr.open_group(store, mode="w", zarr_format=_format(layout))
    array = _output_array(group, layout, spec)
    height, width = data.shape
    array[0, row : row + height, col : col + width] = data.astype(np.dtype(spec.dtype))
    prefix = f"{name}/"
    return {
        k: v
        for k, v in _objects(objects).items()
        if k.startswith(prefix) and not k.rsplit("/", 1)[-1].startswith((".z", "zarr.json"))
    }


def _output_array(group: zarr.Group, layout: ZarrLayout, spec: ZarrArraySpec) -> zarr.Array:
    """The (1, height, width) array of one output, as the group and each feature create it."""
    return _create(
        group,
        layout.zarr_format,
        spec.name,
        (1, layout.height, layout.width),
        spec.chunks,
        spec.dtype,
        spec.fill_value,
        spec.compressor,
        DIMENSIONS,
    )


def _create(
    group: zarr.Group,
    zarr_format: int,
    name: str,
    shape: tuple[int, ...],
    chunks: tuple[int, ...],
    dtype: str,
    fill_value: Any,
    compressor: dict[str, Any] | None,
    dimensions: tuple[str, ...],
) -> zarr.Array:
    codec = None if compressor is None else _codec(compressor, zarr_format)
    kwargs: dict[str, Any] = {"compressors": codec}
    if zarr_format == 3:
        kwargs["dimension_names"] = dimensions
    else:
        kwargs["order"] = "C"  # zarr 3 arrays are always C-ordered on disk
    array = group.create_array(
        name, shape=shape, chunks=chunks, dtype=dtype, fill_value=fill_value, **kwargs
    )
    if zarr_format == 2:
        array.attrs["_ARRAY_DIMENSIONS"] = list(dimensions)  # what xarray reads from zarr 2
    return array


def _codec(config: dict[str, Any], zarr_format: int) -> Any:
    codec = numcodecs.get_codec(dict(config))
    if zarr_format == 2:
        return codec
    # zarr 3 names its own codecs; translate the numcodecs configurations it has equivalents of.
    if config["id"] == "blosc":
        return zarr.codecs.BloscCodec(
            cname=config.get("cname", "lz4"),
            clevel=config.get("clevel", 5),
            shuffle=_SHUFFLE[config.get("shuffle", 1)],
            blocksize=config.get("blocksize", 0),
        )
    if config["id"] == "zstd":
        return zarr.codecs.ZstdCodec(level=config.get("level", 0))
    if config["id"] in ("gzip", "zlib"):
        return zarr.codecs.GzipCodec(level=config.get("level", 5))
    raise ValueError(f"compressor {config['id']!r} has no zarr format 3 equivalent here")


def _memory() -> tuple[MemoryStore, dict[str, Any]]:
    objects: dict[str, Any] = {}
    return MemoryStore(objects), objects


def _objects(objects: dict[str, Any]) -> dict[str, bytes]:
    return {key: value.to_bytes() for key, value in objects.items()}
