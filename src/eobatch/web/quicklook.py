"""Quicklooks of delivered rasters: a small RGBA PNG in Web Mercator, read from the overviews.

The image is warped to EPSG:3857 so that a web map (which draws in Web Mercator) can lay it over
its lon/lat bounds without distortion. Each band is stretched linearly between its 2nd and 98th
percentile of valid pixels; no-data, masked and non-finite pixels are transparent.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile
from rasterio.transform import array_bounds
from rasterio.vrt import WarpedVRT
from rasterio.warp import calculate_default_transform, transform_bounds

WEB_MERCATOR = "EPSG:3857"
STRETCH_PERCENTILES = (2.0, 98.0)
MAX_SIZE = 2048


@dataclass(frozen=True)
class Quicklook:
    png: bytes
    bounds: tuple[float, float, float, float]  # west, south, east, north; degrees (EPSG:4326)
    stretch: tuple[tuple[float, float], ...]  # (low, high) per rendered band, in raster units


def render(path: str, env_options: dict[str, str], size: int = 512) -> Quicklook:
    """Render the raster at `path` (opened within `rasterio.Env(**env_options)`) to a PNG whose
    longer side is at most `size` pixels: bands 1-3 as RGB when there are three or more, else
    band 1 as grey."""
    size = max(1, min(size, MAX_SIZE))
    with rasterio.Env(**env_options):
        with rasterio.open(path) as full:
            indexes = [1, 2, 3] if full.count >= 3 else [1]
            transform, width, height = _target_grid(full, size)
            level = _overview_level(full, width, height)
        overview = {"overview_level": level} if level is not None else {}
        with (
            rasterio.open(path, **overview) as src,
            WarpedVRT(
                src,
                crs=WEB_MERCATOR,
                transform=transform,
                width=width,
                height=height,
                resampling=Resampling.nearest,
                **_outside(src),
            ) as vrt,
        ):
            data = vrt.read(indexes, masked=True)
            # the alpha band (sources without nodata) or where any band has data
            covered = vrt.dataset_mask() > 0
    values = np.ma.getdata(data).astype(np.float64)
    valid = covered & ~np.ma.getmaskarray(data).any(axis=0) & np.isfinite(values).all(axis=0)
    rgba, stretch = _stretch(values, valid)
    west, south, east, north = transform_bounds(
        WEB_MERCATOR, "EPSG:4326", *array_bounds(height, width, transform)
    )
    return Quicklook(_png(rgba), (west, south, east, north), stretch)


def _outside(src: rasterio.DatasetReader) -> dict[str, object]:
    """WarpedVRT options that mark pixels outside the source (and its no-data) as invalid.

    Without a nodata value a float raster's NaN is its no-data (GDAL's warper would otherwise
    write NaN pixels as 0 under an opaque alpha); an integer raster gets an alpha band.
    """
    if src.nodata is not None:
        return {}
    if np.dtype(src.dtypes[0]).kind == "f":
        return {"src_nodata": float("nan"), "nodata": float("nan")}
    return {"add_alpha": True}


def _target_grid(src: rasterio.DatasetReader, size: int) -> tuple[rasterio.Affine, int, int]:
    """The Web Mercator grid covering `src`, scaled so its longer side is `size` pixels at most."""
    transform, width, height = calculate_default_transform(
        src.crs, WEB_MERCATOR, src.width, src.height, *src.bounds
    )
    scale = max(width / size, height / size, 1.0)
    if scale > 1.0:
        width, height = max(1, round(width / scale)), max(1, round(height / scale))
        transform = transform @ rasterio.Affine.scale(scale, scale)
    return transform, width, height


def _overview_level(src: rasterio.DatasetReader, width: int, height: int) -> int | None:
    """The coarsest overview still at least as fine as the target grid (None: full resolution)."""
    needed = min(src.width / width, src.height / height)
    level = None
    for i, factor in enumerate(src.overviews(1)):
        if factor <= needed:
            level = i
    return level


def _stretch(
    values: np.ndarray, valid: np.ndarray
) -> tuple[np.ndarray, tuple[tuple[float, float], ...]]:
    """RGBA bytes from (bands, rows, cols) values: a percentile stretch per band, alpha = valid."""
    bands = []
    stretch = []
    for band in values:
        inside = band[valid]
        if inside.size:
            low, high = (float(v) for v in np.percentile(inside, STRETCH_PERCENTILES))
        else:
            low = high = 0.0
        span = high - low
        # A constant band is drawn mid-grey rather than divided by zero.
        scaled = (band - low) / span if span > 0 else np.full(band.shape, 0.5)
        scaled = np.where(valid, scaled, 0.0)
        bands.append(np.clip(np.rint(scaled * 255), 0, 255).astype(np.uint8))
        stretch.append((low, high))
    if len(bands) == 1:
        bands *= 3
    alpha = np.where(valid, 255, 0).astype(np.uint8)
    return np.stack([*bands, alpha]), tuple(stretch)


def _png(rgba: np.ndarray) -> bytes:
    _, height, width = rgba.shape
    # a PNG has no georeferencing: the bounds travel beside it
    with warnings.catch_warnings(), MemoryFile() as memory:
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with memory.open(driver="PNG", width=width, height=height, count=4, dtype="uint8") as dst:
            dst.write(rgba)
        return memory.read()
