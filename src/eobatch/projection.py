"""One cached pyproj Transformer per pair of CRSs, and pixel sizes in metres.

Creating a Transformer costs tens of milliseconds (PROJ looks the pair up in its database);
transforming a footprint with one costs microseconds. Since pyproj 3.1 a Transformer may be
shared between threads, so every module that reprojects takes it from here.
"""

from __future__ import annotations

import math
from functools import lru_cache

from pyproj import CRS, Transformer

CrsKey = int | str  # an EPSG code, or a CRS as WKT / any string pyproj accepts


@lru_cache(maxsize=256)
def transformer(src: CrsKey, dst: CrsKey) -> Transformer:
    """The transformer from `src` to `dst`, x/y (lon/lat) axis order."""
    return Transformer.from_crs(src, dst, always_xy=True)


_METERS_PER_DEGREE = 111_320.0


@lru_cache(maxsize=64)
def _geographic(epsg: int) -> bool:
    return bool(CRS.from_epsg(epsg).is_geographic)


def pixel_meters(res_x: float, res_y: float, epsg: int, latitude: float) -> float:
    """The coarser of a pixel's two sides in metres: degrees count at `latitude` (the centre
    of the area), projected units are metres (every CRS eobatch reads or writes)."""
    if _geographic(epsg):
        res_x *= _METERS_PER_DEGREE * math.cos(math.radians(latitude))
        res_y *= _METERS_PER_DEGREE
    return max(abs(res_x), abs(res_y))
