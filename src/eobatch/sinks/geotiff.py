"""GeoTIFF encoding of feature outputs, in memory."""

from __future__ import annotations

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.io import MemoryFile


def encode_geotiff(data: np.ndarray, epsg: int, transform: Affine, nodata: float | None) -> bytes:
    """A tiled, DEFLATE-compressed GeoTIFF of `data` (bands, height, width).

    `transform` maps pixel (col, row) to coordinates in EPSG:`epsg`; `nodata` is written as the
    no-data value of every band when given.
    """
    if data.ndim == 2:
        data = data[np.newaxis]
    if data.ndim != 3:
        raise ValueError(f"expected an array (bands, height, width), got shape {data.shape}")
    if data.dtype == np.bool_:
        data = data.astype(np.uint8)
    count, height, width = data.shape
    kind = data.dtype.kind
    if kind not in "uif":
        raise ValueError(f"data type {data.dtype} cannot be written to a GeoTIFF")
    if nodata is not None and kind in "ui":
        info = np.iinfo(data.dtype)
        if np.isnan(nodata) or not (info.min <= nodata <= info.max) or nodata != int(nodata):
            raise ValueError(f"no-data value {nodata} is not representable as {data.dtype}")
    # Small outputs would be mostly padding in 512-pixel blocks.
    block = 512 if min(height, width) >= 512 else 256
    profile = {
        "driver": "GTiff",
        "count": count,
        "height": height,
        "width": width,
        "dtype": data.dtype.name,
        "crs": CRS.from_epsg(epsg),
        "transform": transform,
        "nodata": nodata,
        "tiled": True,
        "blockxsize": block,
        "blockysize": block,
        "compress": "DEFLATE",
        "predictor": 3 if kind == "f" else 2,
        "bigtiff": "IF_SAFER",
    }
    with MemoryFile() as memory:
        with memory.open(**profile) as dataset:
            dataset.write(data)
        return memory.read()
