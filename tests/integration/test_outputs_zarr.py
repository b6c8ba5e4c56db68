"""Zarr output through whole tasks: the group opens with xarray with correct coordinates, every
array parameter lands in the metadata, and the pixel values match the numpy model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr
from affine import Affine

from tests.integration.harness import Service
from tests.integration.test_outputs_raster import PRIORITY
from tests.reference import matches_nearest, ndvi, nearest_mosaic

THREE_OUTPUTS = """//VERSION=3
function setup() {
  return { input: [{ bands: ["B04", "B08", "dataMask"] }],
           output: [{ id: "band08", bands: 1, sampleType: "UINT16" },
                    { id: "band04", bands: 1, sampleType: "UINT16" },
                    { id: "maxNDVI", bands: 1, sampleType: "FLOAT32" }] };
}
function evaluatePixel(s) {
  if (s.dataMask === 0) return { band08: [0], band04: [0], maxNDVI: [NaN] };
  return { band08: [s.B08], band04: [s.B04], maxNDVI: [(s.B08 - s.B04) / (s.B08 + s.B04)] };
}
"""
IDS = ["band08", "band04", "maxNDVI"]


def zarr_output(url: str = "s3://results/zarr/<requestId>", **changes) -> dict:  # type: ignore[no-untyped-def]
    return {
        "type": "zarr",
        "delivery": {"s3": {"url": url}},
        "group": {"zarr_format": 2},
        "arrayParameters": {"dtype": "<u2", "order": "C", "chunks": [1, 500, 500], "fill_value": 0},
        "arrayOverrides": {
            "maxNDVI": {
                "dtype": "<f4",
                "fill_value": "NaN",
                "customAttributes": {"long_name": "max NDVI"},
            }
        },
        **changes,
    }


def check_values(ds: xr.Dataset, origin: str) -> None:
    """Every pixel of the group equals the model at the pixel's x/y coordinates."""
    x, y = ds.x.values, ds.y.values
    res = float(x[1] - x[0])
    assert res == 20.0
    top = float(y.max()) + res / 2
    transform = Affine(res, 0, float(x[0]) - res / 2, 0, -res, top)
    width, height = len(x), len(y)

    def expected(name: str, shift):  # type: ignore[no-untyped-def]
        values, mask = nearest_mosaic(
            PRIORITY, ["B04", "B08"], 3035, transform, width, height, shift
        )
        if name == "maxNDVI":
            out = ndvi(values["B04"], values["B08"]).astype(np.float64)
        else:
            out = np.where(mask, values["B08" if name == "band08" else "B04"], 0)
        return out if origin == "topLeft" else out[::-1]

    for name in IDS:
        actual = ds[name].isel(time=0).values.astype(np.float64)
        ok = matches_nearest(actual, lambda shift, n=name: expected(n, shift), 0.002)
        assert ok.all(), f"{name}: {np.count_nonzero(~ok)} values differ"


def test_zarr_format_2_opens_with_xarray(service: Service) -> None:
    body = service.request(THREE_OUTPUTS, IDS, zarr_output(), fmt="zarr/array")
    body["output"]["group"]["customAttributes"] = {"title": "Corsica NDVI"}
    task = service.run(body)
    assert task["status"] == "DONE", task
    root = service.buckets / "results" / "zarr"
    group = root / task["id"]
    assert (root / f"featureManifest-{task['id']}.gpkg").is_file()
    assert (root / f"execution-{task['id']}.sqlite").is_file()
    assert {".zgroup", ".zattrs", ".zmetadata"} <= {p.name for p in group.iterdir()}

    meta = json.loads((group / "band04" / ".zarray").read_text())
    assert meta["zarr_format"] == 2
    assert (meta["dtype"], meta["order"], meta["fill_value"]) == ("<u2", "C", 0)
    assert meta["chunks"] == [1, 500, 500]
    assert meta["compressor"] == {
        "id": "blosc",
        "cname": "lz4",
        "clevel": 5,
        "shuffle": 1,
        "blocksize": 0,
    }
    ndvi_meta = json.loads((group / "maxNDVI" / ".zarray").read_text())
    assert ndvi_meta["dtype"] == "<f4" and ndvi_meta["fill_value"] == "NaN"
    attrs = json.loads((group / "maxNDVI" / ".zattrs").read_text())
    assert attrs["_ARRAY_DIMENSIONS"] == ["time", "y", "x"]
    assert attrs["long_name"] == "max NDVI"
    group_attrs = json.loads((group / ".zattrs").read_text())
    assert group_attrs["title"] == "Corsica NDVI" and group_attrs["crs"] == "EPSG:3035"

    ds = xr.open_zarr(group, mask_and_scale=False)
    assert dict(ds.sizes) == {"time": 1, "y": 2000, "x": 2000}  # four 1000-px tiles, 2 x 2
    assert ds.band04.dtype == np.uint16 and ds.maxNDVI.dtype == np.float32
    assert ds.band04.encoding["chunks"] == (1, 500, 500)
    assert str(ds.time.values[0]).startswith("2024-01-01")
    # pixel centres on the LAEA 20 km grid at 20 m, y decreasing (topLeft origin)
    assert (float(ds.x[0]) - 10) % 20000 == 0 and float(ds.y[0]) % 20000 == 20000 - 10
    assert np.all(np.diff(ds.x.values) == 20) and np.all(np.diff(ds.y.values) == -20)
    check_values(ds, "topLeft")
    chunk_files = [p for p in (group / "band04").iterdir() if not p.name.startswith(".")]
    assert 0 < len(chunk_files) <= 16  # 4 x 4 chunks of 500; all-fill chunks are not written


