"""GeoTIFF and Cloud Optimized GeoTIFF encoding of feature outputs, in memory.

Both kinds are tiled and compressed with the deployment's `CompressionProfile` (default ZSTD
level 1 with a predictor: see docs/outputs.md for the measurements behind it). A COG is written
the way rio-cogeo does it: overviews are built on an in-memory copy, then one GTiff `CreateCopy`
with `COPY_SRC_OVERVIEWS=YES` lays out header, overviews and full-resolution tiles in COG order.
That path (rather than GDAL's COG driver) honours every `cogParameters` field: non-square
blocks and explicit overview factors, which the COG driver does not offer.

`encode_output` adds what a GIS needs to open a batch output right (docs/outputs.md): a no-data
tag for every sample type, band descriptions, and overviews in plain GeoTIFFs too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.io import MemoryFile

from eobatch.script import ScriptOutput

COMPRESSIONS = ("ZSTD", "DEFLATE", "LZW", "NONE")
# cogParameters.resamplingAlgorithm -> rasterio's name. average_magphase averages complex values
# by magnitude and phase; no sample type here is complex, where GDAL treats it as average.
_RESAMPLING = {
    "nearest": Resampling.nearest,
    "average": Resampling.average,
    "gauss": Resampling.gauss,
    "cubic": Resampling.cubic,
    "cubicspline": Resampling.cubic_spline,
    "lanczos": Resampling.lanczos,
    "average_magphase": Resampling.average,
    "mode": Resampling.mode,
}


@dataclass(frozen=True)
class CompressionProfile:
    """How tiles are compressed: codec, its level (None: codec default), GDAL threads."""

    compress: str = "ZSTD"
    level: int | None = 1
    num_threads: int = 2

    def __post_init__(self) -> None:
        if self.compress not in COMPRESSIONS:
            raise ValueError(f"compression {self.compress!r} is not one of {COMPRESSIONS}")

    def creation_options(self, dtype: np.dtype, use_predictor: bool) -> dict[str, object]:
        options: dict[str, object] = {"compress": self.compress}
        if self.compress == "NONE":
            return options
        if self.level is not None and self.compress in ("ZSTD", "DEFLATE"):
            options["zstd_level" if self.compress == "ZSTD" else "zlevel"] = self.level
        # Predictor 2 (horizontal differencing) for integers, 3 (floating point) for floats.
        options["predictor"] = (3 if dtype.kind == "f" else 2) if use_predictor else 1
        return options

    def overview_options(self) -> dict[str, str]:
        """GDAL configuration options giving internal overviews this profile's level."""
        if self.level is None or self.compress not in ("ZSTD", "DEFLATE"):
            return {}
        name = "ZSTD_LEVEL_OVERVIEW" if self.compress == "ZSTD" else "ZLEVEL_OVERVIEW"
        return {name: str(self.level)}


DEFAULT_PROFILE = CompressionProfile()


@dataclass(frozen=True)
class CogOptions:
    """`output.cogParameters` with the API's defaults filled in (batch-v2-api.md §4.4)."""

    overview_levels: tuple[int, ...] | None = None  # None: factors 2, 4, ... down to min size
    overview_min_size: int | None = None  # None: min(blockxsize, blockysize)
    resampling: str = "average"
    blockxsize: int = 256
    blockysize: int = 256
    use_predictor: bool = True

    def __post_init__(self) -> None:
        if self.resampling not in _RESAMPLING:
            raise ValueError(f"unknown resampling algorithm {self.resampling!r}")
        if self.blockxsize % 16 or self.blockysize % 16:
            raise ValueError("COG block sizes must be multiples of 16")

    def levels_for(self, width: int, height: int) -> list[int]:
        """Overview factors for a `width` x `height` raster.

        Explicit levels are used as given; otherwise factors double, as GDAL's COG driver does,
        until the overview fits within `overview_min_size` pixels.
        """
        if self.overview_levels is not None:
            return sorted(set(self.overview_levels))
        min_size = self.overview_min_size or min(self.blockxsize, self.blockysize)
        levels, factor = [], 2
        while max(width, height) * 2 / factor > min_size:
            levels.append(factor)
            factor *= 2
        return levels


# Overviews of plain GeoTIFFs are made down to this size, so that a mosaic of many features
# (the task's VRT) still has a coarse level to draw from when zoomed out.
PLAIN_OVERVIEW_MIN_SIZE = 256


def plain_block_size(width: int, height: int) -> int:
    """Block size of a plain GeoTIFF: 512, or 256 for small outputs (mostly padding in 512)."""
    return 512 if min(height, width) >= 512 else 256


def band_names(output_id: str, bands: int) -> list[str]:
    """Names of an output's bands: `<id>` for one band, else `<id>`, `<id>2`, `<id>3`, ...

    The same names BYOC ingestion gives the bands of a task's collection.
    """
    return [output_id if index == 1 else f"{output_id}{index}" for index in range(1, bands + 1)]


def output_nodata(output: ScriptOutput) -> float:
    """The no-data value of an output: `nodataValue` when the script sets one, else the sample
    type's (NaN for FLOAT32, 0 for the integer types, as Sentinel Hub fills no-data pixels)."""
    if output.nodata_value is not None:
        return output.nodata_value
    return float("nan") if output.sample_type == "FLOAT32" else 0.0


