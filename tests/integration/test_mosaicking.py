"""ORBIT and TILE mosaicking through whole tasks: samples per orbit/tile, preProcessScenes,
userdata, and the billing of the samples evaluated, checked against an independent model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from affine import Affine

from eobatch.lifecycle.billing import Pricing
from eobatch.sources.mosaic import WARP_TOLERANCE_PX
from tests.integration.harness import Service, run_until, status_is
from tests.reference import matches_nearest, nearest_mosaic

# Per pixel: how many orbits the script got, how many had data there, the newest valid B08 (DN).
ORBIT_SCRIPT = """//VERSION=3
function setup() {
  return { input: [{ bands: ["B08", "dataMask"], units: "DN" }],
           output: { bands: 3, sampleType: "FLOAT32" }, mosaicking: Mosaicking.ORBIT };
}
function evaluatePixel(samples) {
  let valid = 0, newest = NaN;
  for (let i = 0; i < samples.length; i++) {
    if (samples[i].dataMask === 1) { valid++; if (Number.isNaN(newest)) newest = samples[i].B08; }
  }
  return [samples.length, valid, newest];
}
function updateOutputMetadata(scenes, inputMetadata, outputMetadata) {
  outputMetadata.userData = { dates: scenes.orbits.map(o => o.dateFrom) };
}
"""

# The same, keeping only 2024 orbits: the 2023 scene is dropped before anything is read.
FILTERED_SCRIPT = ORBIT_SCRIPT.replace(
    "function evaluatePixel(samples) {",
    "function preProcessScenes(c) {\n"
    "  c.scenes.orbits = c.scenes.orbits.filter(o => o.dateFrom.startsWith('2024'));\n"
    "  return c;\n}\nfunction evaluatePixel(samples) {",
)


@pytest.fixture
def backend() -> str:
    """What is tested here is reading and evaluation, not the store: SQLite is enough."""
    return "sqlite"


def with_userdata(svc: Service, script: str, run: str) -> dict:
    body = svc.basic_request(evalscript=script, run=run)
    body["processRequest"]["output"]["responses"].append(
        {"identifier": "userdata", "format": {"type": "application/json"}}
    )
    return body


def run_orbit_task(svc: Service, script: str, run: str) -> str:
    response = svc.http.post("/api/v2/batch/process", json=with_userdata(svc, script, run))
    assert response.status_code == 201, response.text
    task_id = response.json()["id"]
    svc.action(task_id, "start")
    run_until([svc.controller()], status_is(svc, task_id, "DONE", "FAILED", "STOPPED"))
    task = svc.task(task_id)
    assert task["status"] == "DONE", task
    return task_id


def check_features(svc: Service, task_id: str, run: str, scenes: list) -> None:
    root = svc.settings.buckets_dir / "results" / run / task_id
    for row in svc.features(task_id):
        check_feature(row, root, sorted(scenes, key=lambda s: s.sensing_time, reverse=True))


def check_feature(row, root, newest_first: list) -> None:  # type: ignore[no-untyped-def]
    pricing = Pricing(("B08", "dataMask"), ("FLOAT32",))
    transform = Affine(20.0, 0, row.minx, 0, -20.0, row.maxy)
    with rasterio.open(root / row.name / "default.tiff") as src:
        count, valid, newest = src.read().astype(np.float64)
    userdata = json.loads((root / row.name / "userdata.json").read_text())
    # Every pixel saw the same orbits: the feature's, newest first, one per day.
    assert (count == row.samples).all() and row.samples == len(userdata["dates"])
    assert userdata["dates"] == sorted(userdata["dates"], reverse=True)
    days = {d[:10] for d in userdata["dates"]}
    mine = [s for s in newest_first if s.sensing_time.strftime("%Y-%m-%d") in days]
    assert len(mine) == row.samples
    assert row.cost_micro_pu == pricing.feature_micro(row.width, row.height, row.samples)
    size = (row.width, row.height)

    def valid_count(shift: tuple[float, float]) -> np.ndarray:
        masks = [nearest_mosaic([s], ["B08"], 3035, transform, *size, shift)[1] for s in mine]
        return np.sum(masks, axis=0).astype(np.float64)

    def newest_b08(shift: tuple[float, float]) -> np.ndarray:
        return nearest_mosaic(mine, ["B08"], 3035, transform, *size, shift)[0]["B08"]

    tolerance = 2 * WARP_TOLERANCE_PX
    assert matches_nearest(valid, valid_count, tolerance).all(), row.name
    assert matches_nearest(newest, newest_b08, tolerance).all(), row.name


def test_orbit_task_with_userdata(service_factory, demo_folder) -> None:  # type: ignore[no-untyped-def]
    svc = service_factory(5000.0)
    task_id = run_orbit_task(svc, ORBIT_SCRIPT, "orbit")
    _, scenes = demo_folder
    check_features(svc, task_id, "orbit", scenes)
    rows = svc.features(task_id)
    assert max(r.samples for r in rows) > 1  # the demo scenes overlap: several orbits somewhere
    estimate = svc.task(task_id)["estimate"]
    # ORBIT: at least nothing (every orbit may turn out empty), at most every scene found
    assert estimate["minPU"] == 0.0 and estimate["maxPU"] >= estimate["expectedPU"] >= 100.0


def test_pre_process_scenes_drops_orbits_before_reading(service_factory, demo_folder) -> None:  # type: ignore[no-untyped-def]
    svc = service_factory(5000.0)
    task_id = run_orbit_task(svc, FILTERED_SCRIPT, "filtered")
    _, scenes = demo_folder
    kept = [s for s in scenes if s.sensing_time.year == 2024]
    assert len(kept) < len(scenes)
    check_features(svc, task_id, "filtered", kept)
    root = svc.settings.buckets_dir / "results" / "filtered" / task_id
    for row in svc.features(task_id):
        dates = json.loads((root / row.name / "userdata.json").read_text())["dates"]
        assert all(d.startswith("2024") for d in dates)
