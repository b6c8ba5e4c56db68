"""Features: the output tiles of a task, planned from a grid and an AOI (tiling-grids.md §1.3–§4).

Planning is vectorised: candidate cells come from index arithmetic on the AOI's bounds and are
tested against the AOI with shapely in one call; the whole LAEA coverage at 20 km (91 000 tiles)
plans in about a second. A plan is kept as columns (a few tens of bytes a feature) and made into
`Feature` objects one chunk at a time (`FeaturePlan`), so the 1.29 million features of the world on
grid 0 cost tens of MB rather than GBs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache

import numpy as np
import shapely
from affine import Affine

from eobatch.errors import AnalysisError
from eobatch.planning.aoi import AOI, polygonal, projected, shift_lon
from eobatch.planning.grids import GRIDS
from eobatch.planning.utm import (
    UTM_LAYOUTS,
    S2Index,
    outline_wgs84,
    s2_outlines,
    s2_tiles,
    subtile_ids,
    subtile_origins,
)

# LAEA grids cover Europe incl. Turkey, Iceland, Svalbard, Azores and the Canaries (EPSG:3035, m).
LAEA_COVERAGE = (900_000.0, 900_000.0, 7_400_000.0, 6_500_000.0)
WGS84_COVERAGE = (-180.0, -90.0, 180.0, 90.0)
_LAEA_EXTENT = "Europe (EPSG:3035 x 0.9–7.4 Mm, y 0.9–6.5 Mm)"
# The lon/lat envelope of LAEA_COVERAGE, padded by 1°. LAEA folds or loses points far from its
# centre (antipode 170°W 52°S), so an AOI is cut to this window in WGS84 before projecting.
_LAEA_WINDOW_WGS84 = (-74.0, 23.0, 91.0, 83.0)


@dataclass(frozen=True)
class Feature:
    """One output raster: bounds (incl. buffer) in EPSG `epsg`, size in pixels, and the tile
    polygon without buffer (for the manifest)."""

    id: int
    name: str
    epsg: int
    bounds: tuple[float, float, float, float]
    width: int
    height: int
    geometry: shapely.Geometry

    @property
    def resolution(self) -> tuple[float, float]:
        minx, miny, maxx, maxy = self.bounds
        return (maxx - minx) / self.width, (maxy - miny) / self.height

    @property
    def transform(self) -> Affine:
        """North-up pixel grid anchored at the upper-left corner of the bounds."""
        res_x, res_y = self.resolution
        return Affine(res_x, 0.0, self.bounds[0], 0.0, -res_y, self.bounds[3])


CHUNK = 10_000  # features made at a time: a chunk's objects, not the plan's, are in memory

Bounds = tuple[float, float, float, float]


@dataclass(frozen=True)
class FeaturePlan:
    """The planned features of a task, in order, made on demand a chunk at a time.

    `make(start, stop)` builds features `start` to `stop - 1` from the plan's columns; iterating
    twice gives the same features (analysis passes over a plan more than once).
    """

    count: int
    extents: dict[int, Bounds]  # EPSG code -> union of its features' bounds, by EPSG code
    make: Callable[[int, int], list[Feature]]

    def __len__(self) -> int:
        return self.count

    def chunks(self, size: int | None = None) -> Iterator[list[Feature]]:
        """The features in lists of `size` (default `CHUNK`), in plan order."""
        size = size or CHUNK
        for start in range(0, self.count, size):
            yield self.make(start, min(start + size, self.count))

    def __iter__(self) -> Iterator[Feature]:
        for chunk in self.chunks():
            yield from chunk


def extents_of(epsg: np.ndarray, bounds: np.ndarray) -> dict[int, Bounds]:
    """Per EPSG code (ascending), the union of the rows of `bounds` (n x 4) in that CRS."""
    extents = {}
    for code in np.unique(epsg).tolist():
        rows = bounds[epsg == code]
        extents[int(code)] = (
            *rows[:, :2].min(axis=0).tolist(),
            *rows[:, 2:].max(axis=0).tolist(),
        )
    return extents  # type: ignore[return-value]


def plan_tiling_grid(
    grid_id: int, resolution: float, buffer_x: int, buffer_y: int, aoi: AOI
) -> list[Feature]:
    """Every feature of `tiling_grid_plan`, as a list (for small AOIs and tests)."""
    return list(tiling_grid_plan(grid_id, resolution, buffer_x, buffer_y, aoi))


def tiling_grid_plan(
    grid_id: int, resolution: float, buffer_x: int, buffer_y: int, aoi: AOI
) -> FeaturePlan:
    """The grid tiles whose footprint meets the AOI, north to south, west to east.

    `resolution` and the tile bounds are in grid units (degrees for grid 3, metres in EPSG:3035
    for grids 6 and 7); buffers are in pixels.
    """
    grid = GRIDS.get(grid_id)
    if grid is None:
        raise AnalysisError(
            f"Unknown tiling grid {grid_id}; available: {', '.join(map(str, GRIDS))}"
        )
    res = grid.allowed(resolution) or resolution
    if grid.epsg is None:
        return _plan_utm(grid_id, res, buffer_x, buffer_y, aoi)
    size = grid.tile_width
    coverage = WGS84_COVERAGE if grid.epsg == 4326 else LAEA_COVERAGE
    # grid 3 is lon/lat: the AOI cut at the antimeridian lands in the right cells on both sides
    area = aoi.wgs84() if grid.epsg == 4326 else aoi_in_grid_crs(aoi, grid.epsg)
    area = shapely.intersection(area, shapely.box(*coverage)) if area is not None else None
    outside = AnalysisError(
        f"The AOI does not meet tiling grid {grid_id} ({grid.name}), which covers "
        f"{'the whole globe' if grid.epsg == 4326 else _LAEA_EXTENT}"
    )
    if area is None or area.is_empty:
        raise outside
    minx, miny, maxx, maxy = area.bounds
    cols = np.arange(math.floor(minx / size), math.ceil(maxx / size))
    rows = np.arange(math.floor(miny / size), math.ceil(maxy / size))[::-1]  # north first
    jj, ii = (a.ravel() for a in np.meshgrid(rows, cols, indexing="ij"))
    x0, y0 = ii * size, jj * size
    cells = shapely.box(x0, y0, x0 + size, y0 + size)
    shapely.prepare(area)
    hit = shapely.intersects(area, cells) & ~shapely.touches(area, cells)
    del cells
    ii, jj = ii[hit], jj[hit]
    if len(ii) == 0:  # the AOI only touches the coverage edge
        raise outside
    pixels = round(size / res)
    bx, by = buffer_x * res, buffer_y * res
    left, bottom = ii * size, jj * size
    bounds = np.column_stack((left - bx, bottom - by, left + size + bx, bottom + size + by))
    epsg = grid.epsg

    def make(start: int, stop: int) -> list[Feature]:
        x0, y0 = left[start:stop], bottom[start:stop]
        boxes = shapely.box(x0, y0, x0 + size, y0 + size)
        return [
            Feature(
                id=_tile_id(grid_id, i, j),
                name=_tile_name(grid_id, i, j),
                epsg=epsg,
                bounds=tuple(box),  # type: ignore[arg-type]
                width=pixels + 2 * buffer_x,
                height=pixels + 2 * buffer_y,
                geometry=cell,
            )
            for i, j, box, cell in zip(
                ii[start:stop].tolist(),
                jj[start:stop].tolist(),
                bounds[start:stop].tolist(),
                boxes,
                strict=True,
            )
        ]

    return FeaturePlan(len(ii), extents_of(np.full(len(ii), epsg), bounds), make)


def _plan_utm(grid_id: int, res: float, buffer_x: int, buffer_y: int, aoi: AOI) -> FeaturePlan:
    """UTM grids 0–2 (tiling-grids.md §2): the surviving sub-tiles of the S2 tiles near the AOI
    that meet it, tested in each tile's own UTM CRS; ordered by name (= id)."""
    layout = UTM_LAYOUTS[grid_id]
    n, size = layout.per_axis, layout.size
    s2 = s2_tiles()
    ox0, oy0 = subtile_origins(s2, grid_id)
    area = aoi.wgs84()
    _, near = _s2_index().query(area)
    outside = AnalysisError(
        f"The AOI does not meet tiling grid {grid_id} ({GRIDS[grid_id].name}), which covers "
        f"latitudes {-layout.lat_limit:g}° to {layout.lat_limit:g}°"
    )
    found_tiles, found_subs = [], []
    outlines = _s2_outline_bounds()
    for epsg in np.unique(s2.epsg[near]).tolist():
        tiles = np.unique(near[s2.epsg[near] == epsg])
        zone_area = _aoi_in_zone(aoi, area, epsg, outlines[tiles])
        if zone_area is None or zone_area.is_empty:
            continue
        tiles_k, subs = np.repeat(tiles, n * n), np.tile(np.arange(n * n), len(tiles))
        minx = ox0[tiles_k] + subs // n * size
        maxy = oy0[tiles_k] - subs % n * size
        boxes = shapely.box(minx, maxy - size, minx + size, maxy)
        shapely.prepare(zone_area)
        hit = shapely.intersects(zone_area, boxes) & ~shapely.touches(zone_area, boxes)
        hit &= ~_dropped(s2.drops[grid_id][tiles_k], subs)
        found_tiles.append(tiles_k[hit])
        found_subs.append(subs[hit])
    if not found_tiles:
        raise outside
    tiles_k, subs = np.concatenate(found_tiles), np.concatenate(found_subs)
    order = np.lexsort((subs, tiles_k))  # name order: S2 tile, then c, then r
    tiles_k, subs = tiles_k[order], subs[order]
    minx = ox0[tiles_k] + subs // n * size
    maxy = oy0[tiles_k] - subs % n * size
    epsg_k = s2.epsg[tiles_k]
    polar = np.abs(outlines[tiles_k][:, [1, 3]]).max(axis=1) > layout.lat_limit - 1.0
    if polar.any():  # hide tiles reaching beyond the documented latitude limit (§2.4)
        rings = outline_wgs84(
            epsg_k[polar], minx[polar], maxy[polar] - size, minx[polar] + size, maxy[polar]
        )
        reach = np.abs(shapely.bounds(rings)[:, [1, 3]]).max(axis=1)
        keep = np.ones(len(tiles_k), dtype=bool)
        keep[np.flatnonzero(polar)[reach > layout.lat_limit]] = False
        tiles_k, subs, minx, maxy, epsg_k = (a[keep] for a in (tiles_k, subs, minx, maxy, epsg_k))
    if len(tiles_k) == 0:
        raise outside
    ids = subtile_ids(s2, grid_id, tiles_k, subs)
    pixels = round(size / res)
    bx, by = buffer_x * res, buffer_y * res
    bounds = np.column_stack((minx - bx, maxy - size - by, minx + size + bx, maxy + by))
    names = s2.names

    def make(start: int, stop: int) -> list[Feature]:
        x0, y1 = minx[start:stop], maxy[start:stop]
        boxes = shapely.box(x0, y1 - size, x0 + size, y1)
        return [
            Feature(
                id=i,
                name=f"{name}_{sub // n}_{sub % n}",
                epsg=code,
                bounds=tuple(box),  # type: ignore[arg-type]
                width=pixels + 2 * buffer_x,
                height=pixels + 2 * buffer_y,
                geometry=tile,
            )
            for i, name, sub, code, box, tile in zip(
                ids[start:stop].tolist(),
                names[tiles_k[start:stop]].tolist(),
                subs[start:stop].tolist(),
                epsg_k[start:stop].tolist(),
                bounds[start:stop].tolist(),
                boxes,
                strict=True,
            )
        ]

    return FeaturePlan(len(ids), extents_of(epsg_k, bounds), make)


