"""Synthetic STAC catalogues: items shaped like the public catalogues' (asset keys, properties,
`raster:bands`), their assets COGs with the real band layout (data type, no-data, stored scale)
on the S3 server, and the stored values kept as arrays so tests compute what the service must
output with numpy and pyproj alone.

Every test feature is the square `FEATURE` (UTM 33N) at 30 m: 100 x 100 pixels. Assets in the
same CRS overhang it by `MARGIN`, chosen so that no output pixel centre falls on a source pixel
edge at 10, 15, 30 or 60 m (nearest neighbour is then exact, with no tie).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.io import MemoryFile

EPSG = 32633
X0, Y0, SIZE = 499_980.0, 5_003_040.0, 3000.0  # the feature's upper-left corner and side (m)
RES = 30.0
PX = int(SIZE / RES)
MARGIN = 607.5
COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"


@dataclass
class Asset:
    """One COG: its stored values, no-data, CRS and north-up grid (upper-left corner, pixel)."""

    values: np.ndarray
    res: float
    x0: float
    y0: float
    nodata: float | None = None
    crs: str = f"EPSG:{EPSG}"
    raster: dict[str, Any] = field(default_factory=dict)  # the item's `raster:bands[0]`

    @property
    def transform(self) -> Affine:
        return Affine(self.res, 0, self.x0, 0, -self.res, self.y0)

    def footprint_wgs84(self) -> shapely.Geometry:
        rows, cols = self.values.shape
        box = shapely.box(self.x0, self.y0 - rows * self.res, self.x0 + cols * self.res, self.y0)
        box = shapely.segmentize(box, max(box.bounds[2] - box.bounds[0], 1e-9) / 20)
        to_wgs = Transformer.from_crs(CRS.from_user_input(self.crs), 4326, always_xy=True)
        return shapely.transform(box, lambda xy: np.column_stack(to_wgs.transform(*xy.T)))

    def cog(self) -> bytes:
        """A tiled, DEFLATE-compressed COG without overviews (reads are full resolution)."""
        height, width = self.values.shape
        with MemoryFile() as memory:
            with memory.open(
                driver="COG",
                width=width,
                height=height,
                count=1,
                dtype=self.values.dtype,
                crs=CRS.from_user_input(self.crs),
                transform=self.transform,
                nodata=self.nodata,
                blocksize=256,
                compress="DEFLATE",
                overviews="NONE",
            ) as dst:
                dst.write(self.values, 1)
            return memory.read()

    def on_feature(self, res: float = RES) -> np.ndarray:
        """Stored values at the output pixel centres (nearest), for an asset in the feature's
        CRS; float64 with NaN at no data and outside the asset."""
        n = int(SIZE / res)
        centres = (np.arange(n) + 0.5) * res
        cols = np.floor((X0 + centres - self.x0) / self.res).astype(int)
        rows = np.floor((self.y0 - (Y0 - centres)) / self.res).astype(int)
        out = np.full((n, n), np.nan)
        height, width = self.values.shape
        r_ok, c_ok = (rows >= 0) & (rows < height), (cols >= 0) & (cols < width)
        sub = self.values[np.ix_(rows[r_ok], cols[c_ok])].astype(np.float64)
        if self.nodata is not None:
            sub[sub == self.nodata] = np.nan
        out[np.ix_(r_ok, c_ok)] = sub
        return out

    def sampler(self, res: float = RES) -> Callable[[tuple[float, float]], np.ndarray]:
        """For an asset in another CRS: stored values at the output pixel centres moved by
        `shift` source pixels (for `tests.reference.matches_nearest`)."""
        n = int(SIZE / res)
        rows, cols = np.mgrid[0:n, 0:n]
        x, y = Affine(res, 0, X0, 0, -res, Y0) @ (cols + 0.5, rows + 0.5)
        to_asset = Transformer.from_crs(EPSG, CRS.from_user_input(self.crs), always_xy=True)
        ux, uy = to_asset.transform(x, y)

        def sample(shift: tuple[float, float]) -> np.ndarray:
            col = np.floor((ux - self.x0) / self.res + shift[0]).astype(int)
            row = np.floor((self.y0 - uy) / self.res + shift[1]).astype(int)
            height, width = self.values.shape
            inside = (col >= 0) & (col < width) & (row >= 0) & (row < height)
            out = np.full((n, n), np.nan)
            out[inside] = self.values[row[inside], col[inside]]
            if self.nodata is not None:
                out[out == self.nodata] = np.nan
            return out

        return sample


def utm_asset(
    rng: np.random.Generator,
    dtype: str,
    res: float,
    low: float,
    high: float,
    nodata: float | None = None,
    raster: dict[str, Any] | None = None,
) -> Asset:
    """Random values in [low, high) over the feature and its margin, in UTM 33N."""
    n = math.ceil((SIZE + 2 * MARGIN) / res)
    if np.dtype(dtype).kind == "f":
        values = rng.uniform(low, high, (n, n)).astype(dtype)
    else:
        values = rng.integers(int(low), int(high), (n, n)).astype(dtype)
    return Asset(values, res, X0 - MARGIN, Y0 + MARGIN, nodata, raster=raster or {})


@dataclass
class Item:
    """A STAC item to publish: its assets are uploaded as COGs."""

    id: str
    collection: str
    datetime: str
    properties: dict[str, Any]
    assets: dict[str, Asset]
    alternate_s3: bool = False  # USGS style: href elsewhere, the S3 copy as `alternate.s3`

    def footprint(self) -> shapely.Geometry:
        return shapely.union_all([a.footprint_wgs84() for a in self.assets.values()]).envelope


def publish(s3: Any, bucket: str, items: list[Item]) -> list[dict[str, Any]]:
    """Upload every asset of `items` to `bucket` as a COG; their STAC items (GeoJSON)."""
    features = []
    for item in items:
        assets = {}
        for key, asset in item.assets.items():
            path = f"{item.collection}/{item.id}/{item.id}_{key}.tif"
            s3.put_object(Bucket=bucket, Key=path, Body=asset.cog())
            raster = {"data_type": str(asset.values.dtype), **asset.raster}
            if asset.nodata is not None:
                raster.setdefault("nodata", asset.nodata)
            entry: dict[str, Any] = {
                "href": f"s3://{bucket}/{path}",
                "type": COG_TYPE,
                "roles": ["data"],
                "raster:bands": [raster],
            }
            if item.alternate_s3:  # the primary href must never be read: a closed port
                entry["alternate"] = {"s3": {"storage:requester_pays": True, **entry}}
                entry["href"] = f"http://127.0.0.1:9/{path}"
            assets[key] = entry
        footprint = item.footprint()
        features.append(
            {
                "type": "Feature",
                "stac_version": "1.0.0",
                "stac_extensions": [
                    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
                    "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
                ],
                "id": item.id,
                "collection": item.collection,
                "geometry": shapely.geometry.mapping(footprint),
                "bbox": list(footprint.bounds),
                "properties": {"datetime": item.datetime, **item.properties},
                "links": [],
                "assets": assets,
            }
        )
    return features