def test_zarr_format_3_bottom_left_origin_and_plain_prefix(service: Service) -> None:
    output = zarr_output(
        "s3://results/z3", group={"zarr_format": 3, "coordinates": {"origin": "bottomLeft"}}
    )
    output["arrayParameters"]["compressor"] = {"id": "zstd", "level": 3}
    output["arrayParameters"]["chunks"] = [1, 250, 1000]
    task = service.run(service.request(THREE_OUTPUTS, IDS, output, fmt="zarr/array"))
    assert task["status"] == "DONE", task
    group = service.buckets / "results" / "z3" / task["id"]
    meta = json.loads((group / "band08" / "zarr.json").read_text())
    assert meta["zarr_format"] == 3 and meta["dimension_names"] == ["time", "y", "x"]
    assert meta["chunk_grid"]["configuration"]["chunk_shape"] == [1, 250, 1000]
    assert any(c["name"] == "zstd" for c in meta["codecs"])
    ds = xr.open_zarr(group, mask_and_scale=False)
    assert np.all(np.diff(ds.y.values) == 20)  # row 0 at the bottom
    check_values(ds, "bottomLeft")
    assert zarr.open_group(str(group), mode="r").attrs["origin"] == "bottomLeft"


BAD = [
    (
        {
            "arrayParameters": {
                "dtype": "<u2",
                "order": "C",
                "chunks": [1, 300, 500],
                "fill_value": 0,
            }
        },
        "chunks",
        "divide the tile size of 1000",
    ),
    (
        {
            "arrayParameters": {
                "dtype": "<u2",
                "order": "C",
                "chunks": [2, 500, 500],
                "fill_value": 0,
            }
        },
        "chunks",
        "must be 1",
    ),
    (
        {
            "arrayParameters": {
                "dtype": "<u4",
                "order": "C",
                "chunks": [1, 500, 500],
                "fill_value": 0,
            }
        },
        "dtype",
        "not one of",
    ),
    (
        {
            "arrayParameters": {
                "dtype": "<u2",
                "order": "F",
                "chunks": [1, 500, 500],
                "fill_value": 0,
            }
        },
        "order",
        '"C"',
    ),
    (
        {
            "arrayParameters": {
                "dtype": "<u2",
                "order": "C",
                "chunks": [1, 500, 500],
                "fill_value": -1,
            }
        },
        "fill_value",
        "not a value of dtype",
    ),
    (
        {
            "arrayParameters": {
                "dtype": "<u2",
                "order": "C",
                "chunks": [1, 500, 500],
                "fill_value": "NaN",
            }
        },
        "fill_value",
        "not a value of dtype",
    ),
    (
        {
            "arrayParameters": {
                "dtype": "<u2",
                "order": "C",
                "chunks": [1, 500, 500],
                "fill_value": 0,
                "compressor": {"id": "nope"},
            }
        },
        "compressor",
        "codec",
    ),
    (
        {"arrayParameters": {"dtype": "<u2", "chunks": [1, 500, 500], "fill_value": 0}},
        "arrayParameters",
        "no order",
    ),
    ({"arrayOverrides": {"other": {"dtype": "<f4"}}}, "arrayOverrides->other", "not an output"),
    ({"group": {"zarr_format": 4}}, "zarr_format", "must be 2"),
    ({"delivery": {"s3": {"url": "s3://results/<tileName>"}}}, "url", "placeholder"),
]


@pytest.mark.parametrize(("change", "parameter", "message"), BAD)
def test_bad_zarr_requests_are_refused(
    service: Service, change: dict, parameter: str, message: str
) -> None:
    body = service.request(THREE_OUTPUTS, IDS, zarr_output(**change), fmt="zarr/array")
    response = service.http.post("/api/v2/batch/process", json=body)
    assert response.status_code == 400, response.text
    errors = response.json()["error"]["errors"]
    assert any(parameter in e["parameter"] and message in e["violation"] for e in errors), errors


def test_zarr_needs_a_single_crs_grid_and_zarr_responses(service: Service) -> None:
    body = service.request(
        THREE_OUTPUTS, IDS, zarr_output(), grid={"type": "tiling-grid", "id": 1, "resolution": 20.0}
    )
    response = service.http.post("/api/v2/batch/process", json=body)
    assert response.status_code == 400
    text = response.text
    assert "single-CRS grid" in text and "zarr/array" in text


@pytest.mark.parametrize(
    ("script_change", "message"),
    [
        (('sampleType: "FLOAT32"', 'sampleType: "INT16"'), "cannot hold sampleType INT16"),
        (('id: "band04", bands: 1', 'id: "band04", bands: 2'), "one band per output"),
    ],
)
def test_zarr_script_mismatch_fails_analysis(
    service: Service, script_change: tuple[str, str], message: str
) -> None:
    script = THREE_OUTPUTS.replace(*script_change)
    output = zarr_output()
    output["arrayOverrides"]["maxNDVI"]["dtype"] = "<u2"
    output["arrayOverrides"]["maxNDVI"]["fill_value"] = 0
    body = service.request(script, IDS, output, fmt="zarr/array")
    task = service.run(body, action="analyse")
    assert task["status"] == "FAILED"
    assert message in task["error"]


def test_zarr_folder_must_be_empty(service: Service) -> None:
    body = service.request(THREE_OUTPUTS, IDS, zarr_output(), fmt="zarr/array")
    task_id = service.create(body)
    leftover = service.buckets / "results" / "zarr" / task_id / ".zgroup"
    leftover.parent.mkdir(parents=True)
    leftover.write_text("{}")
    assert service.http.post(f"/api/v2/batch/process/{task_id}/analyse").status_code == 204
    task = service.wait(task_id)
    assert task["status"] == "FAILED"
    assert "must be empty" in task["error"] and ".zgroup" in task["error"]
    assert Path(leftover).read_text() == "{}"
