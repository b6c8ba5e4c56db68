"""A Process API preview: `POST /api/v1/process` against a hand-written rasterio + numpy read.

The demo's BYOC collection (local COGs, UINT16, 10 m, UTM 33N) is registered in a fresh store;
an NDVI preview of 512 x 512 px at 20 m over one acquisition (2024-05-10) is asked for as a
FLOAT32 GeoTIFF.

- eobatch: the whole request through the ASGI app in process (token check, request checks,
  collection lookup, reader, V8 script, GeoTIFF encoding, PU charge on the ledger).
- baseline: per band a `WarpedVRT` onto the same grid, NDVI in numpy, the same GeoTIFF written
  with rasterio: the minimal hand-written preview of the same pixels.

The two alternate run by run; the table shows medians and whether the pixels are the same.
Run: python benchmarks/process.py [--repeats N] [--smoke]   (goal: eobatch well under 1 s)
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import rasterio
from _signin import sign_in  # benchmarks/_signin.py, beside this script
from affine import Affine
from rasterio.crs import CRS
from rasterio.io import MemoryFile
from rasterio.vrt import WarpedVRT
from rasterio.warp import Resampling
from rich.console import Console
from rich.table import Table

from eobatch.accounts import create_account
from eobatch.config import Settings
from eobatch.demo_data import DEMO_DEFAULT_BOUNDS, DEMO_EPSG, write_demo_collection
from eobatch.sources.datasets import close_datasets
from eobatch.sources.mosaic import WARP_TOLERANCE_PX
from eobatch.store import Database

warnings.filterwarnings("ignore", category=DeprecationWarning)
from fastapi.testclient import TestClient  # noqa: E402  (after the warning filter)

from eobatch.api import create_app  # noqa: E402

SCENE = "2024-05-10"  # covers the whole demo extent
NDVI = """//VERSION=3
function setup() {
  return { input: ["B04", "B08", "dataMask"], output: { bands: 1, sampleType: "FLOAT32" } };
}
function evaluatePixel(s) { return [s.dataMask ? (s.B08 - s.B04) / (s.B08 + s.B04) : NaN]; }
"""


def grid(size: int) -> tuple[tuple[float, float, float, float], Affine]:
    """A size x size px box at 20 m in the middle of the demo extent (UTM 33N)."""
    minx, miny, maxx, maxy = DEMO_DEFAULT_BOUNDS
    cx, cy = round((minx + maxx) / 2, -2), round((miny + maxy) / 2, -2)
    half = size * 10.0
    bounds = (cx - half, cy - half, cx + half, cy + half)
    return bounds, Affine(20.0, 0, bounds[0], 0, -20.0, bounds[3])


def baseline(folder: Path, size: int) -> bytes:
    _, transform = grid(size)
    bands = {}
    for band in ("B04", "B08"):
        with (
            rasterio.open(folder / SCENE / f"{band}.tif") as src,
            WarpedVRT(
                src,
                crs=CRS.from_epsg(DEMO_EPSG),
                transform=transform,
                width=size,
                height=size,
                resampling=Resampling.nearest,
                tolerance=WARP_TOLERANCE_PX,
            ) as vrt,
        ):
            bands[band] = vrt.read(1).astype(np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        ndvi = (bands["B08"] - bands["B04"]) / (bands["B08"] + bands["B04"])
    ndvi[(bands["B04"] == 0) | (bands["B08"] == 0)] = np.nan
    with MemoryFile() as memory:
        with memory.open(
            driver="GTiff",
            count=1,
            width=size,
            height=size,
            dtype="float32",
            crs=CRS.from_epsg(DEMO_EPSG),
            transform=transform,
            compress="DEFLATE",
        ) as out:
            out.write(ndvi, 1)
        return memory.read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=9, help="alternating runs of each")
    parser.add_argument("--smoke", action="store_true", help="128 px preview, one run")
    args = parser.parse_args()
    size, repeats = (128, 1) if args.smoke else (512, args.repeats)
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp) / "data", jwt_secret="x" * 40, workers=1)
        folder = settings.buckets_dir / "demo-data"
        write_demo_collection(folder)
        db = Database(settings.resolved_database_url)
        db.migrate()
        creds = create_account(db, "bench", 1_000_000)
        http = TestClient(create_app(settings, db))
        sign_in(http, creds)
        collection = http.post(
            "/api/v1/byoc/collections", json={"name": "demo", "s3Bucket": "demo-data"}
        ).json()["data"]["id"]
        http.post(
            f"/api/v1/byoc/collections/{collection}/tiles",
            json={"path": f"{SCENE}/(BAND).tif", "sensingTime": f"{SCENE}T10:05:00Z"},
        ).raise_for_status()
        bounds, _ = grid(size)
        body = {
            "input": {
                "bounds": {
                    "bbox": list(bounds),
                    "properties": {"crs": f"http://www.opengis.net/def/crs/EPSG/0/{DEMO_EPSG}"},
                },
                "data": [{"type": f"byoc-{collection}"}],
            },
            "output": {
                "width": size,
                "height": size,
                "responses": [{"identifier": "default", "format": {"type": "image/tiff"}}],
            },
            "evalscript": NDVI,
        }

        def preview() -> bytes:
            response = http.post("/api/v1/process", json=body, headers={"Accept": "image/tiff"})
            response.raise_for_status()
            return response.content

        with (
            rasterio.open(io.BytesIO(preview())) as ours,
            rasterio.open(io.BytesIO(baseline(folder, size))) as theirs,
        ):
            same = np.array_equal(ours.read(1), theirs.read(1), equal_nan=True)
        times: tuple[list[float], list[float]] = ([], [])
        for _ in range(repeats):
            for run, seconds in zip((preview, lambda: baseline(folder, size)), times, strict=True):
                close_datasets()
                start = time.perf_counter()
                run()
                seconds.append(time.perf_counter() - start)
        http.close()
        db.dispose()
    t_ours, t_base = statistics.median(times[0]), statistics.median(times[1])
    table = Table(
        title=f"{size} x {size} px NDVI preview (FLOAT32 GeoTIFF) of a local BYOC COG, "
        f"medians of {repeats} alternating runs"
    )
    for column in ("workload", "seconds (median)", "vs baseline", "same pixels"):
        table.add_column(column, justify="left" if column == "workload" else "right")
    table.add_row("hand-written rasterio + numpy", f"{t_base:.3f}", "1.00", "")
    table.add_row(
        "eobatch POST /api/v1/process",
        f"{t_ours:.3f}",
        f"{t_ours / t_base:.2f}",
        "yes" if same else "[red]NO[/]",
    )
    console.print(table)


if __name__ == "__main__":
    main()