@cache
def _s2_index() -> S2Index:
    # padded so that an AOI just outside a tile's densified outline still reaches it; the exact
    # test is done afterwards in the tile's own CRS
    return S2Index(s2_tiles(), pad_deg=0.01)


@cache
def _s2_outline_bounds() -> np.ndarray:
    """(minlon, minlat, maxlon, maxlat) of every S2 tile, lon unwrapped around its zone."""
    return shapely.bounds(s2_outlines(s2_tiles()))


def _dropped(masks: np.ndarray, subs: np.ndarray) -> np.ndarray:
    return np.fromiter(
        (m >> s & 1 for m, s in zip(masks.tolist(), subs.tolist(), strict=True)),
        dtype=bool,
        count=len(subs),
    )


def _aoi_in_zone(
    aoi: AOI, area_wgs84: shapely.Geometry, epsg: int, tile_bounds: np.ndarray
) -> shapely.Geometry | None:
    """The AOI in UTM EPSG `epsg`, cut first (in lon/lat around the zone's central meridian) to
    the window of the S2 tiles there, so far-away parts never meet the projection's edges."""
    if aoi.epsg == epsg:
        return aoi.geometry
    west, south = tile_bounds[:, 0].min() - 0.1, max(tile_bounds[:, 1].min() - 0.1, -90.0)
    east, north = tile_bounds[:, 2].max() + 0.1, min(tile_bounds[:, 3].max() + 0.1, 90.0)
    window = shapely.box(west, south, east, north)
    near = [shapely.intersection(window, shift_lon(area_wgs84, d)) for d in (-360.0, 0.0, 360.0)]
    zone = polygonal(shapely.union_all(near))
    if zone.is_empty:
        return None
    area = projected(zone, 4326, epsg)
    return area if area is None or area.is_valid else shapely.make_valid(area)


