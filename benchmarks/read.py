"""Reading a feature from object storage: eobatch's reader against a hand-written rasterio read.

Four UINT16 COG bands (10 m, UTM 33N, 3000 x 3000 px, 512 px blocks, DEFLATE) sit in a bucket of a
moto S3 server on loopback. A 2000 x 2000 px feature at 10 m in LAEA (EPSG:3035) lies inside them.

- eobatch: `read_mosaic` of the one scene onto the feature grid (what a worker does for SIMPLE).
- baseline: per band, `rasterio.open('/vsis3/...')` and a `WarpedVRT` onto the same grid, read,
  with the same GDAL options: the minimal correct hand-written read of the same windows.

Each is timed cold (a fresh GDAL block cache) as best of N runs, side by side in one process.
Run: python benchmarks/read.py [repeats]   (goal: eobatch / baseline <= 1.1)
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

import boto3
import numpy as np
import rasterio
from affine import Affine
from moto.server import ThreadedMotoServer
from rasterio.crs import CRS
from rasterio.vrt import WarpedVRT
from rasterio.warp import Resampling
from rich.console import Console
from rich.table import Table

from eobatch.config import Settings
from eobatch.sources import BandSource, PixelGrid, Scene, read_mosaic
from eobatch.sources.mosaic import WARP_TOLERANCE_PX
from eobatch.storage import open_location

BANDS = ("B02", "B03", "B04", "B08")
KEY, SECRET, BUCKET = "bench", "bench", "read-bench"
SIZE, ORIGIN = 3000, (440000.0, 5350000.0)  # UTM 33N, upper left


def write_cogs(folder: Path) -> None:
    rng = np.random.default_rng(1)
    profile = {
        "driver": "COG", "width": SIZE, "height": SIZE, "count": 1, "dtype": "uint16",
        "crs": "EPSG:32633", "transform": Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1]),
        "blocksize": 512, "compress": "DEFLATE", "nodata": 0,
    }  # fmt: skip
    for band in BANDS:
        data = rng.integers(1, 10000, (SIZE, SIZE), dtype=np.uint16)
        with rasterio.open(folder / f"{band}.tif", "w", **profile) as dst:
            dst.write(data, 1)


def feature_grid() -> PixelGrid:
    """2000 x 2000 px at 10 m in EPSG:3035, centred in the files."""
    from pyproj import Transformer

    cx, cy = ORIGIN[0] + SIZE * 5, ORIGIN[1] - SIZE * 5
    x, y = Transformer.from_crs(32633, 3035, always_xy=True).transform(cx, cy)
    left, top = round(x - 10000, -1), round(y + 10000, -1)
    return PixelGrid(3035, Affine(10, 0, left, 0, -10, top), 2000, 2000)


def baseline(paths: list[str], grid: PixelGrid, options: dict[str, str]) -> dict[str, np.ndarray]:
    out = {}
    with rasterio.Env(**options):
        for band, path in zip(BANDS, paths, strict=True):
            with rasterio.open(path) as src, WarpedVRT(
                src, crs=CRS.from_epsg(grid.epsg), transform=grid.transform, width=grid.width,
                height=grid.height, resampling=Resampling.nearest, src_nodata=0, nodata=0,
                tolerance=WARP_TOLERANCE_PX,
            ) as vrt:  # fmt: skip
                out[band] = vrt.read(1)
    return out


def best_of(repeats: int, run) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        with rasterio.Env(GDAL_CACHEMAX=64):  # drop cached blocks between runs
            pass
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main(repeats: int = 5) -> None:
    console = Console()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=KEY,
                          aws_secret_access_key=SECRET, region_name="us-east-1")  # fmt: skip
        s3.create_bucket(Bucket=BUCKET)
        with tempfile.TemporaryDirectory() as tmp:
            console.print("[dim]writing 4 COGs of 3000 x 3000 px and uploading them ...[/]")
            write_cogs(Path(tmp))
            for band in BANDS:
                s3.upload_file(str(Path(tmp) / f"{band}.tif"), BUCKET, f"tile/{band}.tif")
            settings = Settings(data_dir=Path(tmp) / "data", jwt_secret="x" * 40,
                                s3_endpoint=endpoint, s3_access_key=KEY, s3_secret_key=SECRET,
                                region="us-east-1")  # fmt: skip
            location = open_location({"s3": {"url": f"s3://{BUCKET}"}}, settings, "bench")
            options = location.gdal_options()
            paths = [location.gdal_path(f"tile/{band}.tif") for band in BANDS]
            scene = Scene("tile", datetime(2024, 6, 1, tzinfo=UTC), None,
                          {b: BandSource(p, 1, 0) for b, p in zip(BANDS, paths, strict=True)},
                          None, options)  # fmt: skip
            grid = feature_grid()
            ours, mask = read_mosaic([scene], list(BANDS), grid)
            theirs = baseline(paths, grid, options)
            same = all(
                np.array_equal(np.where(mask, ours[b], 0).astype(np.uint16), theirs[b])
                for b in BANDS
            )
            t_ours = best_of(repeats, lambda: read_mosaic([scene], list(BANDS), grid))
            t_base = best_of(repeats, lambda: baseline(paths, grid, options))
    finally:
        server.stop()
    table = Table(title=f"2000 x 2000 px feature, 4 UINT16 COG bands on loopback S3, best of "
                        f"{repeats}")  # fmt: skip
    for column in ("reader", "seconds", "Mpx/s (x4 bands)", "vs baseline", "same pixels"):
        table.add_column(column, justify="left" if column == "reader" else "right")
    mpx = grid.width * grid.height / 1e6
    table.add_row("hand-written WarpedVRT", f"{t_base:.3f}", f"{mpx / t_base:.1f}", "1.00", "")
    table.add_row("eobatch read_mosaic", f"{t_ours:.3f}", f"{mpx / t_ours:.1f}",
                  f"{t_ours / t_base:.2f}", "yes" if same else "[red]NO[/]")  # fmt: skip
    console.print(table)


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2]))
