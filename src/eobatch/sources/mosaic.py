"""Read scenes onto a feature's pixel grid and mosaic them (SIMPLE mosaicking).

Each band is warped by GDAL (a WarpedVRT) straight from its cloud-optimised file onto the output
grid, so only the blocks that cover the feature are read. GDAL interpolates the coordinate
transformation; its error threshold is WARP_TOLERANCE_PX instead of GDAL's default 0.125 px, so a
pixel samples the source within a hundredth of a pixel of its own centre (nearly free in time).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import rasterio
import shapely
from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.features import geometry_mask
from rasterio.vrt import WarpedVRT
from rasterio.warp import Resampling, transform_bounds

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
        if mask.all():
            break
        if any(name not in scene.bands for name in bands):
            continue
        warped = _warp_scene(scene, bands, grid, upsampling, downsampling, scales or {})
        if warped is None:
            continue
        valid = np.ones(shape, dtype=bool)
        for values in warped.values():
            valid &= np.isfinite(values)
        if scene.cover_wkb is not None:
            valid &= _inside(scene.cover_wkb, grid)
        take = valid & ~mask
        if not take.any():
            continue
        for name in bands:
            out[name][take] = warped[name][take]
        mask |= take
    if fill is not None:
        for name in bands:
            out[name][~mask] = np.float32(fill)
        mask[:] = True
    return out, mask.astype(np.uint8)


def _warp_scene(
    scene: Scene,
    bands: Sequence[str],
    grid: PixelGrid,
    upsampling: str,
    downsampling: str,
    scales: Mapping[str, Conversion],
) -> dict[str, np.ndarray] | None:
    dst_crs = CRS.from_epsg(grid.epsg)
    warped = {}
    with rasterio.Env(**scene.gdal_options):
        for name in bands:
            source = scene.bands[name]
            with rasterio.open(source.path) as full:
                if not _overlaps(full, grid, dst_crs):
                    return None
                pixel = _source_pixel_size(full, dst_crs)
                level = _overview_level(full, source.index, grid.pixel_size / pixel)
                if level is None:
                    values = _warp_band(full, pixel, source, grid, dst_crs, upsampling,
                                        downsampling)  # fmt: skip
            if level is not None:  # the overview nearest the output resolution: fewer bytes
                with rasterio.open(source.path, overview_level=level) as overview:
                    pixel = _source_pixel_size(overview, dst_crs)
                    values = _warp_band(overview, pixel, source, grid, dst_crs, upsampling,
                                        downsampling)  # fmt: skip
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
    dst_crs: CRS,
    upsampling: str,
    downsampling: str,
) -> np.ndarray:
    """One band of `src` (pixel size `pixel` in output CRS units) on `grid` as float32, NaN at
    no data."""
    finer = pixel < grid.pixel_size
    method = source.resampling or (downsampling if finer else upsampling)
    nodata = source.nodata if source.nodata is not None else src.nodata
    with WarpedVRT(
        src, crs=dst_crs, transform=grid.transform, width=grid.width, height=grid.height,
        resampling=RESAMPLING[method], src_nodata=nodata, nodata=nodata,
        add_alpha=nodata is None,  # no nodata: mask from alpha
        tolerance=WARP_TOLERANCE_PX,
    ) as vrt:  # fmt: skip
        if nodata is not None:  # a plain read and one comparison: no masked array
            raw = vrt.read(source.index)
            values = raw.astype(np.float32)
            values[raw == nodata] = np.nan
            return values
        # The alpha band marks what the source covers; the VRT's own mask says "all valid".
        values = vrt.read(source.index).astype(np.float32)
        values[vrt.read(vrt.count) == 0] = np.nan
        return values


def _overview_level(src: rasterio.DatasetReader, index: int, ratio: float) -> int | None:
    """The index of the coarsest overview at most `ratio` times coarser than the file (the
    output pixel over the file's pixel), or None for full resolution (like gdalwarp -ovr AUTO)."""
    best = None
    for level, factor in enumerate(src.overviews(index)):
        if factor <= ratio * (1 + 1e-6):
            best = level
    return best


def _overlaps(src: rasterio.DatasetReader, grid: PixelGrid, dst_crs: CRS) -> bool:
    """Cheap reject of files that do not reach the feature (their bounds, reprojected)."""
    minx, miny, maxx, maxy = _bounds_in(src.crs.to_wkt(), dst_crs.to_wkt(), tuple(src.bounds))
    t = grid.transform
    gminx, gmaxy = t.c, t.f
    gmaxx, gminy = t.c + t.a * grid.width, t.f + t.e * grid.height
    return minx < gmaxx and maxx > gminx and miny < gmaxy and maxy > gminy


def _source_pixel_size(src: rasterio.DatasetReader, dst_crs: CRS) -> float:
    """The source pixel size in output CRS units, measured at the file's centre."""
    if src.crs == dst_crs:
        return abs(src.transform.a)
    to_dst = _transformer(src.crs.to_wkt(), dst_crs.to_wkt())
    cx, cy = src.transform @ (src.width / 2, src.height / 2)
    x0, y0 = to_dst.transform(cx, cy)
    x1, y1 = to_dst.transform(cx + src.transform.a, cy)
    return float(np.hypot(x1 - x0, y1 - y0))


@lru_cache(maxsize=1024)
def _bounds_in(src_wkt: str, dst_wkt: str, bounds: tuple[float, ...]) -> tuple[float, ...]:
    """A file's bounds in the output CRS; the bands of a scene share them, so cached."""
    return tuple(transform_bounds(src_wkt, dst_wkt, *bounds, densify_pts=21))


@lru_cache(maxsize=64)
def _transformer(src_wkt: str, dst_wkt: str) -> Transformer:
    """Transformers are slow to create (tens of ms) and thread-safe to share: one per pair."""
    return Transformer.from_crs(src_wkt, dst_wkt, always_xy=True)


def _inside(cover_wkb: bytes, grid: PixelGrid) -> np.ndarray:
    """True for pixels whose centre is inside the lon/lat cover geometry."""
    cover = shapely.from_wkb(cover_wkb)
    if grid.epsg != 4326:
        to_grid = Transformer.from_crs(4326, grid.epsg, always_xy=True)
        dense = shapely.segmentize(cover, 0.01)

        def project(xy: np.ndarray) -> np.ndarray:
            x, y = to_grid.transform(xy[:, 0], xy[:, 1])
            return np.column_stack([x, y])

        cover = shapely.transform(dense, project)
    return geometry_mask(
        [cover], out_shape=(grid.height, grid.width), transform=grid.transform, invert=True
    )
