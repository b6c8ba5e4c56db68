"""Analysis at scale: features per second and peak memory of a whole task analysis.

Each workload is a real task in a SQLite store with local-folder buckets, analysed by
`analyse_task` exactly as the controller does it: read the input, plan the features, write
`featureManifest-<id>.gpkg` and insert the features into the store.

  (a) a 700 000-feature GeoPackage in 3 CRSs, with an AOI covering half of the features
  (b) grid 1 (UTM 10 km) over Europe, bbox -25,34,45,72
  (c) grid 0 (UTM 20 km) over the world bbox

Run: python benchmarks/plan.py [a b c]   (targets on a 2-core machine: (a) < 60 s, (b) < 30 s)
"""

from __future__ import annotations

import resource
import sys
import tempfile
import threading
import time
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
TARGETS = {"a": 60.0, "b": 30.0, "c": None}
LAYERS = {  # table: (EPSG, lower-left corner, square size in CRS units)
    "parcels_utm33": (32633, (400_000.0, 5_000_000.0), 500.0),
    "parcels_laea": (3035, (3_000_000.0, 3_500_000.0), 500.0),
    "parcels_wgs84": (4326, (20.0, 60.0), 0.005),
}


def write_geopackage(path: Path) -> None:
    """700 000 squares in 3 tables, 500 columns × n rows each, west to east."""
    counts = [233_333, 233_334, 233_333]
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


def request(collection_id: str, workload: str) -> dict:
    if workload == "a":
        # the western half of every table: 250 of the 500 columns
        parts = []
        for epsg, (x0, y0), size in LAYERS.values():
            box = shapely.box(x0, y0, x0 + 249.5 * size, y0 + 500 * size)
            parts.append((epsg, box))
        bounds = _lonlat_union(parts)
        source = {"type": "geopackage", "features": {"s3": {"url": "s3://in/parcels.gpkg"}}}
    else:
        bbox = [-25, 34, 45, 72] if workload == "b" else [-180, -90, 180, 90]
        bounds = {"bbox": bbox}
        source = {
            "type": "tiling-grid",
            "id": 1 if workload == "b" else 0,
            "resolution": 10.0 if workload == "b" else 60.0,
        }
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
    """Peak resident memory of this process while the block runs (sampled every 50 ms)."""

    def __enter__(self) -> PeakRSS:
        self.base = _rss()
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def run(workload: str, root: Path) -> tuple[int, float, float]:
    settings = Settings(data_dir=root / "data", jwt_secret="x" * 40, workers=1)
    for bucket in ("in", "out", "data"):
        (settings.buckets_dir / bucket).mkdir(parents=True, exist_ok=True)
    if workload == "a":
        write_geopackage(settings.buckets_dir / "in" / "parcels.gpkg")
    db = Database(settings.resolved_database_url)
    db.migrate()
    account = create_account(db, "bench", 10_000_000).account_id
    collection = create_collection(db, settings, account, {"name": "c", "s3Bucket": "data"})
    task_id = create_task(db, settings, account, request(collection["id"], workload))["id"]
    with db.session() as session:
        task = session.get(Task, task_id)
    with PeakRSS() as memory:
        started = time.perf_counter()
        count = analyse_task(db, settings, task)
        elapsed = time.perf_counter() - started
    db.dispose()
    return count, elapsed, (memory.peak - memory.base) / 2**20


def main() -> None:
    chosen = sys.argv[1:] or ["a", "b", "c"]
    names = {
        "a": "GeoPackage 700k features, 3 CRSs, AOI = half",
        "b": "grid 1 (10 km) over Europe -25,34,45,72",
        "c": "grid 0 (20 km) over the world bbox",
    }
    print(
        f"{'workload':48} {'features':>9} {'seconds':>8} {'features/s':>11} "
        f"{'peak MB':>8} {'target s':>9} {'ratio':>6}"
    )
    for workload in chosen:
        with tempfile.TemporaryDirectory() as tmp:
            count, seconds, peak = run(workload, Path(tmp))
        target = TARGETS[workload]
        ratio = f"{seconds / target:.2f}" if target else "-"
        print(
            f"{names[workload]:48} {count:>9} {seconds:>8.1f} {count / seconds:>11.0f} "
            f"{peak:>8.0f} {target or '-':>9} {ratio:>6}",
            flush=True,
        )


if __name__ == "__main__":
    main()
