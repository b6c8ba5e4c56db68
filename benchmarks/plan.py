"""Analysis at scale: features per second and peak memory of a whole task analysis.

Each workload is a real task in a SQLite store with local-folder buckets, analysed by
`analyse_task` exactly as the controller does it: read the input, plan the features, write
`featureManifest-<id>.gpkg` and insert the features into the store. Each runs in a fresh
process (with --smoke, all in this one); "peak MB" is its resident memory above what it held
before the analysis began, and "stall ms" the longest a thread waking every 10 ms (as the API's
would) waited past its time.

  (a) a 700 000-feature GeoPackage in 3 CRSs, with an AOI covering half of the features
  (b) grid 1 (UTM 10 km) over Europe, bbox -25,34,45,72
  (c) grid 0 (UTM 20 km) at 10 m over the world bbox: 1 287 197 features

Run: python benchmarks/plan.py [a b c] [--smoke]
(targets on a 2-core machine: (a) < 60 s, (b) < 30 s; every workload under 1024 MB of peak memory;
--smoke: small versions of the same workloads, a few seconds each)
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pyogrio
import shapely

from eobatch.accounts import create_account
from eobatch.config import Settings
from eobatch.lifecycle.analysis import analyse_task
from eobatch.lifecycle.tasks import create_task
from eobatch.sources.byoc import create_collection
from eobatch.store import Database
from eobatch.store.models import Task

SCRIPT = """//VERSION=3
function setup() { return { input: ["dataMask"], output: { bands: 1, sampleType: "UINT8" } }; }
function evaluatePixel(s) { return [s.dataMask]; }
"""
TARGET_S = {"a": 60.0, "b": 30.0, "c": None}
TARGET_MB = 1024.0
NAMES = {
    "a": "GeoPackage 700k features, 3 CRSs, AOI = half",
    "b": "grid 1 (10 km) over Europe -25,34,45,72",
    "c": "grid 0 (20 km) at 10 m over the world bbox",
}
SMOKE_NAMES = {
    "a": "GeoPackage 3k features, 3 CRSs, AOI = half",
    "b": "grid 1 (10 km) over 10,45,12,47",
    "c": "grid 0 (20 km) at 10 m over 0,40,10,50",
}
SMOKE_BBOX = {"b": [10, 45, 12, 47], "c": [0, 40, 10, 50]}
LAYERS = {  # table: (EPSG, lower-left corner, square size in CRS units)
    "parcels_utm33": (32633, (400_000.0, 5_000_000.0), 500.0),
    "parcels_laea": (3035, (3_000_000.0, 3_500_000.0), 500.0),
    "parcels_wgs84": (4326, (20.0, 60.0), 0.005),
}


def write_geopackage(path: Path, total: int) -> None:
    """`total` squares in 3 tables, 500 columns × n rows each, west to east."""
    counts = [total // 3, total - 2 * (total // 3), total // 3]
    for (table, (epsg, (x0, y0), size)), count in zip(LAYERS.items(), counts, strict=True):
        i = np.arange(count)
        col, row = i % 500, i // 500
        boxes = shapely.box(
            x0 + col * size, y0 + row * size, x0 + (col + 1) * size, y0 + (row + 1) * size
        )
        pyogrio.raw.write(
            path,
            geometry=shapely.to_wkb(boxes),
            field_data=[
                i + 1,
                np.array([f"{table}-{k}" for k in i + 1], dtype=object),
                np.full(count, 50),
                np.full(count, 50),
            ],
            fields=["id", "identifier", "width", "height"],
            layer=table,
            driver="GPKG",
            geometry_type="Polygon",
            crs=f"EPSG:{epsg}",
            append=path.exists(),
            layer_options={"FID": "id", "SPATIAL_INDEX": "NO"},
        )


def request(collection_id: str, workload: str, smoke: bool) -> dict:
    if workload == "a":
        # the western half of every table: 250 of the 500 columns
        parts = []
        rows = 2 if smoke else 500
        for epsg, (x0, y0), size in LAYERS.values():
            box = shapely.box(x0, y0, x0 + 249.5 * size, y0 + rows * size)
            parts.append((epsg, box))
        bounds = _lonlat_union(parts)
        source = {"type": "geopackage", "features": {"s3": {"url": "s3://in/parcels.gpkg"}}}
    else:
        bbox = [-25, 34, 45, 72] if workload == "b" else [-180, -90, 180, 90]
        bounds = {"bbox": SMOKE_BBOX[workload] if smoke else bbox}
        source = {"type": "tiling-grid", "id": 1 if workload == "b" else 0, "resolution": 10.0}
    return {
        "processRequest": {
            "input": {"bounds": bounds, "data": [{"type": f"byoc-{collection_id}"}]},
            "evalscript": SCRIPT,
            "output": {"responses": [{"identifier": "default", "format": {"type": "image/tiff"}}]},
        },
        "input": source,
        "output": {"type": "raster", "delivery": {"s3": {"url": "s3://out/run"}}},
    }


def _lonlat_union(parts: list[tuple[int, shapely.Geometry]]) -> dict:
    from eobatch.planning.aoi import reproject

    polygons = [reproject(box, epsg, 4326) for epsg, box in parts]
    return {"geometry": shapely.geometry.mapping(shapely.MultiPolygon(polygons))}


class PeakRSS:
    """Peak resident memory of this process while the block runs, and the longest a thread
    waking every 10 ms had to wait for its turn (sampled on each wake-up)."""

    def __enter__(self) -> PeakRSS:
        self.base = _rss()
        self.peak = self.base
        self.stall = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        due = time.perf_counter() + 0.01
        while not self._stop.wait(max(0.0, due - time.perf_counter())):
            self.stall = max(self.stall, time.perf_counter() - due)
            self.peak = max(self.peak, _rss())
            due = time.perf_counter() + 0.01

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def run(workload: str, smoke: bool) -> tuple[int, float, float, float, float]:
    """(features, seconds, CPU seconds, peak MB above the start, longest stall in ms) of one
    analysis. CPU seconds (all threads) tell the work done when the machine is shared."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        settings = Settings(data_dir=root / "data", jwt_secret="x" * 40, workers=1)
        for bucket in ("in", "out", "data"):
            (settings.buckets_dir / bucket).mkdir(parents=True, exist_ok=True)
        if workload == "a":
            write_geopackage(
                settings.buckets_dir / "in" / "parcels.gpkg", 3000 if smoke else 700_000
            )
        db = Database(settings.resolved_database_url)
        db.migrate()
        account = create_account(db, "bench", 10_000_000).account_id
        collection = create_collection(db, settings, account, {"name": "c", "s3Bucket": "data"})
        body = request(collection["id"], workload, smoke)
        task_id = create_task(db, settings, account, body)["id"]
        with db.session() as session:
            task = session.get(Task, task_id)
        with PeakRSS() as memory:
            started, cpu = time.perf_counter(), time.process_time()
            count, _, _ = analyse_task(db, settings, task)
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        db.dispose()
    return count, elapsed, cpu, (memory.peak - memory.base) / 2**20, memory.stall * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("workloads", nargs="*", metavar="workload", help="a, b, c (default: all)")
    parser.add_argument("--smoke", action="store_true", help="small versions: a few seconds each")
    args = parser.parse_args()
    unknown = sorted(set(args.workloads) - set(NAMES))
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(NAMES)}")
    names = SMOKE_NAMES if args.smoke else NAMES
    print(
        f"{'workload':44} {'features':>9} {'seconds':>8} {'cpu s':>7} {'features/s':>11} "
        f"{'peak MB':>8} {'stall ms':>9} {'target s':>9} {'ratio':>6} {'target MB':>10} "
        f"{'ratio':>6}"
    )
    for workload in args.workloads or list(NAMES):
        if args.smoke:  # in this process: no new interpreter and grid tables for each
            count, seconds, cpu, peak, stall = run(workload, smoke=True)
        else:  # a fresh process each: the peak is this workload's, not an earlier one's
            spawn = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
                count, seconds, cpu, peak, stall = pool.submit(run, workload, False).result()
        target = None if args.smoke else TARGET_S[workload]
        ratio = f"{seconds / target:.2f}" if target else "-"
        print(
            f"{names[workload]:44} {count:>9} {seconds:>8.1f} {cpu:>7.1f} "
            f"{count / seconds:>11.0f} {peak:>8.0f} {stall:>9.0f} {target or '-':>9} {ratio:>6} "
            f"{TARGET_MB:>10.0f} {peak / TARGET_MB:>6.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
