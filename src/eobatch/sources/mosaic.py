"""Read scenes onto a feature's pixel grid and mosaic them (SIMPLE mosaicking).

Each band is warped by GDAL (a WarpedVRT) straight from its cloud-optimised file onto the output
grid, so only the blocks that cover the feature are read. GDAL interpolates the coordinate
transformation; its error threshold is WARP_TOLERANCE_PX instead of GDAL's default 0.125 px, so a
pixel samples the source within a hundredth of a pixel of its own centre (nearly free in time).

A scene is only warped over the part of the grid where it can still fill a pixel: the window of
the grid its files (and its cover geometry) reach, cut down to the pixels no earlier scene filled.
A scene that cannot fill any is not read at all, so mosaicking stops reading as soon as every
pixel is filled or no remaining scene reaches an empty one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import rasterio
import shapely
from affine import Affine
from rasterio.crs import CRS
from rasterio.features import geometry_mask
from rasterio.vrt import WarpedVRT
from rasterio.warp import Resampling
from rasterio.windows import Window

from eobatch.projection import transformer
from eobatch.sources.datasets import open_dataset
from eobatch.sources.scenes import BandSource, Scene
from eobatch.sources.units import Conversion

RESAMPLING = {
    "NEAREST": Resampling.nearest,
    "BILINEAR": Resampling.bilinear,
    "BICUBIC": Resampling.cubic,
}
WARP_TOLERANCE_PX = 0.001


@dataclass(frozen=True)
class PixelGrid:
    """The output raster of a feature: CRS, north-up transform and size."""

    epsg: int
    transform: Affine
    width: int
    height: int

    @property
    def pixel_size(self) -> float:
        return abs(self.transform.a)


def read_mosaic(
    scenes: Sequence[Scene],
    bands: Sequence[str],
    grid: PixelGrid,
    upsampling: str = "NEAREST",
    downsampling: str = "NEAREST",
    out: dict[str, np.ndarray] | None = None,
    scales: Mapping[str, Conversion] | None = None,
    fill: float | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Mosaic `bands` of `scenes` (priority order) onto `grid`.

    Returns float32 arrays per band (NaN where no scene has data) and the dataMask (uint8, 1 where
    a scene supplied the pixel). A pixel comes from the first scene where every requested band has
    data and which covers it, so the bands of one pixel always come from the same scene; a scene
    lacking one of the bands (an HLS Landsat scene asked for a red-edge band) supplies none.
    `scales` converts a band's stored values into its units, scene by scene. `fill` is the value
    of pixels no scene covers, which then count as data (the DEM's sea level where it has no tile).
    """
    shape = (grid.height, grid.width)
    if out is None:
        out = {name: np.empty(shape, dtype=np.float32) for name in bands}
    for name in bands:  # `out` may be given: float32 arrays to fill (e.g. in the script's memory)
        out[name].fill(np.nan)
    mask = np.zeros(shape, dtype=bool)
    for scene in scenes:
        if any(name not in scene.bands for name in bands):
            continue  # a scene lacking one of the bands supplies no pixel
        reach = _reach(scene, bands, grid, mask)
        if reach is None:  # no pixel left that this scene could fill
            continue
        window, take = reach
        warped = _warp_scene(scene, bands, grid, window, upsampling, downsampling, scales or {})
        rows, cols = window.toslices()
        for values in warped.values():
            take &= np.isfinite(values)
        if not take.any():
            continue
        for name in bands:
            out[name][rows, cols][take] = warped[name][take]
        mask[rows, cols] |= take
        if mask.all():
            break
    if fill is not None:
        for name in bands:
            out[name][~mask] = np.float32(fill)
        mask[:] = True
    return out, mask.astype(np.uint8)


