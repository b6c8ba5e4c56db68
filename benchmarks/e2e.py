"""End to end: the real service against a hand-written rasterio + numpy pipeline, same features.

The collection: two Sentinel-2-like UTM 33N tiles (overlapping by 10 km) x 4 dates x 4 bands
(B02, B03, B04, B08) of UINT16 COGs at 10 m with overviews, some dates cut by a swath edge (no
data west of a slanted line), as a BYOC collection in a local-folder bucket. Generated once and
cached (`--cache`).

Workloads (NDVI, FLOAT32, mostRecent, COG output, ZSTD as the service's default):
- big:   the tiles of LAEA grid 7 at 20 m (1000 x 1000 px) over an area reaching past the data;
- small: 500 GeoPackage features of 2 km at 20 m (100 x 100 px) inside the data;
- large: the big workload at 10 m (2000 x 2000 px), run on 2 and on 1 worker (and the baseline
  on 2 and 1 processes) for the scaling figure: enough work per task that a task's fixed latency
  (start, analysis, end) stays small. The hand-written pipeline's own scaling is printed beside
  the service's: it is what this machine allows (two vCPUs share caches and memory bandwidth).

eobatch: `eobatch serve` (SQLite, local-folder buckets, a LocalCluster of `--workers` processes)
in its own process; a task is created, started, and timed from the start request until the
moment it became DONE (its lastUpdated; analysis included). The baseline, written as a careful
rasterio user would: the same feature grids (read from the delivered files), per scene in
priority order only the window of the grid the scene's bounds touch and only while a pixel
there is still empty, per band a WarpedVRT from the overview nearest the output resolution
(looked up once per file), nearest neighbour, the same 0.001 px transformer tolerance,
first-valid mosaicking, NDVI in float64 stored as float32, and a COG of the same profile (blocks,
overviews, compression),
in a process pool of the same size. Runs alternate (service, baseline, service, ...); every
output pixel of the service must equal the baseline's, but for nearest-neighbour ties (a pixel
centre within 2 x 0.001 px of a source pixel edge, where the two warps' interpolated
transformers may round to either side; the table counts them, see `compare_pixels`).

Run: python benchmarks/e2e.py [--smoke] [--runs N] [--workload big|small|all]
     [--scaling large|big|none]
Goals: eobatch / baseline <= 1.05 on 1000-px features, <= 1.5 on 100-px features; >= 1.85 x
from 1 to 2 workers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

import httpx
import numpy as np
import pyogrio
import rasterio
import shapely
from _signin import sign_in  # benchmarks/_signin.py, beside this script
from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.io import MemoryFile
from rasterio.shutil import copy as gdal_copy
from rasterio.vrt import WarpedVRT
from rasterio.warp import Resampling, transform_bounds
from rasterio.windows import Window
from rich.console import Console
from rich.table import Table

from eobatch.accounts import create_account
from eobatch.config import Settings
from eobatch.store import Database

BANDS = ("B02", "B03", "B04", "B08")
EPSG = 32633
ORIGIN = (399960.0, 5350020.0)  # upper-left corner of the western tile
TILES = 2  # the eastern one starts at 80 % of the western one's width (10 km overlap at 5000 px)
DATES = tuple(datetime(2024, 6, 1, 10, 5, tzinfo=UTC) + timedelta(days=10 * d) for d in range(4))
# Swath edges: on these (tile, date) pairs the west of a slanted line has no data.
SWATH_CUT = {(0, 0): 0.55, (1, 1): 0.3, (1, 3): 0.65, (0, 2): 0.2}
NDVI = """//VERSION=3
function setup() {
  return { input: ["B04", "B08", "dataMask"], output: { bands: 1, sampleType: "FLOAT32" } };
}
function evaluatePixel(s) {
  if (s.dataMask === 0) return [NaN];
  return [(s.B08 - s.B04) / (s.B08 + s.B04)];
}
"""
TOLERANCE_PX = 0.001  # the service's WARP_TOLERANCE_PX
console = Console()


@dataclass(frozen=True)
class Size:
    tile_px: int  # tile width and height at 10 m
    big_features: int  # approximate number of 20 km features
    small_features: int  # 2 km features


FULL = Size(tile_px=5000, big_features=19, small_features=500)
SMOKE = Size(tile_px=600, big_features=2, small_features=6)


# -- the collection ------------------------------------------------------------------------------


def tile_name(tile: int, date: int) -> str:
    return f"T{tile}_{DATES[date]:%Y%m%d}"


def band_values(band: str, date: int, rows: np.ndarray, cols: np.ndarray, x0: float) -> np.ndarray:
    """Smooth DN in 1..10000 from UTM coordinates, so overlapping tiles agree where they meet."""
    x = x0 + cols * 10.0
    y = rows * 10.0
    phase = 0.7 * date + BANDS.index(band)
    field = np.sin(x / 610.0 + phase) * np.cos(y / 470.0 - phase) + 0.3 * np.sin((x + y) / 230.0)
    base = {"B02": 400.0, "B03": 700.0, "B04": 900.0, "B08": 2600.0}[band]
    return np.clip(np.rint(base * (1 + 0.15 * date) + 350.0 * field), 1, 10000).astype(np.uint16)


def write_collection(folder: Path, size: Size) -> None:
    marker = folder / f"complete-{size.tile_px}"
    if marker.exists():
        return
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    n = size.tile_px
    rows, cols = np.mgrid[0:n, 0:n]
    with console.status("") as status:
        for tile, (x0, y0) in enumerate(tile_origins(size)):
            transform = Affine(10, 0, x0, 0, -10, y0)
            for date in range(len(DATES)):
                cut = SWATH_CUT.get((tile, date))
                # No data west of a line slanting from (cut - 0.1) at the top to (cut + 0.1).
                nodata = cols < (cut - 0.1 + 0.2 * rows / n) * n if cut is not None else None
                for band in BANDS:
                    status.update(f"writing the collection: {tile_name(tile, date)} {band}")
                    values = band_values(band, date, rows, cols, x0)
                    if nodata is not None:
                        values[nodata] = 0
                    path = folder / tile_name(tile, date) / f"{band}.tif"
                    path.parent.mkdir(exist_ok=True)
                    _write_cog(path, values, transform)
    marker.touch()


def _write_cog(path: Path, data: np.ndarray, transform: Affine) -> None:
    profile = {
        "driver": "GTiff",
        "width": data.shape[1],
        "height": data.shape[0],
        "count": 1,
        "dtype": "uint16",
        "crs": f"EPSG:{EPSG}",
        "transform": transform,
        "nodata": 0,
    }
    with MemoryFile() as memory:
        with memory.open(**profile) as dst:
            dst.write(data, 1)
        with memory.open() as src:
            gdal_copy(
                src,
                str(path),
                driver="COG",
                compress="DEFLATE",
                blocksize=512,
                overview_resampling="nearest",
            )


def tile_origins(size: Size) -> list[tuple[float, float]]:
    step = 0.8 * size.tile_px * 10.0
    return [(ORIGIN[0] + t * step, ORIGIN[1]) for t in range(TILES)]


def data_bounds(size: Size) -> tuple[float, float, float, float]:
    span = size.tile_px * 10.0
    (x0, y0), (x1, _) = tile_origins(size)[0], tile_origins(size)[-1]
    return x0, y0 - span, x1 + span, y0


def big_aoi(size: Size) -> list[float]:
    """A lon/lat bbox over the data, reaching past its southern and eastern edges."""
    minx, miny, maxx, maxy = data_bounds(size)
    if size is SMOKE:
        box = (minx + 500, miny + 500, maxx - 3000, maxy - 2500)
    else:  # about 19 cells of 20 km
        box = (minx + 16000, miny - 4000, maxx + 4000, maxy - 9000)
    to_wgs = Transformer.from_crs(EPSG, 4326, always_xy=True)
    lons, lats = to_wgs.transform(
        [box[0], box[2], box[0], box[2]], [box[1], box[1], box[3], box[3]]
    )
    return [min(lons), min(lats), max(lons), max(lats)]


def write_small_features(path: Path, size: Size) -> None:
    """`size.small_features` squares of 2 km (100 px at 20 m) in LAEA, inside the data."""
    minx, miny, maxx, maxy = data_bounds(size)
    to_laea = Transformer.from_crs(EPSG, 3035, always_xy=True)
    cx, cy = to_laea.transform((minx + maxx) / 2, (miny + maxy) / 2)
    per_row = int(np.ceil(np.sqrt(size.small_features)))
    step = 2000.0 if size is SMOKE else 2100.0
    boxes = []
    for i in range(size.small_features):
        x = cx - per_row * step / 2 + (i % per_row) * step
        y = cy - per_row * step / 2 + (i // per_row) * step
        x, y = round(x / 20) * 20, round(y / 20) * 20
        boxes.append(shapely.box(x, y, x + 2000, y + 2000))
    ids = np.arange(1, len(boxes) + 1)
    pyogrio.raw.write(
        path,
        geometry=np.array(shapely.to_wkb(np.array(boxes, dtype=object)), dtype=object),
        field_data=[
            ids,
            np.array([f"f{i}" for i in ids], dtype=object),
            np.full(len(ids), 100),
            np.full(len(ids), 100),
        ],
        fields=["id", "identifier", "width", "height"],
        layer="features",
        driver="GPKG",
        geometry_type="Polygon",
        crs="EPSG:3035",
        layer_options={"FID": "id"},
    )


# -- the service -----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Service:
    """`eobatch serve` with `workers` worker processes on its own data dir; the collection's
    folder linked in as the bucket `bench-data`."""

    def __init__(
        self, root: Path, collection: Path, workers: int, size: Size, threads: int | None = None
    ) -> None:
        self.root = root
        self.data_dir = root / f"service-{workers}"
        buckets = self.data_dir / "buckets"
        buckets.mkdir(parents=True)
        (buckets / "bench-data").symlink_to(collection, target_is_directory=True)
        (buckets / "bench-out").mkdir()
        settings = Settings(data_dir=self.data_dir)
        db = Database(settings.resolved_database_url)
        db.migrate()
        creds = create_account(db, "bench", 1e9)
        db.dispose()
        self.port = _free_port()
        env = {
            **os.environ,
            "EOBATCH_WORKERS": str(workers),
            "EOBATCH_DATA_DIR": str(self.data_dir),
        }
        if threads is not None:
            env["EOBATCH_OUTPUT_THREADS"] = str(threads)
        self.log = open(root / f"serve-{workers}.log", "w")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "eobatch.cli", "serve", "--port", str(self.port)],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=60)
        self._wait_healthy()
        sign_in(self.http, creds)
        self.collection_id = self._register(size)
        self.workers = workers
        self.runs = 0

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"eobatch serve exited; see {self.log.name}")
            try:
                if self.http.get("/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"eobatch serve did not come up; see {self.log.name}")

    def _register(self, size: Size) -> str:
        made = self.http.post(
            "/api/v1/byoc/collections", json={"name": "bench", "s3Bucket": "bench-data"}
        )
        made.raise_for_status()
        collection_id = made.json()["data"]["id"]
        for tile in range(TILES):
            for date, when in enumerate(DATES):
                self.http.post(
                    f"/api/v1/byoc/collections/{collection_id}/tiles",
                    json={
                        "path": f"{tile_name(tile, date)}/(BAND).tif",
                        "sensingTime": when.isoformat(),
                    },
                ).raise_for_status()
        return collection_id

    def run(self, workload: str, size: Size) -> tuple[float, Path]:
        """Create and start a task; seconds from the start request to DONE, and its outputs."""
        self.runs += 1
        url = f"s3://bench-out/{workload}-{self.runs}"
        data = [
            {"type": f"byoc-{self.collection_id}", "dataFilter": {"mosaickingOrder": "mostRecent"}}
        ]
        if workload in ("big", "large"):
            bounds = {
                "bbox": big_aoi(size),
                "properties": {"crs": "http://www.opengis.net/def/crs/EPSG/0/4326"},
            }
            resolution = 20.0 if workload == "big" else 10.0
            grid = {"type": "tiling-grid", "id": 7, "resolution": resolution}
        else:
            bounds = {
                "bbox": list(data_bounds(size)),
                "properties": {"crs": f"http://www.opengis.net/def/crs/EPSG/0/{EPSG}"},
            }
            grid = {
                "type": "geopackage",
                "features": {"s3": {"url": "s3://bench-data/features.gpkg"}},
            }
        body = {
            "processRequest": {
                "input": {"bounds": bounds, "data": data},
                "output": {
                    "responses": [{"identifier": "default", "format": {"type": "image/tiff"}}]
                },
                "evalscript": NDVI,
            },
            "input": grid,
            "output": {"type": "raster", "cogOutput": True, "delivery": {"s3": {"url": url}}},
        }
        created = self.http.post("/api/v2/batch/process", json=body)
        created.raise_for_status()
        task_id = created.json()["id"]
        start = time.time()
        self.http.post(f"/api/v2/batch/process/{task_id}/start").raise_for_status()
        # The end is the task's own lastUpdated (set when it became DONE), so a slow poll that
        # takes no CPU from the workers still measures to the millisecond.
        while True:
            task = self.http.get(f"/api/v2/batch/process/{task_id}").json()
            if task["status"] in ("DONE", "FAILED", "STOPPED"):
                break
            time.sleep(0.5)
        done = datetime.fromisoformat(task["lastUpdated"].replace("Z", "+00:00"))
        elapsed = done.timestamp() - start
        if task["status"] != "DONE" or task.get("error"):
            raise RuntimeError(f"task ended {task['status']}: {task.get('error')}")
        return (
            elapsed,
            self.data_dir / "buckets" / "bench-out" / f"{workload}-{self.runs}" / task_id,
        )

    def pause(self) -> None:
        """Freeze the service's processes (server, scheduler, workers) while another service
        is timed, so an idle service takes no CPU from it."""
        os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.process.pid, signal.SIGCONT)

    def close(self) -> None:
        self.http.close()
        if self.process.poll() is None:
            self.resume()
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
        self.log.close()


# -- the hand-written pipeline -------------------------------------------------------------------


@dataclass(frozen=True)
class Grid:
    name: str
    crs: str
    transform: Affine
    width: int
    height: int


def grids_of(outputs: Path) -> list[Grid]:
    """The feature grids of a service run, read from its delivered files."""
    grids = []
    for path in sorted(outputs.glob("*/default.tiff")):
        with rasterio.open(path) as tiff:
            grids.append(
                Grid(path.parent.name, tiff.crs.to_wkt(), tiff.transform, tiff.width, tiff.height)
            )
    return grids


def baseline_feature(args: tuple[Grid, Path, Path]) -> None:
    """Mosaic B04/B08 of the scenes newest first onto the grid, NDVI, write a COG. Written as
    a careful rasterio user would: a scene is read only where its bounds meet the grid and some
    pixel there is still empty, and what each file needs (overview level, bounds) is looked up
    once per process."""
    grid, collection, out = args
    shape = (grid.height, grid.width)
    b04 = np.full(shape, np.nan, np.float32)
    b08 = np.full(shape, np.nan, np.float32)
    filled = np.zeros(shape, bool)
    dst_crs = CRS.from_wkt(grid.crs)
    resolution = abs(grid.transform.a)
    scenes = [tile_name(t, d) for d in reversed(range(len(DATES))) for t in range(TILES)]
    for scene in scenes:
        if filled.all():
            break
        paths = {band: collection / scene / f"{band}.tif" for band in ("B04", "B08")}
        level, bounds = _file_info(str(paths["B04"]), grid.crs, resolution)
        window = _grid_window(grid, bounds)
        if window is None or filled[window].all():
            continue
        values = {}
        for band, path in paths.items():
            with (
                rasterio.open(path, overview_level=level) as src,
                WarpedVRT(
                    src,
                    crs=dst_crs,
                    transform=grid.transform,
                    width=grid.width,
                    height=grid.height,
                    resampling=Resampling.nearest,
                    src_nodata=0,
                    nodata=0,
                    tolerance=TOLERANCE_PX,
                ) as vrt,
            ):
                raw = vrt.read(1, window=Window.from_slices(*window))
            band_values = raw.astype(np.float32)
            band_values[raw == 0] = np.nan
            values[band] = band_values
        take = np.isfinite(values["B04"]) & np.isfinite(values["B08"]) & ~filled[window]
        b04[window][take] = values["B04"][take]
        b08[window][take] = values["B08"][take]
        filled[window] |= take
    if not filled.any():
        return
    with np.errstate(invalid="ignore", divide="ignore"):
        ndvi = ((b08.astype(np.float64) - b04) / (b08.astype(np.float64) + b04)).astype(np.float32)
    ndvi[~filled] = np.nan
    target = out / grid.name / "default.tiff"
    target.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(
        target,
        "w",
        driver="COG",
        width=grid.width,
        height=grid.height,
        count=1,
        dtype="float32",
        crs=dst_crs,
        transform=grid.transform,
        # the service's output profile: Sentinel Hub's default cogParameters (256 px blocks,
        # average overviews down to one block) and its ZSTD level 1 with a predictor
        compress="ZSTD",
        level=1,
        predictor=3,
        blocksize=256,
        overview_resampling="average",
    ) as dst:
        dst.write(ndvi, 1)


@cache
def _file_info(
    path: str, dst_wkt: str, resolution: float
) -> tuple[int | None, tuple[float, float, float, float]]:
    """A file's overview level for the output resolution and its bounds in the output CRS."""
    dst_crs = CRS.from_wkt(dst_wkt)
    with rasterio.open(path) as src:
        return _overview(src, dst_crs, resolution), transform_bounds(
            src.crs, dst_crs, *src.bounds, densify_pts=21
        )


