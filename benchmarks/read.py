"""Reading a feature from object storage: eobatch's reader against a hand-written rasterio read.

Four UINT16 COG bands (10 m, UTM 33N, 3000 x 3000 px, 512 px blocks, DEFLATE) sit in a bucket of a
moto S3 server on loopback. A 2000 x 2000 px feature at 10 m in LAEA (EPSG:3035) lies inside them.

- eobatch: `read_mosaic` of the one scene onto the feature grid (what a worker does for SIMPLE).
- baseline: per band, `rasterio.open('/vsis3/...')` and a `WarpedVRT` onto the same grid, read,
  with the same GDAL options, into what `read_mosaic` gives a script (float32, NaN where no
  data, the mask of pixels every band covers): the minimal correct hand-written read of the same
  windows.

Each is timed cold (a fresh GDAL block cache and no file kept open), the two alternating run by
run in one process; the ratio is of the medians, which the machine's load moves less than a
single best run.
Run: python benchmarks/read.py [--repeats N] [--smoke]   (goal: eobatch / baseline <= 1.1)
"""

from __future__ import annotations

import argparse
import os
import statistics
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
from eobatch.sources.datasets import close_datasets
from eobatch.sources.mosaic import WARP_TOLERANCE_PX
from eobatch.storage import open_location

BANDS = ("B02", "B03", "B04", "B08")
KEY, SECRET, BUCKET = "bench", "bench", "read-bench"
ORIGIN = (440000.0, 5350000.0)  # UTM 33N, upper left


def write_cogs(folder: Path, size: int) -> None:
    rng = np.random.default_rng(1)
    profile = {
        "driver": "COG",
        "width": size,
        "height": size,
        "count": 1,
        "dtype": "uint16",
        "crs": "EPSG:32633",
        "transform": Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1]),
        "blocksize": 512,
        "compress": "DEFLATE",
        "nodata": 0,
    }
    for band in BANDS:
        data = rng.integers(1, 10000, (size, size), dtype=np.uint16)
        with rasterio.open(folder / f"{band}.tif", "w", **profile) as dst:
            dst.write(data, 1)


def feature_grid(size: int) -> PixelGrid:
    """A square of 2/3 the files' size at 10 m in EPSG:3035, centred in the files."""
    from pyproj import Transformer

    cx, cy = ORIGIN[0] + size * 5, ORIGIN[1] - size * 5
    x, y = Transformer.from_crs(32633, 3035, always_xy=True).transform(cx, cy)
    px = 2 * size // 3
    left, top = round(x - px * 5, -1), round(y + px * 5, -1)
    return PixelGrid(3035, Affine(10, 0, left, 0, -10, top), px, px)


def baseline(
    paths: list[str], grid: PixelGrid, options: dict[str, str]
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """What `read_mosaic` gives a script, by hand: per band float32 with NaN where the file has
    no data, and the mask of pixels where every band has data."""
    out = {}
    mask = np.ones((grid.height, grid.width), dtype=bool)
    with rasterio.Env(**options):
        for band, path in zip(BANDS, paths, strict=True):
            with (
                rasterio.open(path) as src,
                WarpedVRT(
                    src,
                    crs=CRS.from_epsg(grid.epsg),
                    transform=grid.transform,
                    width=grid.width,
                    height=grid.height,
                    resampling=Resampling.nearest,
                    src_nodata=0,
                    nodata=0,
                    tolerance=WARP_TOLERANCE_PX,
                ) as vrt,
            ):
                raw = vrt.read(1)
            values = raw.astype(np.float32)
            values[raw == 0] = np.nan
            mask &= raw != 0
            out[band] = values
    return out, mask.astype(np.uint8)


def alternate(repeats: int, first, second) -> tuple[list[float], list[float]]:  # type: ignore[no-untyped-def]
    """Seconds of each run of `first` and `second`, taking turns, each started cold."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for run, seconds in zip((first, second), times, strict=True):
            close_datasets()  # eobatch keeps files open between features: not between runs
            with rasterio.Env(GDAL_CACHEMAX=64):  # drop cached blocks between runs
                pass
            start = time.perf_counter()
            run()
            seconds.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="alternating runs of each")
    parser.add_argument("--smoke", action="store_true", help="600 px files, one run: seconds")
    args = parser.parse_args()
    size, repeats = (600, 1) if args.smoke else (3000, args.repeats)
    console = Console()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=KEY,
            aws_secret_access_key=SECRET,
            region_name="us-east-1",
        )
        s3.create_bucket(Bucket=BUCKET)
        with tempfile.TemporaryDirectory() as tmp:
            console.print(f"[dim]writing 4 COGs of {size} x {size} px and uploading them ...[/]")
            write_cogs(Path(tmp), size)
            for band in BANDS:
                s3.upload_file(str(Path(tmp) / f"{band}.tif"), BUCKET, f"tile/{band}.tif")
            settings = Settings(
                data_dir=Path(tmp) / "data",
                jwt_secret="x" * 40,
                s3_endpoint=endpoint,
                s3_access_key=KEY,
                s3_secret_key=SECRET,
                region="us-east-1",
            )
            location = open_location({"s3": {"url": f"s3://{BUCKET}"}}, settings, "bench")
            options = location.gdal_options()
            paths = [location.gdal_path(f"tile/{band}.tif") for band in BANDS]
            scene = Scene(
                "tile",
                datetime(2024, 6, 1, tzinfo=UTC),
                None,
                {b: BandSource(p, 1, 0) for b, p in zip(BANDS, paths, strict=True)},
                None,
                options,
            )
            grid = feature_grid(size)
            ours, mask = read_mosaic([scene], list(BANDS), grid)
            theirs, their_mask = baseline(paths, grid, options)
            same = np.array_equal(mask, their_mask) and all(
                np.array_equal(ours[b], theirs[b], equal_nan=True) for b in BANDS
            )
            ours_s, base_s = alternate(
                repeats,
                lambda: read_mosaic([scene], list(BANDS), grid),
                lambda: baseline(paths, grid, options),
            )
            t_ours, t_base = statistics.median(ours_s), statistics.median(base_s)
    finally:
        server.stop()
    table = Table(
        title=f"{grid.width} x {grid.height} px feature, 4 UINT16 COG bands on "
        f"loopback S3, medians of {repeats} alternating runs"
    )
    for column in ("reader", "seconds (median)", "Mpx/s (x4 bands)", "vs baseline", "same pixels"):
        table.add_column(column, justify="left" if column == "reader" else "right")
    mpx = grid.width * grid.height / 1e6
    table.add_row("hand-written WarpedVRT", f"{t_base:.3f}", f"{mpx / t_base:.1f}", "1.00", "")
    table.add_row(
        "eobatch read_mosaic",
        f"{t_ours:.3f}",
        f"{mpx / t_ours:.1f}",
        f"{t_ours / t_base:.2f}",
        "yes" if same else "[red]NO[/]",
    )
    console.print(table)


if __name__ == "__main__":
    main()
