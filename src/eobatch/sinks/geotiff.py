"""GeoTIFF and Cloud Optimized GeoTIFF encoding of feature outputs, in memory.

Both kinds are tiled and compressed with the deployment's `CompressionProfile` (default ZSTD
level 1 with a predictor: see docs/outputs.md for the measurements behind it). A COG is written
the way rio-cogeo does it: overviews are built on an in-memory copy, then one GTiff `CreateCopy`
with `COPY_SRC_OVERVIEWS=YES` lays out header, overviews and full-resolution tiles in COG order.
That path (rather than GDAL's COG driver) honours every `cogParameters` field: non-square
blocks and explicit overview factors, which the COG driver does not offer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.io import MemoryFile

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


def encode_geotiff(
    data: np.ndarray,
    epsg: int,
    transform: Affine,
    nodata: float | None,
    profile: CompressionProfile = DEFAULT_PROFILE,
    cog: CogOptions | None = None,
) -> bytes:
    """A tiled GeoTIFF of `data` (bands, height, width), or a COG when `cog` is given.

    `transform` maps pixel (col, row) to coordinates in EPSG:`epsg`; `nodata` is written as the
    no-data value of every band when given.
    """
    data = _checked(data, nodata)
    count, height, width = data.shape
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
        # Small outputs would be mostly padding in 512-pixel blocks.
        block = 512 if min(height, width) >= 512 else 256
        options = {
            "driver": "GTiff",
            "tiled": True,
            "blockxsize": block,
            "blockysize": block,
            "bigtiff": "IF_SAFER",
            "num_threads": threads,
            **profile.creation_options(data.dtype, use_predictor=True),
        }
        with MemoryFile() as memory:
            with memory.open(**base, **options) as dataset:
                dataset.write(data)
            return memory.read()

    levels = cog.levels_for(width, height)
    env = rasterio.Env(GDAL_NUM_THREADS=threads, GDAL_TIFF_OVR_BLOCKSIZE=str(cog.blockxsize))
    with env, MemoryFile() as staging, MemoryFile() as result:
        # The staging copy is uncompressed and tiled like the output, so the final copy
        # reads it block by block without decoding.
        with staging.open(driver="GTiff", tiled=True, blockxsize=cog.blockxsize,
                          blockysize=cog.blockysize, **base) as dataset:  # fmt: skip
            dataset.write(data)
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