def _grid_window(
    grid: Grid, bounds: tuple[float, float, float, float]
) -> tuple[slice, slice] | None:
    """The rows and columns of the grid that `bounds` (in the grid's CRS) touch; None: none."""
    inverse = ~grid.transform
    cols, rows = inverse * (np.array([bounds[0], bounds[2]]), np.array([bounds[3], bounds[1]]))
    r0, r1 = max(int(np.floor(min(rows))), 0), min(int(np.ceil(max(rows))), grid.height)
    c0, c1 = max(int(np.floor(min(cols))), 0), min(int(np.ceil(max(cols))), grid.width)
    if r0 >= r1 or c0 >= c1:
        return None
    return slice(r0, r1), slice(c0, c1)


def _overview(src: rasterio.DatasetReader, dst_crs: CRS, resolution: float) -> int | None:
    """The coarsest overview not coarser than the output (gdalwarp's -ovr AUTO), the source
    pixel measured in the output CRS at the file's centre."""
    to_dst = Transformer.from_crs(src.crs, dst_crs, always_xy=True)
    cx, cy = src.transform * (src.width / 2, src.height / 2)
    (x0, x1), (y0, y1) = to_dst.transform([cx, cx + src.transform.a], [cy, cy])
    ratio = resolution / float(np.hypot(x1 - x0, y1 - y0))
    level = None
    for i, factor in enumerate(src.overviews(1)):
        if factor <= ratio * (1 + 1e-6):
            level = i
    return level


