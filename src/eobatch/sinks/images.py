"""Process API response bodies: GeoTIFF, PNG and JPEG images in memory, and the tar of several.

The GeoTIFF is laid out as Sentinel Hub's (catalog-process.md §2.3): strips, DEFLATE without
a predictor, pixel-interleaved, so any TIFF reader (tifffile without imagecodecs, as
sentinelhub-py decodes it) opens it.
"""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import Sequence

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.crs import CRS
from rasterio.io import MemoryFile

EXTENSIONS = {
    "image/tiff": "tif",
    "image/png": "png",
    "image/jpeg": "jpg",
    "application/json": "json",
}
# Output sample types each image format can hold (AUTO is UINT8 by then).
IMAGE_SAMPLE_TYPES = {
    "image/tiff": ("AUTO", "UINT8", "INT8", "UINT16", "INT16", "FLOAT32"),
    "image/png": ("AUTO", "UINT8", "UINT16"),
    "image/jpeg": ("AUTO", "UINT8"),
}
IMAGE_BANDS = {"image/png": (1, 2, 3, 4), "image/jpeg": (1, 3)}
JPEG_QUALITY = 90


def encode_image(
    data: np.ndarray, kind: str, epsg: int, transform: Affine, quality: int | None = None
) -> bytes:
    """`data` (bands, height, width) as an `image/tiff`, `image/png` or `image/jpeg` file; the
    TIFF is georeferenced in EPSG:`epsg` by `transform`."""
    count, height, width = data.shape
    base = {
        "count": count,
        "height": height,
        "width": width,
        "dtype": data.dtype.name,
        "crs": CRS.from_epsg(epsg),
        "transform": transform,
    }
    if kind == "image/tiff":
        with MemoryFile() as memory:
            with memory.open(driver="GTiff", compress="DEFLATE", interleave="pixel", **base) as out:
                out.write(data)
            return memory.read()
    driver = "PNG" if kind == "image/png" else "JPEG"
    options = (
        {"quality": quality if quality is not None else JPEG_QUALITY} if driver == "JPEG" else {}
    )
    # PNG and JPEG cannot be created directly: GDAL copies them from an in-memory raster.
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), MemoryFile() as staging, MemoryFile() as result:
        with staging.open(driver="GTiff", **base) as dataset:
            dataset.write(data)
        with staging.open() as dataset:
            rasterio.shutil.copy(dataset, result.name, driver=driver, **options)
        return result.read()


def tar_archive(members: Sequence[tuple[str, bytes]]) -> bytes:
    """A POSIX ustar archive of (name, content) members, in order, as Sentinel Hub sends it."""
    buffer = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for name, content in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(content), now, 0o644
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()
