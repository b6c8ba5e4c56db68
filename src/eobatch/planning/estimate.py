"""How many features a tiling-grid task will have, estimated from its AOI without planning.

Cheap enough for task creation: a few geometry operations on the AOI, no grid cells. For a
lattice of square cells of side s, a convex shape of area A and perimeter P meets on average
A/s² + 2P/(πs) + 1 cells (its area grown by the cell, averaged over orientations); planning
counts exactly at analysis.
"""

from __future__ import annotations

import math

import numpy as np
import shapely
from pyproj import Transformer

from eobatch.planning.aoi import AOI
from eobatch.planning.features import LAEA_COVERAGE, WGS84_COVERAGE, aoi_in_grid_crs
from eobatch.planning.grids import GRIDS
from eobatch.planning.utm import UTM_LAYOUTS

# Lambert's cylindrical equal-area projection: areas in m² for the whole globe at once (a
# geodesic ring around the world would be ambiguous); lengths are only needed roughly.
_EQUAL_AREA = Transformer.from_crs(4326, "+proj=cea +ellps=WGS84", always_xy=True)
_S2_SPACING_M = 100_000.0  # Sentinel-2 tiles start every 100 km; UTM grids cut n x n of each


def estimate_features(grid_id: int, aoi: AOI) -> int:
    """About how many tiles of grid `grid_id` meet `aoi` (0 when it misses the grid)."""
    grid = GRIDS[grid_id]
    if grid.epsg is None:  # UTM grids: measured within the grid's latitudes
        layout = UTM_LAYOUTS[grid_id]
        band = shapely.box(-180.0, -layout.lat_limit, 180.0, layout.lat_limit)
        area = shapely.intersection(aoi.wgs84(), band)
        if area.is_empty:
            return 0
        equal_area = shapely.transform(area, _to_equal_area, interleaved=False)
        return _cells(equal_area.area, equal_area.length, _S2_SPACING_M / layout.per_axis)
    if grid.epsg == 4326:  # degree cells: measured in degrees
        area = shapely.intersection(aoi.wgs84(), shapely.box(*WGS84_COVERAGE))
        return 0 if area.is_empty else _cells(area.area, area.length, grid.tile_width)
    projected = aoi_in_grid_crs(aoi, grid.epsg)  # LAEA is equal-area: planar measures hold
    if projected is None:
        return 0
    area = shapely.intersection(projected, shapely.box(*LAEA_COVERAGE))
    return 0 if area.is_empty else _cells(area.area, area.length, grid.tile_width)


def _to_equal_area(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return _EQUAL_AREA.transform(x, y)  # type: ignore[no-any-return]


def _cells(area: float, perimeter: float, side: float) -> int:
    return math.ceil(area / side**2 + 2 * perimeter / (math.pi * side) + 1)