def run_baseline(grids: list[Grid], collection: Path, out: Path, workers: int) -> float:
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(baseline_feature, [(g, collection, out) for g in grids], chunksize=1))
    return time.perf_counter() - start


@dataclass(frozen=True)
class Pixels:
    """How the service's pixels compare with the baseline's."""

    same: bool  # every pixel equal, but for nearest-neighbour ties
    ties: int  # pixels whose centre lies on a source pixel edge, rounded to the other side
    differ: int  # any other differing pixel: a real difference


def compare_pixels(service_out: Path, baseline_out: Path, collection: Path) -> Pixels:
    """Every pixel of the service's outputs against the baseline's. Both warp with GDAL, but the
    service warps only the window of the grid a scene can still fill, so its approximate
    transformer interpolates over other spans than the baseline's whole-grid warp: the two agree
    within TOLERANCE_PX, and a pixel centre closer than that to a source pixel edge may take its
    nearest neighbour from either side. Such a tie is allowed when both values are one of the
    mosaicked values at the sides of that edge; every other difference counts."""
    ties = differ = 0
    service_files = sorted(service_out.glob("*/default.tiff"))
    for path in service_files:
        other = baseline_out / path.parent.name / "default.tiff"
        if not other.exists():
            differ += 1
            continue
        with rasterio.open(path) as a, rasterio.open(other) as b:
            x, y = a.read(1), b.read(1)
            grid = Grid(path.parent.name, a.crs.to_wkt(), a.transform, a.width, a.height)
        unequal = ~((x == y) | (np.isnan(x) & np.isnan(y)))
        rows, cols = np.nonzero(unequal)
        if rows.size:
            tie = _ties(grid, rows, cols, (x[rows, cols], y[rows, cols]), collection)
            ties += int(tie.sum())
            differ += int((~tie).sum())
    extra = len(list(baseline_out.glob("*/default.tiff"))) != len(service_files)
    return Pixels(same=differ == 0 and not extra, ties=ties, differ=differ)