def _reach(
    scene: Scene, bands: Sequence[str], grid: PixelGrid, filled: np.ndarray
) -> tuple[Window, np.ndarray] | None:
    """Where on `grid` `scene` can still fill a pixel: the window to read it in, and its pixels
    that the scene reaches (centre inside every band file and the cover geometry) and that are
    not yet `filled`. None when there are none."""
    dst_wkt = _wkt(grid.epsg)
    footprint = None
    with rasterio.Env(**scene.gdal_options):
        for path in dict.fromkeys(scene.bands[name].path for name in bands):
            src = open_dataset(path, scene.gdal_options)
            extent = _extent_in(src.crs.to_wkt(), dst_wkt, tuple(src.bounds), src.width)
            # Every band must have data at a pixel: the files' common extent bounds the scene
            # (the bands of a scene mostly share one extent: the same cached polygon).
            if footprint is None or footprint is extent:
                footprint = extent
            else:
                footprint = shapely.intersection(footprint, extent)
    if scene.cover_wkb is not None:
        footprint = shapely.intersection(footprint, _cover_in(scene.cover_wkb, grid.epsg))
    if footprint is None or footprint.is_empty:
        return None
    t = grid.transform
    minx, miny, maxx, maxy = footprint.bounds
    c0, c1 = (
        max(0, int(np.floor((minx - t.c) / t.a))),
        min(grid.width, int(np.ceil((maxx - t.c) / t.a))),
    )
    r0, r1 = (
        max(0, int(np.floor((t.f - maxy) / -t.e))),
        min(grid.height, int(np.ceil((t.f - miny) / -t.e))),
    )
    if c0 >= c1 or r0 >= r1:
        return None
    need = ~filled[r0:r1, c0:c1]
    x0, y0 = t.c + c0 * t.a, t.f + r0 * t.e
    x1, y1 = x0 + (c1 - c0) * t.a, y0 + (r1 - r0) * t.e
    if not shapely.contains(footprint, shapely.box(x0, y1, x1, y0)):
        # The scene covers part of the window: only the pixels whose centre it reaches.
        need &= geometry_mask(
            [footprint],
            out_shape=need.shape,
            transform=t @ Affine.translation(c0, r0),
            invert=True,
        )
    rows = np.flatnonzero(need.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(need.any(axis=0))
    # The bounding box of the pixels still to fill: no read wider than needed.
    rr0, rr1, cc0, cc1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    window = Window(c0 + cc0, r0 + rr0, cc1 - cc0, rr1 - rr0)
    return window, need[rr0:rr1, cc0:cc1]


def _warp_scene(
    scene: Scene,
    bands: Sequence[str],
    grid: PixelGrid,
    window: Window,
    upsampling: str,
    downsampling: str,
    scales: Mapping[str, Conversion],
) -> dict[str, np.ndarray]:
    """Every band of `scene` on `window` of `grid` as float32 in its units, NaN at no data."""
    dst_crs = CRS.from_epsg(grid.epsg)
    warped = {}
    with rasterio.Env(**scene.gdal_options):
        for name in bands:
            source = scene.bands[name]
            src = open_dataset(source.path, scene.gdal_options)
            pixel = _source_pixel_size(src, grid.epsg)
            level = _overview_level(src, source.index, grid.pixel_size / pixel)
            if level is not None:  # the overview nearest the output resolution: fewer bytes
                src = open_dataset(source.path, scene.gdal_options, level)
                pixel = _source_pixel_size(src, grid.epsg)
            values = _warp_band(src, pixel, source, grid, window, dst_crs, upsampling, downsampling)
            if source.offset:  # harmonised DN never go below 0 (NaN stays NaN)
                values += np.float32(source.offset)
                np.maximum(values, 0, out=values)
            conversion = scales.get(name)
            if conversion is not None and not conversion.identity:
                conversion.apply(values, scene.properties)
            warped[name] = values
    return warped


def _warp_band(
    src: rasterio.DatasetReader,
    pixel: float,
    source: BandSource,
    grid: PixelGrid,
    window: Window,
    dst_crs: CRS,
    upsampling: str,
    downsampling: str,
) -> np.ndarray:
    """One band of `src` (pixel size `pixel` in output CRS units) on `window` of `grid` as
    float32, NaN at no data."""
    finer = pixel < grid.pixel_size
    method = source.resampling or (downsampling if finer else upsampling)
    nodata = source.nodata if source.nodata is not None else src.nodata
    with WarpedVRT(
        src,
        crs=dst_crs,
        transform=grid.transform,
        width=grid.width,
        height=grid.height,
        resampling=RESAMPLING[method],
        src_nodata=nodata,
        nodata=nodata,
        add_alpha=nodata is None,  # no nodata: mask from alpha
        tolerance=WARP_TOLERANCE_PX,
    ) as vrt:
        if nodata is not None:  # a plain read and one comparison: no masked array
            raw = vrt.read(source.index, window=window)
            values = raw.astype(np.float32)
            values[raw == nodata] = np.nan
            return values
        # The alpha band marks what the source covers; the VRT's own mask says "all valid".
        values = vrt.read(source.index, window=window).astype(np.float32)
        values[vrt.read(vrt.count, window=window) == 0] = np.nan
        return values


def _overview_level(src: rasterio.DatasetReader, index: int, ratio: float) -> int | None:
    """The index of the coarsest overview at most `ratio` times coarser than the file (the
    output pixel over the file's pixel), or None for full resolution (like gdalwarp -ovr AUTO)."""
    best = None
    for level, factor in enumerate(src.overviews(index)):
        if factor <= ratio * (1 + 1e-6):
            best = level
    return best


def _source_pixel_size(src: rasterio.DatasetReader, epsg: int) -> float:
    """The source pixel size in the units of CRS `epsg`, measured at the file's centre."""
    t = src.transform
    return _pixel_size_in(src.crs.to_wkt(), _wkt(epsg), (t.a, t.c, t.e, t.f), src.width, src.height)


@lru_cache(maxsize=1024)
def _pixel_size_in(
    src_wkt: str, dst_wkt: str, transform: tuple[float, ...], width: int, height: int
) -> float:
    a, c, e, f = transform
    if src_wkt == dst_wkt:
        return abs(a)
    to_dst = transformer(src_wkt, dst_wkt)
    cx, cy = c + a * width / 2, f + e * height / 2
    x0, y0 = to_dst.transform(cx, cy)
    x1, y1 = to_dst.transform(cx + a, cy)
    return float(np.hypot(x1 - x0, y1 - y0))


@lru_cache(maxsize=64)
def _wkt(epsg: int) -> str:
    return CRS.from_epsg(epsg).to_wkt()


@lru_cache(maxsize=1024)
def _extent_in(
    src_wkt: str, dst_wkt: str, bounds: tuple[float, ...], width: int
) -> shapely.Geometry:
    """A file's extent as a polygon in the output CRS, its edges densified to a vertex every
    ~25 source pixels so that they stay true to well under a millimetre; the bands of a scene
    and the features of a task share it, so cached."""
    extent = shapely.box(*bounds)
    if src_wkt != dst_wkt:
        to_dst = transformer(src_wkt, dst_wkt)

        def project(xy: np.ndarray) -> np.ndarray:
            x, y = to_dst.transform(xy[:, 0], xy[:, 1])
            return np.column_stack([x, y])

        step = 25 * (bounds[2] - bounds[0]) / width
        extent = shapely.transform(shapely.segmentize(extent, step), project)
    shapely.prepare(extent)  # it is tested against many windows
    return extent


@lru_cache(maxsize=256)
def _cover_in(cover_wkb: bytes, epsg: int) -> shapely.Geometry:
    """A scene's lon/lat cover geometry in the grid's CRS (densified so its edges stay true);
    the same scenes meet many features of a task, so cached."""
    cover = shapely.from_wkb(cover_wkb)
    if epsg == 4326:
        return cover
    to_grid = transformer(_wkt(4326), _wkt(epsg))

    def project(xy: np.ndarray) -> np.ndarray:
        x, y = to_grid.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(shapely.segmentize(cover, 0.01), project)