def aoi_in_grid_crs(aoi: AOI, epsg: int) -> shapely.Geometry | None:
    """The AOI in the grid CRS; None where it cannot be projected there (e.g. far from Europe)."""
    if epsg == 3035 and aoi.epsg != 3035:
        wgs84 = projected(aoi.geometry, aoi.epsg, 4326)
        near = None if wgs84 is None else wgs84.intersection(shapely.box(*_LAEA_WINDOW_WGS84))
        area = None if near is None or near.is_empty else projected(near, 4326, epsg)
    else:
        area = projected(aoi.geometry, aoi.epsg, epsg)
    if area is None:
        return None
    return area if area.is_valid else shapely.make_valid(area)


def _tile_name(grid_id: int, i: int, j: int) -> str:
    """SW-corner names: `N13E025` (grid 3); EEA style `100kmE43N32` / `20kmE216N160` (6, 7)."""
    if grid_id == 3:
        return f"{'N' if j >= 0 else 'S'}{abs(j):02d}{'E' if i >= 0 else 'W'}{abs(i):03d}"
    return f"{'100km' if grid_id == 6 else '20km'}E{i}N{j}"


def _tile_id(grid_id: int, i: int, j: int) -> int:
    """Stable numeric ids: (lat+90)·360 + (lon+180) for grid 3, j·10000 + i for the LAEA grids."""
    if grid_id == 3:
        return (j + 90) * 360 + (i + 180)
    return j * 10_000 + i
