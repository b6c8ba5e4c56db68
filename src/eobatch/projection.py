"""One cached pyproj Transformer per pair of CRSs.

Creating a Transformer costs tens of milliseconds (PROJ looks the pair up in its database);
transforming a footprint with one costs microseconds. Since pyproj 3.1 a Transformer may be
shared between threads, so every module that reprojects takes it from here.
"""

from __future__ import annotations

from functools import lru_cache

from pyproj import Transformer

CrsKey = int | str  # an EPSG code, or a CRS as WKT / any string pyproj accepts


@lru_cache(maxsize=256)
def transformer(src: CrsKey, dst: CrsKey) -> Transformer:
    """The transformer from `src` to `dst`, x/y (lon/lat) axis order."""
    return Transformer.from_crs(src, dst, always_xy=True)
