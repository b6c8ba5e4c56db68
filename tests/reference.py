"""An independent model of what the service must output for the demo data.

It samples the closed-form demo values at each output pixel centre (nearest neighbour), with plain
pyproj and numpy: no GDAL, no eobatch reader, so it can catch errors in either.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np
from affine import Affine
from pyproj import Transformer

from eobatch.demo_data import DEMO_EPSG, DemoScene


def nearest_mosaic(
    scenes: Sequence[DemoScene],
    bands: Sequence[str],
    epsg: int,
    transform: Affine,
    width: int,
    height: int,
    shift: tuple[float, float] = (0.0, 0.0),
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Band values (float64, NaN where no data) and dataMask, scenes in priority order.

    `shift` moves every sample position by (dx, dy) source pixels, to model a warper that places
    a sample within that distance of the exact position.
    """
    ux, uy = _demo_coordinates(epsg, transform, width, height)
    out = {b: np.full((height, width), np.nan) for b in bands}
    mask = np.zeros((height, width), dtype=bool)
    for scene in scenes:
        minx, _, _, maxy = scene.bounds
        col = np.floor((ux - minx) / 10.0 + shift[0]).astype(np.int64)
        row = np.floor((maxy - uy) / 10.0 + shift[1]).astype(np.int64)
        inside = (col >= 0) & (col < scene.width) & (row >= 0) & (row < scene.height) & ~mask
        r, c = row[inside], col[inside]
        values = {b: scene.values(b, r, c) for b in bands}
        valid = np.logical_and.reduce([v != 0 for v in values.values()])
        idx = tuple(a[valid] for a in np.nonzero(inside))
        for b in bands:
            out[b][idx] = values[b][valid]
        mask[idx] = True
    return out, mask


@lru_cache(maxsize=8)
def _demo_coordinates(
    epsg: int, transform: Affine, width: int, height: int
) -> tuple[np.ndarray, np.ndarray]:
    """Output pixel centres in the demo CRS; cached: `matches_nearest` asks 9 times per grid."""
    rows, cols = np.mgrid[0:height, 0:width]
    x, y = transform @ (cols + 0.5, rows + 0.5)
    ux, uy = Transformer.from_crs(epsg, DEMO_EPSG, always_xy=True).transform(x, y)
    ux.flags.writeable = uy.flags.writeable = False
    return ux, uy


def ndvi(b04: np.ndarray, b08: np.ndarray) -> np.ndarray:
    """The demo evalscript's NDVI, in float32 arithmetic as V8 does it in float64 then stores."""
    b04, b08 = b04.astype(np.float64), b08.astype(np.float64)
    total = b08 + b04
    with np.errstate(invalid="ignore", divide="ignore"):
        result = np.where(total == 0, 0.0, (b08 - b04) / total)
    return result.astype(np.float32)


def matches_nearest(
    actual: np.ndarray, expected: Callable[[tuple[float, float]], np.ndarray], tolerance: float
) -> np.ndarray:
    """Per pixel: does `actual` equal the exact nearest sample, or the sample of a position within
    `tolerance` source pixels of it (the warper's documented error)? NaN equals NaN."""
    ok = np.zeros(actual.shape, dtype=bool)
    for dx in (0.0, -tolerance, tolerance):
        for dy in (0.0, -tolerance, tolerance):
            candidate = expected((dx, dy))
            ok |= (actual == candidate) | (np.isnan(actual) & np.isnan(candidate))
    return ok
