"""Generated Sentinel-2 scenes: COGs on the S3 server and their STAC items, as Earth Search
publishes them (asset keys, `eo:cloud_cover`, `s2:processing_baseline`, the offset flag).

Band values are random integers, kept here as arrays so tests compute what the service must
output with numpy alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely
from affine import Affine
from pyproj import Transformer
from rasterio.io import MemoryFile

# band -> (Earth Search asset key, native resolution in metres)
BANDS = {
    "B04": ("red", 10),
    "B08": ("nir", 10),
    "B05": ("rededge1", 20),
    "B01": ("coastal", 60),
    "SCL": ("scl", 20),
}


@dataclass
class S2Scene:
    """One tile of one date: its UTM extent and the stored values (DN) of every band."""

    id: str
    datetime: str
    cloud_cover: float
    baseline: str
    epsg: int
    x0: float  # upper-left corner
    y0: float
    size_m: float
    offset_applied: bool | None = None  # Earth Search's `earthsearch:boa_offset_applied`
    collection: str = "sentinel-2-l2a"
    values: dict[str, np.ndarray] = field(default_factory=dict)

    def fill(self, seed: int, low: int = 1, zero_block: tuple[slice, slice] | None = None) -> None:
        """Random DN per band (`low`..12000); `zero_block` (in 10 m pixels) is no data in the
        10 m bands."""
        rng = np.random.default_rng(seed)
        for name, (_, res) in BANDS.items():
            n = int(self.size_m // res)
            if name == "SCL":
                data = rng.integers(1, 12, (n, n), dtype=np.uint16)  # 0 is no data
            else:
                data = rng.integers(low if res == 10 else 2000, 12000, (n, n), dtype=np.uint16)
            if zero_block is not None and res == 10:
                data[zero_block] = 0
            self.values[name] = data

    def transform(self, res: float) -> Affine:
        return Affine(res, 0, self.x0, 0, -res, self.y0)

    def footprint_wgs84(self) -> shapely.Geometry:
        box = shapely.segmentize(
            shapely.box(self.x0, self.y0 - self.size_m, self.x0 + self.size_m, self.y0), 100
        )
        to_wgs = Transformer.from_crs(self.epsg, 4326, always_xy=True)
        return shapely.transform(box, lambda xy: np.column_stack(to_wgs.transform(*xy.T)))


def cog_bytes(values: np.ndarray, epsg: int, transform: Affine) -> bytes:
    """A tiled, compressed COG with averaged overviews, nodata 0."""
    height, width = values.shape
    with MemoryFile() as memory:
        with memory.open(
            driver="COG",
            width=width,
            height=height,
            count=1,
            dtype=values.dtype,
            crs=f"EPSG:{epsg}",
            transform=transform,
            nodata=0,
            blocksize=256,
            compress="DEFLATE",
            overview_resampling="AVERAGE",
        ) as dst:
            dst.write(values, 1)
        return memory.read()


def publish(s3, bucket: str, scenes: list[S2Scene]) -> list[dict]:  # type: ignore[no-untyped-def]
    """Upload every band of `scenes` as a COG to `bucket`; their STAC items."""
    items = []
    for scene in scenes:
        assets = {}
        for name, (asset, res) in BANDS.items():
            key = f"{scene.collection}/{scene.id}/{name}.tif"
            data = cog_bytes(scene.values[name], scene.epsg, scene.transform(res))
            s3.put_object(Bucket=bucket, Key=key, Body=data)
            assets[asset] = {"href": f"s3://{bucket}/{key}", "type": "image/tiff"}
        footprint = scene.footprint_wgs84()
        properties = {
            "datetime": scene.datetime,
            "eo:cloud_cover": scene.cloud_cover,
            "s2:processing_baseline": scene.baseline,
            "proj:code": f"EPSG:{scene.epsg}",
        }
        if scene.offset_applied is not None:
            properties["earthsearch:boa_offset_applied"] = scene.offset_applied
        items.append(
            {
                "type": "Feature",
                "stac_version": "1.0.0",
                "id": scene.id,
                "collection": scene.collection,
                "geometry": shapely.geometry.mapping(footprint),
                "bbox": list(footprint.bounds),
                "properties": properties,
                "links": [],
                "assets": assets,
            }
        )
    return items


def write_geoparquet(path: Path, items: list[dict]) -> Path:
    import rustac

    rustac.write_sync(str(path), items)
    return path