def _ties(
    grid: Grid,
    rows: np.ndarray,
    cols: np.ndarray,
    values: tuple[np.ndarray, np.ndarray],
    collection: Path,
) -> np.ndarray:
    """For output pixels (rows, cols): whether each lies within 2 x TOLERANCE_PX of a source
    pixel edge and both `values` are NDVI values of the mosaic just either side of it."""
    dst_crs = CRS.from_wkt(grid.crs)
    to_utm = Transformer.from_crs(dst_crs, EPSG, always_xy=True)
    x, y = to_utm.transform(*(grid.transform * (cols + 0.5, rows + 0.5)))
    x, y = np.asarray(x), np.asarray(y)
    scenes = [tile_name(t, d) for d in reversed(range(len(DATES))) for t in range(TILES)]
    eps = 2 * TOLERANCE_PX
    offsets = [(dx, dy) for dx in (-eps, eps) for dy in (-eps, eps)]
    near_edge = np.zeros(x.shape, bool)
    # per offset: B04 and B08 of the first scene with data there (0: none yet), newest first
    found = {o: {b: np.zeros(x.shape) for b in ("B04", "B08")} for o in offsets}
    for scene in scenes:
        for band in ("B04", "B08"):
            path = collection / scene / f"{band}.tif"
            with rasterio.open(path) as full:
                level = _overview(full, dst_crs, abs(grid.transform.a))
            with rasterio.open(path, overview_level=level) as src:
                fx, fy = ~src.transform * (x, y)
                near_edge |= np.minimum(np.abs(fx - np.round(fx)), np.abs(fy - np.round(fy))) < eps
                c0, r0 = int(np.floor(fx.min() - 1)), int(np.floor(fy.min() - 1))
                c1, r1 = int(np.floor(fx.max() + 2)), int(np.floor(fy.max() + 2))
                window = (
                    (max(r0, 0), max(min(r1, src.height), 0)),
                    (max(c0, 0), max(min(c1, src.width), 0)),
                )
                data = src.read(1, window=window)
                for dx, dy in offsets:
                    c = np.floor(fx + dx).astype(int) - window[1][0]
                    r = np.floor(fy + dy).astype(int) - window[0][0]
                    inside = (c >= 0) & (c < data.shape[1]) & (r >= 0) & (r < data.shape[0])
                    sample = np.zeros(x.shape)
                    sample[inside] = data[r[inside], c[inside]]
                    found[(dx, dy)][f"{band}_{scene}"] = sample
        for o in offsets:  # first valid, as both pipelines mosaic
            b04, b08 = found[o].pop(f"B04_{scene}"), found[o].pop(f"B08_{scene}")
            take = (found[o]["B04"] == 0) & (b04 > 0) & (b08 > 0)
            found[o]["B04"][take], found[o]["B08"][take] = b04[take], b08[take]
    candidates = []
    for o in offsets:
        b04, b08 = found[o]["B04"].astype(np.float32), found[o]["B08"].astype(np.float32)
        with np.errstate(invalid="ignore", divide="ignore"):
            ndvi = ((b08.astype(np.float64) - b04) / (b08.astype(np.float64) + b04)).astype(
                np.float32
            )
        ndvi[b04 == 0] = np.nan
        candidates.append(ndvi)
    stack = np.stack(candidates)
    ok = near_edge
    for v in values:
        ok &= ((stack == v) | (np.isnan(stack) & np.isnan(v))).any(axis=0)
    return ok


