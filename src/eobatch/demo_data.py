"""The generated demo collection: a few UTM scenes of four bands, as UINT16 COGs.

Values are a closed-form function of (band, date, row, column), so a test can compute what any
output pixel must be without reading the files back. Scenes differ in footprint, one has a
no-data hole ("cloud") and one lies outside 2024, so mosaicking and time filtering both matter.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.io import MemoryFile
from rasterio.shutil import copy as gdal_copy

DEMO_BANDS = ("B02", "B03", "B04", "B08")
DEMO_EPSG = 32633  # UTM 33N: the LAEA output grid differs, so every feature is reprojected
DEMO_RESOLUTION = 10.0
# 14 km square centred on the corner of four LAEA 20 km cells (48.24N 14.29E, Upper Austria).
DEMO_DEFAULT_BOUNDS = (440680.0, 5336100.0, 454680.0, 5350100.0)
NODATA = 0

_BAND_BASE = {"B02": 400.0, "B03": 700.0, "B04": 900.0, "B08": 2600.0}


@dataclass(frozen=True)
class DemoScene:
    name: str
    date_index: int
    sensing_time: datetime
    bounds: tuple[float, float, float, float]
    cloud: tuple[float, float, float] | None = None  # (x, y, radius) of a no-data hole, metres

    @property
    def path_template(self) -> str:
        """The BYOC tile path: one file per band, `(BAND)` standing for the band name."""
        return f"{self.name}/(BAND).tif"

    @property
    def width(self) -> int:
        return round((self.bounds[2] - self.bounds[0]) / DEMO_RESOLUTION)

    @property
    def height(self) -> int:
        return round((self.bounds[3] - self.bounds[1]) / DEMO_RESOLUTION)

    @property
    def transform(self) -> Affine:
        return Affine(DEMO_RESOLUTION, 0, self.bounds[0], 0, -DEMO_RESOLUTION, self.bounds[3])

    def values(self, band: str, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """The stored DN at (rows, cols) of this scene's raster, no-data holes included."""
        values = demo_band_values(band, self.date_index, rows, cols)
        if self.cloud is not None:
            t = self.transform  # north-up, no rotation: x from columns, y from rows
            x, y = t.c + t.a * (cols + 0.5), t.f + t.e * (rows + 0.5)
            cx, cy, radius = self.cloud
            values = np.where((x - cx) ** 2 + (y - cy) ** 2 < radius**2, NODATA, values)
        return values.astype(np.uint16)


def _scenes() -> list[DemoScene]:
    minx, miny, maxx, maxy = DEMO_DEFAULT_BOUNDS
    cx, cy = (minx + maxx) / 2, (miny + maxy) / 2
    return [
        DemoScene("2023-08-01", 3, datetime(2023, 8, 1, 10, 5, tzinfo=UTC), DEMO_DEFAULT_BOUNDS),
        DemoScene("2024-05-10", 0, datetime(2024, 5, 10, 10, 5, tzinfo=UTC), DEMO_DEFAULT_BOUNDS),
        DemoScene(
            "2024-07-15",
            1,
            datetime(2024, 7, 15, 10, 5, tzinfo=UTC),
            (cx - 2000, miny, maxx, maxy - 4000),
        ),
        DemoScene(
            "2024-09-20",
            2,
            datetime(2024, 9, 20, 10, 5, tzinfo=UTC),
            (minx + 2000, miny + 4000, maxx - 3000, maxy),
            cloud=(cx, cy, 1500.0),
        ),
    ]


DEMO_SCENES = _scenes()


def demo_band_values(band: str, date_index: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Smooth, band- and date-specific DN values in 1..10000 (never the no-data value 0)."""
    rows = np.asarray(rows, dtype=np.float64)
    cols = np.asarray(cols, dtype=np.float64)
    phase = 0.7 * date_index + DEMO_BANDS.index(band)
    field = np.sin(cols / 61.0 + phase) * np.cos(rows / 47.0 - phase) + 0.3 * np.sin(
        (rows + cols) / 23.0
    )
    values = _BAND_BASE[band] * (1.0 + 0.15 * date_index) + 350.0 * field
    return np.clip(np.rint(values), 1, 10000).astype(np.uint16)


def write_demo_collection(folder: Path) -> list[DemoScene]:
    """Write every scene's bands as COGs under `folder/<scene>/<band>.tif`; returns the scenes."""
    for scene in DEMO_SCENES:
        rows, cols = np.mgrid[0 : scene.height, 0 : scene.width]
        for band in DEMO_BANDS:
            path = folder / scene.path_template.replace("(BAND)", band)
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_cog(path, scene.values(band, rows, cols), scene.transform)
    return list(DEMO_SCENES)


def _write_cog(path: Path, data: np.ndarray, transform: Affine) -> None:
    profile = {
        "driver": "GTiff",
        "width": data.shape[1],
        "height": data.shape[0],
        "count": 1,
        "dtype": "uint16",
        "crs": f"EPSG:{DEMO_EPSG}",
        "transform": transform,
        "nodata": NODATA,
    }
    with MemoryFile() as memory:
        with memory.open(**profile) as dst:
            dst.write(data, 1)
        with memory.open() as src:
            # No overviews: the demo's tasks read at 20 m, and the tests' reference model samples
            # the full-resolution values (overview reads are tested in test_sentinel2.py).
            gdal_copy(
                src, str(path), driver="COG", compress="DEFLATE", blocksize=512, overviews="NONE"
            )
