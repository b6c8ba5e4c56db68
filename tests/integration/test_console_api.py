"""The console's endpoints (features as GeoJSON, a feature's files, quicklooks, a task's ledger)
on whole tasks run by a real controller and Dask cluster, on both stores and with a GCS delivery;
another account gets a 404 for every one of them."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile
from shapely.geometry import box, shape

from eobatch.accounts import create_account
from eobatch.api import create_app
from eobatch.demo_data import DEMO_DEFAULT_BOUNDS, DEMO_EPSG
from eobatch.storage import open_location
from tests.integration.harness import Service, start_service
from tests.integration.test_api import signed_in

SCRIPT = """//VERSION=3
function setup() {
  return { input: [{ bands: ["B02", "B03", "B04", "B08", "dataMask"] }],
           output: [{ id: "rgb", bands: 3, sampleType: "UINT16", nodataValue: 0 },
                    { id: "ndvi", bands: 1, sampleType: "FLOAT32" }] };
}
function evaluatePixel(s) {
  if (s.dataMask === 0) return { rgb: [0, 0, 0], ndvi: [NaN] };
  return { rgb: [s.B04, s.B03, s.B02], ndvi: [(s.B08 - s.B04) / (s.B08 + s.B04)] };
}
function updateOutputMetadata(scenes, inputMetadata, outputMetadata) {
  outputMetadata.userData = { tiles: scenes.tiles ? scenes.tiles.length : 0 };
}
"""
RESPONSES = ["rgb", "ndvi"]


def _body(svc: Service, url: str, script: str = SCRIPT, cog: bool = False) -> dict:
    """Two GeoTIFF outputs to `url`, and `userdata.json` unless the outputs are COGs."""
    delivery = {"s3": {"url": url}} if url.startswith("s3://") else {"gs": {"url": url}}
    output = {"type": "raster", "delivery": delivery, "cogOutput": cog}
    body = svc.request(script, RESPONSES, output)
    if not cog:
        body["processRequest"]["output"]["responses"].append(
            {"identifier": "userdata", "format": {"type": "application/json"}}
        )
    return body


def _png(content: bytes) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # a PNG has no georeferencing
        with MemoryFile(content) as memory, memory.open() as image:
            assert image.driver == "PNG" and image.count == 4
            return image.read()


def test_features_files_quicklooks_and_ledger(service_factory) -> None:  # type: ignore[no-untyped-def]
    svc: Service = service_factory(100_000)
    task = svc.run(_body(svc, "s3://results/console"))
    assert task["status"] == "DONE", task
    base = f"/api/v2/batch/process/{task['id']}"

    # Features as GeoJSON in lon/lat, where the planned footprints are.
    collection = svc.http.get(f"{base}/features/geojson").json()
    rows = {row.id: row for row in svc.features(task["id"])}
    assert collection["type"] == "FeatureCollection"
    assert {f["id"] for f in collection["features"]} == set(rows) and len(rows) == 4
    to_lonlat = Transformer.from_crs(DEMO_EPSG, 4326, always_xy=True)
    demo_area = box(*to_lonlat.transform_bounds(*DEMO_DEFAULT_BOUNDS))
    for feature in collection["features"]:
        row, footprint = rows[feature["id"]], shape(feature["geometry"])
        assert feature["properties"]["status"] == row.status == "DONE"
        assert feature["properties"]["costPU"] == pytest.approx(row.cost_micro_pu / 1e6)
        assert footprint.intersects(demo_area) and -180 <= footprint.bounds[0] <= 180
        assert footprint.area == pytest.approx((20_000 / 111_320) ** 2 / 0.66, rel=0.1)
    statuses = svc.http.get(f"{base}/features/geojson", params={"geometry": "false"}).json()
    assert [f["geometry"] for f in statuses["features"]] == [None] * 4
    assert [f["properties"] for f in statuses["features"]] == [
        f["properties"] for f in collection["features"]
    ]

    # A feature's detail lists its files; each downloads byte for byte.
    feature_id = collection["features"][0]["id"]
    detail = svc.http.get(f"{base}/features/{feature_id}").json()
    row = rows[feature_id]
    assert detail["status"] == "DONE" and detail["costPU"] == pytest.approx(row.cost_micro_pu / 1e6)
    assert [o["identifier"] for o in detail["outputs"]] == ["rgb", "ndvi", "userdata"]
    folder = svc.buckets / "results" / "console" / task["id"] / row.name
    for output in detail["outputs"]:
        extension = "json" if output["identifier"] == "userdata" else "tiff"
        path = folder / f"{output['identifier']}.{extension}"
        assert output["url"] == f"s3://results/console/{task['id']}/{row.name}/{path.name}"
        answer = svc.http.get(output["download"])
        assert answer.status_code == 200 and answer.content == path.read_bytes()
        assert path.name in answer.headers["content-disposition"]
    assert detail["outputs"][2]["quicklook"] is None
    assert (
        json.loads((folder / "userdata.json").read_text())
        == svc.http.get(detail["outputs"][2]["download"]).json()
    )

    # Quicklooks: RGB from the three bands, grey from one; no-data and NaN transparent.
    rgb = svc.http.get(detail["outputs"][0]["quicklook"], params={"size": 256})
    assert rgb.status_code == 200 and rgb.headers["content-type"] == "image/png"
    image = _png(rgb.content)
    assert max(image.shape[1:]) == 256
    with rasterio.open(folder / "rgb.tiff") as tiff:
        valid = tiff.read(1) != 0
        b04 = tiff.read(1)[valid]
    alpha = image[3] > 0
    assert 0 < alpha.mean() < 1  # the demo data covers a corner of each 20 km feature
    assert set(np.unique(image[3])) <= {0, 255}
    low, high = (float(v) for v in rgb.headers["x-stretch"].split(";")[0].split(","))
    assert low == pytest.approx(np.percentile(b04, 2), rel=0.05)
    assert high == pytest.approx(np.percentile(b04, 98), rel=0.05)
    assert (image[:3, ~alpha] == 0).all()
    west, south, east, north = (float(v) for v in rgb.headers["x-bounds"].split(","))
    assert box(west, south, east, north).contains(
        shape(collection["features"][0]["geometry"]).buffer(-1e-3)
    )
    grey = _png(svc.http.get(detail["outputs"][1]["quicklook"], params={"size": 256}).content)
    assert (grey[0] == grey[1]).all() and (grey[1] == grey[2]).all()
    assert ((grey[3] > 0) == alpha).mean() > 0.98  # NaN where the rgb output has nodata 0

    # The task's ledger: what it was charged, in order, summing to its cost.
    ledger = svc.http.get(f"{base}/ledger").json()["data"]
    assert ledger and {e["kind"] for e in ledger} <= {"processing", "transfer", "minimum"}
    assert -sum(e["amountPU"] for e in ledger) == pytest.approx(task["costPU"], abs=1e-6)
    assert [e["id"] for e in ledger] == sorted(e["id"] for e in ledger)

    # Another account: every one of these is a 404, as for a task that does not exist.
    other = signed_in(create_app(svc.settings, svc.db), create_account(svc.db, "other", 5000))
    for path in (
        f"{base}/features/geojson",
        f"{base}/features/{feature_id}",
        detail["outputs"][0]["download"],
        detail["outputs"][0]["quicklook"],
        f"{base}/ledger",
    ):
        answer = other.get(path)
        assert answer.status_code == 404, (path, answer.text)
        assert answer.json()["error"]["message"] == f"Batch task {task['id']} not found"
        assert svc.http.get(path).status_code == 200
        assert svc.http.get(path, headers={"Authorization": ""}).status_code == 401

    # Things that are not there.
    missing = {
        f"{base}/features/999999999": "Feature 999999999",
        f"{base}/features/{10**30}/outputs/rgb": f"Feature {10**30}",
        f"{base}/features/{feature_id}/outputs/nope": "no delivered output 'nope'",
        f"{base}/features/{feature_id}/outputs/userdata/quicklook": "not a raster",
        "/api/v2/batch/process/not-a-uuid/features/geojson": "not found",
    }
    for path, text in missing.items():
        answer = svc.http.get(path)
        assert answer.status_code == 404 and text in answer.json()["error"]["message"], path
    (folder / "rgb.tiff").unlink()
    gone = svc.http.get(detail["outputs"][0]["download"])
    assert gone.status_code == 404 and "no longer in the delivery bucket" in gone.text
    bad = svc.http.get(detail["outputs"][1]["quicklook"], params={"size": 0})
    assert bad.status_code == 400 and bad.json()["error"]["errors"][0]["parameter"] == "size"


def test_failed_and_undelivered_features(service: Service) -> None:
    """A failed feature reports its error and status, and has no files."""
    failing = SCRIPT.replace("if (s.dataMask === 0)", "throw new Error('boom');\n  if (0)")
    broken = service.run(_body(service, "s3://results/broken", failing))
    assert broken["status"] == "FAILED", broken  # every feature failed
    features = service.http.get(f"/api/v2/batch/process/{broken['id']}/features/geojson").json()
    assert {f["properties"]["status"] for f in features["features"]} == {"FATAL"}
    feature = features["features"][0]
    assert "boom" in feature["properties"]["error"]
    detail = service.http.get(
        f"/api/v2/batch/process/{broken['id']}/features/{feature['id']}"
    ).json()
    assert detail["status"] == "FATAL" and "boom" in detail["error"] and detail["outputs"] == []


def test_downloads_and_quicklooks_from_gcs(tmp_path, demo_folder, dask_client) -> None:  # type: ignore[no-untyped-def]
    """A GCS delivery is read through the server with the task's own service account."""
    from tests.servers import create_gcs_bucket, service_account_credentials, start_gcs_server

    endpoint, stop = start_gcs_server()
    svc = start_service(tmp_path, dask_client, demo_folder, gcs_endpoint=endpoint)
    try:
        create_gcs_bucket(endpoint, "gcs-console")
        body = _body(svc, "gs://gcs-console/out", cog=True)
        locator = body["output"]["delivery"]
        locator["gs"]["credentials"] = service_account_credentials()
        task = svc.run(body)
        assert task["status"] == "DONE", task
        base = f"/api/v2/batch/process/{task['id']}"
        feature_id = svc.http.get(f"{base}/features/geojson").json()["features"][0]["id"]
        detail = svc.http.get(f"{base}/features/{feature_id}").json()
        rgb = detail["outputs"][0]
        assert rgb["url"].startswith(f"gs://gcs-console/out/{task['id']}/")
        bucket = open_location(locator, svc.settings, "output->delivery")
        key = rgb["url"].removeprefix("gs://gcs-console/out/")
        assert svc.http.get(rgb["download"]).content == bucket.get(key)
        image = _png(svc.http.get(rgb["quicklook"]).content)
        assert 0 < (image[3] > 0).mean() < 1
    finally:
        svc.db.dispose()
        stop()