def encode_output(
    data: np.ndarray,
    output: ScriptOutput,
    epsg: int,
    transform: Affine,
    profile: CompressionProfile = DEFAULT_PROFILE,
    cog: CogOptions | None = None,
) -> bytes:
    """One batch output of one feature as a GeoTIFF (or COG) that opens right in any GIS.

    No-data tag from `output_nodata`, band descriptions from `band_names`; plain GeoTIFFs get
    overviews as COGs do: `average` for FLOAT32, `nearest` for integers (classes, masks and
    digital numbers must not be blended into values that do not exist).
    """
    return encode_geotiff(
        data,
        epsg,
        transform,
        output_nodata(output),
        profile,
        cog,
        # the raster's own count: `updateOutput` may have set it, feature by feature
        descriptions=band_names(output.id, data.shape[0]),
        overviews=None if cog is not None else overview_resampling(output),
    )


def overview_resampling(output: ScriptOutput) -> str:
    """How the overviews of a plain GeoTIFF output are resampled (see `encode_output`)."""
    return "average" if output.sample_type == "FLOAT32" else "nearest"


def plain_overview_levels(width: int, height: int) -> list[int]:
    """Overview factors of a plain GeoTIFF output of `width` x `height` pixels."""
    return CogOptions(overview_min_size=PLAIN_OVERVIEW_MIN_SIZE).levels_for(width, height)


def output_overview_levels(width: int, height: int, cog: CogOptions | None) -> list[int]:
    """Overview factors of an output of `width` x `height` pixels: a COG's, or a plain one's."""
    if cog is not None:
        return cog.levels_for(width, height)
    return plain_overview_levels(width, height)


def encode_geotiff(
    data: np.ndarray,
    epsg: int,
    transform: Affine,
    nodata: float | None,
    profile: CompressionProfile = DEFAULT_PROFILE,
    cog: CogOptions | None = None,
    *,
    descriptions: Sequence[str] | None = None,
    overviews: str | None = None,
) -> bytes:
    """A tiled GeoTIFF of `data` (bands, height, width), or a COG when `cog` is given.

    `transform` maps pixel (col, row) to coordinates in EPSG:`epsg`; `nodata` is written as the
    no-data value of every band when given, `descriptions` as the bands' descriptions. A plain
    GeoTIFF gets internal overviews resampled with `overviews` (a `cogParameters`
    resamplingAlgorithm) down to `PLAIN_OVERVIEW_MIN_SIZE` pixels; None: none.
    """
    data = _checked(data, nodata)
    count, height, width = data.shape
    if descriptions is not None and len(descriptions) != count:
        raise ValueError(f"{len(descriptions)} band descriptions for {count} bands")
    base = {
        "count": count,
        "height": height,
        "width": width,
        "dtype": data.dtype.name,
        "crs": CRS.from_epsg(epsg),
        "transform": transform,
        "nodata": nodata,
    }
    threads = str(max(1, profile.num_threads))
    if cog is None:
        block = plain_block_size(width, height)
        options = {
            "driver": "GTiff",
            "tiled": True,
            "blockxsize": block,
            "blockysize": block,
            "bigtiff": "IF_SAFER",
            "num_threads": threads,
            **profile.creation_options(data.dtype, use_predictor=True),
        }
        # Overviews in blocks as large as the main ones (fewer reads when zoomed out), at the
        # profile's level (GDAL would use its default level for them) and with its threads.
        env = rasterio.Env(
            GDAL_TIFF_OVR_BLOCKSIZE=str(block),
            GDAL_NUM_THREADS=threads,
            **profile.overview_options(),
        )
        with env, MemoryFile() as memory:
            with memory.open(**base, **options) as dataset:
                dataset.write(data)
                _describe(dataset, descriptions)
                if overviews is not None:
                    levels = plain_overview_levels(width, height)
                    if levels:
                        dataset.build_overviews(levels, _RESAMPLING[overviews])
            return memory.read()

    levels = cog.levels_for(width, height)
    env = rasterio.Env(GDAL_NUM_THREADS=threads, GDAL_TIFF_OVR_BLOCKSIZE=str(cog.blockxsize))
    with env, MemoryFile() as staging, MemoryFile() as result:
        # The staging copy is uncompressed and tiled like the output, so the final copy
        # reads it block by block without decoding.
        with staging.open(
            driver="GTiff", tiled=True, blockxsize=cog.blockxsize, blockysize=cog.blockysize, **base
        ) as dataset:
            dataset.write(data)
            _describe(dataset, descriptions)
            if levels:
                dataset.build_overviews(levels, _RESAMPLING[cog.resampling])
        with staging.open() as source:
            rasterio.shutil.copy(
                source,
                result.name,
                driver="GTiff",
                tiled=True,
                blockxsize=cog.blockxsize,
                blockysize=cog.blockysize,
                copy_src_overviews=True,
                bigtiff="IF_SAFER",
                num_threads=threads,
                **profile.creation_options(data.dtype, cog.use_predictor),
            )
        return result.read()


def _describe(dataset: rasterio.io.DatasetWriter, descriptions: Sequence[str] | None) -> None:
    for index, text in enumerate(descriptions or (), start=1):
        dataset.set_band_description(index, text)


def _checked(data: np.ndarray, nodata: float | None) -> np.ndarray:
    if data.ndim == 2:
        data = data[np.newaxis]
    if data.ndim != 3:
        raise ValueError(f"expected an array (bands, height, width), got shape {data.shape}")
    if data.dtype == np.bool_:
        data = data.astype(np.uint8)
    kind = data.dtype.kind
    if kind not in "uif":
        raise ValueError(f"data type {data.dtype} cannot be written to a GeoTIFF")
    if nodata is not None and kind in "ui":
        info = np.iinfo(data.dtype)
        if np.isnan(nodata) or not (info.min <= nodata <= info.max) or nodata != int(nodata):
            raise ValueError(f"no-data value {nodata} is not representable as {data.dtype}")
    return data