# -- the comparison ------------------------------------------------------------------------------


@dataclass
class Comparison:
    workload: str
    workers: int
    features: int
    ours: list[float]
    theirs: list[float]
    pixels: Pixels

    def row(self) -> list[str]:
        return [
            self.workload,
            str(self.workers),
            str(self.features),
            f"{min(self.ours):.1f} / {statistics.median(self.ours):.1f}",
            f"{min(self.theirs):.1f} / {statistics.median(self.theirs):.1f}",
            f"{statistics.median(self.ours) / statistics.median(self.theirs):.2f} x",
            ("yes" if self.pixels.same else f"NO: {self.pixels.differ} differ")
            + (f" ({self.pixels.ties} ties)" if self.pixels.ties else ""),
        ]


def compare(
    services: list[Service], workload: str, size: Size, collection: Path, root: Path, runs: int
) -> list[Comparison]:
    """Per service, alternating runs of it and of the baseline (with as many processes as it
    has workers) on the same features, after a warm-up run of each service (imports and caches
    on the workers; it also gives the feature grids). With several services, the rounds go
    through all of them in turn, the others paused, so that a slower stretch of a shared
    machine falls on every side alike."""
    grids = []
    for service in services:
        service.resume()
        _, out = service.run(workload, size)
        service.pause()
        grids = grids_of(out)
    baseline_out = root / f"baseline-{workload}"
    ours: dict[int, list[float]] = {id(s): [] for s in services}
    theirs: dict[int, list[float]] = {id(s): [] for s in services}
    pixels: dict[int, Pixels] = {}
    for round_ in range(runs):
        for service in services:
            service.resume()
            seconds, out = service.run(workload, size)
            service.pause()
            ours[id(service)].append(seconds)
            theirs[id(service)].append(
                run_baseline(grids, collection, baseline_out, service.workers)
            )
            if round_ == runs - 1:
                pixels[id(service)] = compare_pixels(out, baseline_out, collection)
    return [
        Comparison(workload, s.workers, len(grids), ours[id(s)], theirs[id(s)], pixels[id(s)])
        for s in services
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a tiny collection: seconds")
    parser.add_argument("--runs", type=int, default=None, help="alternating runs per side")
    parser.add_argument("--workload", choices=("big", "small", "all"), default="all")
    parser.add_argument(
        "--scaling",
        choices=("large", "big", "none"),
        default="large",
        help="the workload also run on 1 worker, for the scaling figure (none: skip)",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        help="where the generated collection is kept",
        default=Path(tempfile.gettempdir()) / "eobatch-e2e-bench",
    )
    args = parser.parse_args()
    size = SMOKE if args.smoke else FULL
    runs = args.runs or (1 if args.smoke else 3)
    collection = args.cache / f"collection-{size.tile_px}"
    write_collection(collection, size)
    if not (collection / "features.gpkg").exists():
        write_small_features(collection / "features.gpkg", size)
    workloads = ["big", "small"] if args.workload == "all" else [args.workload]
    if args.scaling != "none" and args.scaling not in workloads:
        workloads.append(args.scaling)
    results: list[Comparison] = []
    with tempfile.TemporaryDirectory(prefix="eobatch-e2e-") as tmp:
        root = Path(tmp)
        services = [Service(root, collection, 2, size)]
        try:
            if args.scaling != "none":
                # One GDAL thread per encode, as each of the two workers gets on two cores: the
                # figure is how the service scales with workers, not with GDAL's threads.
                services.append(Service(root, collection, 1, size, threads=1))
            for service in services:
                service.pause()
            for workload in workloads:
                console.print(f"running {workload} ...")
                scaled = workload == args.scaling
                results += compare(
                    services if scaled else services[:1], workload, size, collection, root, runs
                )
        finally:
            for service in services:
                service.close()
    label = "smoke" if args.smoke else "full"
    table = Table(title=f"end to end, {label} size, {runs} alternating run(s) per side")
    for column in (
        "workload",
        "workers",
        "features",
        "eobatch s (min / median)",
        "baseline s (min / median)",
        "eobatch / baseline",
        "same pixels",
    ):
        table.add_column(column, justify="left" if column == "workload" else "right")
    for result in results:
        table.add_row(*result.row())
    console.print(table)
    if args.scaling != "none":
        two, one = (
            next(r for r in results if (r.workload, r.workers) == (args.scaling, n)) for n in (2, 1)
        )
        ours = statistics.median(one.ours) / statistics.median(two.ours)
        theirs = statistics.median(one.theirs) / statistics.median(two.theirs)
        console.print(
            f"scaling from 1 to 2 workers ({args.scaling}, medians): eobatch {ours:.2f} x, "
            f"the hand-written pipeline from 1 to 2 processes {theirs:.2f} x on this machine "
            f"(eobatch reaches {ours / theirs:.0%} of it)"
        )
    if not all(r.pixels.same for r in results):
        raise SystemExit("the service's pixels differ from the baseline's")


if __name__ == "__main__":
    main()
