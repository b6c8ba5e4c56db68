"""Raster delivery through a whole task: COGs with every cogParameters field, path templates,
overwrite and skipExisting. Every check opens the delivered files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rio_cogeo.cogeo import cog_validate

from eobatch.demo_data import DEMO_SCENES
from eobatch.sources.mosaic import WARP_TOLERANCE_PX
from tests.integration.harness import Service
from tests.reference import matches_nearest, ndvi, nearest_mosaic

TWO_OUTPUTS = """//VERSION=3
function setup() {
  return { input: [{ bands: ["B04", "B08", "dataMask"] }],
           output: [{ id: "bands", bands: 2, sampleType: "UINT16", nodataValue: 0 },
                    { id: "ndvi", bands: 1, sampleType: "FLOAT32" }] };
}
function evaluatePixel(s) {
  if (s.dataMask === 0) return { bands: [0, 0], ndvi: [NaN] };
  return { bands: [s.B04, s.B08], ndvi: [(s.B08 - s.B04) / (s.B08 + s.B04)] };
}
"""
INT8_SCRIPT = """//VERSION=3
function setup() { return { input: ["B04"], output: { bands: 1, sampleType: "INT8" } }; }
function evaluatePixel(s) { return [1]; }
"""
PRIORITY = [
    s
    for s in sorted(DEMO_SCENES, key=lambda s: s.sensing_time, reverse=True)
    if s.sensing_time.year == 2024
]


def delivery(url: str, **extra) -> dict:  # type: ignore[no-untyped-def]
    return {"type": "raster", "delivery": {"s3": {"url": url}}, **extra}


def check_pixels(path: Path, output: str) -> None:
    """The delivered values equal the independent numpy model of the demo data."""
    with rasterio.open(path) as tiff:
        t = tiff.transform
        actual = tiff.read().astype(np.float64)
        width, height = tiff.width, tiff.height
    transform = Affine(t.a, 0, t.c, 0, t.e, t.f)

    def expected(shift):  # type: ignore[no-untyped-def]
        values, mask = nearest_mosaic(
            PRIORITY, ["B04", "B08"], 3035, transform, width, height, shift
        )
        if output == "ndvi":
            return ndvi(values["B04"], values["B08"])[None].astype(np.float64)
        return np.stack([np.where(mask, values[b], 0) for b in ("B04", "B08")])

    ok = matches_nearest(actual, expected, 2 * WARP_TOLERANCE_PX)
    assert ok.all(), f"{path}: {np.count_nonzero(~ok)} values differ from the model"


def test_cog_with_every_parameter_and_a_path_template(service: Service) -> None:
    params = {
        "overviewLevels": [2, 4, 8],
        "resamplingAlgorithm": "nearest",
        "blockxsize": 512,
        "blockysize": 256,
        "usePredictor": False,
    }
    body = service.request(
        TWO_OUTPUTS,
        ["bands", "ndvi"],
        delivery(
            "s3://results/cogs/<tileName>/<outputId>-<requestId>.<format>",
            cogOutput=True,
            cogParameters=params,
        ),
    )
    task = service.run(body)
    assert task["status"] == "DONE", task
    root = service.buckets / "results" / "cogs"
    outputs = sorted(root.glob(f"*/*-{task['id']}.tiff"))
    assert len(outputs) == 8  # four 20 km cells, two outputs each
    assert (root / f"request-{task['id']}.json").is_file()
    assert (root / f"featureManifest-{task['id']}.gpkg").is_file()
    for path in outputs:
        valid, errors, _ = cog_validate(str(path))
        assert valid, (path, errors)
        output = path.name.split("-")[0]
        with rasterio.open(path) as tiff:
            assert tiff.crs.to_epsg() == 3035
            assert (tiff.width, tiff.height) == (1000, 1000)
            assert tiff.block_shapes[0] == (256, 512)
            assert tiff.overviews(1) == [2, 4, 8]
            assert "PREDICTOR" not in tiff.tags(ns="IMAGE_STRUCTURE")
            assert tiff.compression.name == "zstd"
            if output == "bands":
                assert tiff.count == 2 and tiff.dtypes == ("uint16", "uint16")
                assert tiff.nodata == 0
                # nearest overviews hold only values of the full-resolution raster
                full, overview = tiff.read(1), tiff.read(1, out_shape=(250, 250))
                assert np.isin(overview, full).all()
            else:
                assert tiff.count == 1 and tiff.dtypes == ("float32",)
        check_pixels(path, output)


def test_cog_defaults(service: Service) -> None:
    body = service.request(
        TWO_OUTPUTS, ["bands", "ndvi"], delivery("s3://results/d", cogOutput=True)
    )
    task = service.run(body)
    assert task["status"] == "DONE", task
    outputs = sorted((service.buckets / "results" / "d" / task["id"]).glob("*/*.tiff"))
    assert len(outputs) == 8
    for path in outputs:
        assert cog_validate(str(path))[0]
        with rasterio.open(path) as tiff:
            assert tiff.block_shapes[0] == (256, 256)
            assert tiff.overviews(1) == [2, 4]  # 1000 -> 500 -> 250: within one 256 block
            predictor = "3" if tiff.dtypes[0] == "float32" else "2"
            assert tiff.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == predictor
    check_pixels(outputs[0], outputs[0].stem)


def test_cog_refuses_int8_at_analysis(service: Service) -> None:
    body = service.request(INT8_SCRIPT, ["default"], delivery("s3://results/i", cogOutput=True))
    task = service.run(body, action="analyse")
    assert task["status"] == "FAILED"
    assert "INT8" in task["error"] and "cogOutput" in task["error"]


@pytest.mark.parametrize(
    ("change", "parameter"),
    [
        ({"cogParameters": {"blockxsize": 100}}, "output->cogParameters->blockxsize"),
        ({"cogParameters": {"resamplingAlgorithm": "bilinear"}}, "resamplingAlgorithm"),
        ({"cogParameters": {"overviewLevels": [1]}}, "overviewLevels"),
    ],
)
def test_bad_cog_parameters_are_refused(service: Service, change: dict, parameter: str) -> None:
    body = service.request(
        TWO_OUTPUTS, ["bands"], delivery("s3://results/x", cogOutput=True, **change)
    )
    response = service.http.post("/api/v2/batch/process", json=body)
    assert response.status_code == 400, response.text
    assert any(parameter in e["parameter"] for e in response.json()["error"]["errors"])


def test_cog_output_needs_tiff_responses(service: Service) -> None:
    body = service.request(TWO_OUTPUTS, ["bands"], delivery("s3://results/x", cogOutput=True))
    body["processRequest"]["output"]["responses"].append(
        {"identifier": "userdata", "format": {"type": "application/json"}}
    )
    response = service.http.post("/api/v2/batch/process", json=body)
    assert response.status_code == 400, response.text
    assert "image/tiff" in response.text


# -- overwrite and skipExisting -------------------------------------------------------------------

FIXED = "s3://results/fixed/<tileName>/<outputId>.<format>"  # no <requestId>: tasks collide


def _stamps(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_mtime_ns for p in root.rglob("*.tiff")}


def test_existing_outputs_fail_overwrite_replaces_skip_existing_skips(service: Service) -> None:
    root = service.buckets / "results" / "fixed"
    first = service.run(service.request(TWO_OUTPUTS, ["bands", "ndvi"], delivery(FIXED)))
    assert first["status"] == "DONE", first
    before = _stamps(root)
    assert len(before) == 8

    # Neither flag: the analysis fails and names the existing files; nothing is touched.
    refused = service.run(service.request(TWO_OUTPUTS, ["bands", "ndvi"], delivery(FIXED)))
    assert refused["status"] == "FAILED"
    assert "already exist" in refused["error"]
    assert "s3://results/fixed/" in refused["error"] and "bands.tiff" in refused["error"]
    assert "overwrite" in refused["error"] and "skipExisting" in refused["error"]
    assert _stamps(root) == before

    # skipExisting: every feature has all its outputs, so nothing is processed or charged.
    skipped = service.run(
        service.request(TWO_OUTPUTS, ["bands", "ndvi"], delivery(FIXED, skipExisting=True))
    )
    assert skipped["status"] == "DONE", skipped
    assert skipped["costPU"] == 0
    assert _stamps(root) == before
    execution = root / f"execution-{skipped['id']}.sqlite"
    with sqlite3.connect(execution) as db:
        assert db.execute("SELECT DISTINCT status, delivered FROM features").fetchall() == [
            ("DONE", 1)
        ]

    # A feature with one output missing is partial: refused without overwrite...
    tile = sorted({k.split("/")[0] for k in before})[0]
    (root / tile / "ndvi.tiff").unlink()
    partial = service.run(
        service.request(TWO_OUTPUTS, ["bands", "ndvi"], delivery(FIXED, skipExisting=True))
    )
    assert partial["status"] == "FAILED"
    assert f"{tile}/bands.tiff" in partial["error"]
    assert "ndvi.tiff" not in partial["error"]

    # ...and rewritten with overwrite, while the complete features are still skipped.
    mixed = service.run(
        service.request(
            TWO_OUTPUTS, ["bands", "ndvi"], delivery(FIXED, skipExisting=True, overwrite=True)
        )
    )
    assert mixed["status"] == "DONE", mixed
    after = _stamps(root)
    assert after[f"{tile}/bands.tiff"] > before[f"{tile}/bands.tiff"]
    assert (root / tile / "ndvi.tiff").is_file()
    assert {k: v for k, v in after.items() if not k.startswith(tile)} == {
        k: v for k, v in before.items() if not k.startswith(tile)
    }
    # Only the rewritten feature is charged (both tasks then pay the 100 PU task minimum).
    charged = [
        f["name"]
        for f in service.http.get(f"/api/v2/batch/process/{mixed['id']}/features").json()["data"]
        if f["costPU"] > 0
    ]
    assert charged == [tile]
    assert mixed["costPU"] == first["costPU"] == 100.0

    # overwrite alone rewrites everything
    again = service.run(
        service.request(TWO_OUTPUTS, ["bands", "ndvi"], delivery(FIXED, overwrite=True))
    )
    assert again["status"] == "DONE", again
    assert all(v > after[k] for k, v in _stamps(root).items())
    for path in sorted(root.rglob("*.tiff"))[:2]:
        check_pixels(path, path.stem)


# -- delivery to GCS ------------------------------------------------------------------------------


def test_cog_task_delivered_to_gcs(tmp_path: Path, demo_folder, dask_client) -> None:  # type: ignore[no-untyped-def]
    """A whole task to gs:// on the GCS emulator: outputs and bookkeeping land in the bucket."""
    from rasterio.io import MemoryFile

    from eobatch.storage import open_location
    from tests.integration.harness import start_service
    from tests.servers import create_gcs_bucket, service_account_credentials, start_gcs_server

    endpoint, stop = start_gcs_server()
    svc = start_service(tmp_path, dask_client, demo_folder, gcs_endpoint=endpoint)
    try:
        create_gcs_bucket(endpoint, "gcs-results")
        locator = {
            "gs": {"url": "gs://gcs-results/out", "credentials": service_account_credentials()}
        }
        output = {"type": "raster", "delivery": locator, "cogOutput": True}
        task = svc.run(svc.request(TWO_OUTPUTS, ["bands", "ndvi"], output))
        assert task["status"] == "DONE", task
        assert task["request"]["output"]["delivery"]["gs"]["credentials"] == "***"
        bucket = open_location(locator, svc.settings, "output->delivery")
        keys = bucket.list()
        tid = task["id"]
        assert {
            f"request-{tid}.json",
            f"featureManifest-{tid}.gpkg",
            f"execution-{tid}.sqlite",
        } <= set(keys)
        tiffs = [k for k in keys if k.endswith(".tiff")]
        assert len(tiffs) == 8
        for key in tiffs[:2]:
            with MemoryFile(bucket.get(key)) as memory, memory.open() as tiff:
                assert tiff.crs.to_epsg() == 3035 and tiff.overviews(1) == [2, 4]
                assert tiff.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        # The deployment is on AWS: GCS is another cloud, 0.1 PU per MB delivered, per feature.
        features = svc.http.get(f"/api/v2/batch/process/{tid}/features").json()["data"]
        tiff_bytes = sum(len(bucket.get(k)) for k in tiffs)
        assert sum(f["bytesWritten"] for f in features) == tiff_bytes
        for f in features:
            assert f["transferPU"] == pytest.approx(f["bytesWritten"] / 1e6 * 0.1, abs=1e-6)
    finally:
        svc.db.dispose()
        stop()
