"""The acceptance examples E1-E4 of batch-v2-api.md §8, run to DONE with outputs verified.

Data types and areas are swapped for the local demo collection (UTM 33N near 14.3 E, 48.3 N);
everything about outputs and delivery is as in the spec's bodies. E1 uses SIMPLE mosaicking (the
runtime of this branch runs SIMPLE scripts only). Pixel values against the numpy model are
checked in test_outputs_raster.py and test_outputs_zarr.py.
"""

from __future__ import annotations

import copy
import json
import sqlite3

import numpy as np
import rasterio
import xarray as xr
from rio_cogeo.cogeo import cog_validate

from tests.geopackages import squares, write_layer
from tests.integration.harness import Service

ROLE = "arn:aws:iam::123456789012:role/sh-batch"
NDVI3 = """//VERSION=3
function setup() { return { input: [{ bands: ["B04", "B08", "dataMask"] }],
                            output: { id: "default", bands: 3, sampleType: "FLOAT32" } }; }
function evaluatePixel(s) {
  const d = s.B04 + s.B08; const n = d ? (s.B08 - s.B04) / d : 0;
  return s.dataMask ? [n, n, n] : [NaN, NaN, NaN];
}
"""
# E1's own script (batch-v2-api.md §8): max NDVI over the orbits, ORBIT mosaicking, AUTO output.
E1_SCRIPT = (
    '//VERSION=3\nfunction setup(){return {input:[{bands:["B04","B08"]}],output:[{id:'
    '"default",bands:3}],mosaicking:"ORBIT"};}\nfunction evaluatePixel(s){let m=0;for(const x '
    "of s){const d=x.B04+x.B08;const n=d?(x.B08-x.B04)/d:0;if(n>m)m=n;}return [m,m,m];}"
)
E3_SCRIPT = """//VERSION=3
function setup() {
  return { input: [{ bands: ["B04", "B08", "dataMask"] }],
           output: [{ id: "maxNDVI", bands: 1, sampleType: "FLOAT32" },
                    { id: "band04", bands: 1, sampleType: "UINT16" },
                    { id: "band08", bands: 1, sampleType: "UINT16" }] };
}
function evaluatePixel(s) {
  if (!s.dataMask) return { maxNDVI: [NaN], band04: [0], band08: [0] };
  return { maxNDVI: [(s.B08 - s.B04) / (s.B08 + s.B04)], band04: [s.B04], band08: [s.B08] };
}
"""
E4_SCRIPT = """//VERSION=3
function setup() { return { input: [{ bands: ["B02", "B03", "B04", "dataMask"] }],
                            output: { id: "result", bands: 3, sampleType: "UINT16" } }; }
function evaluatePixel(s) { return s.dataMask ? [s.B04, s.B03, s.B02] : [0, 0, 0]; }
"""


def _with_source(service: Service, body: dict) -> dict:
    """The spec's body with its data source swapped for the demo collection."""
    body = copy.deepcopy(body)
    source = body["processRequest"]["input"]["data"][0]
    source["type"] = f"byoc-{service.collection_id}"
    source["dataFilter"] = {
        "timeRange": {"from": "2024-01-01T00:00:00Z", "to": "2024-12-31T23:59:59Z"}
    }
    return body


def test_e1_tiling_grid_geotiff_with_iam_role(service: Service) -> None:
    body = service.request(
        E1_SCRIPT,
        ["default"],
        {"type": "raster", "delivery": {"s3": {"url": "s3://results", "iamRoleARN": ROLE}}},
        grid={"type": "tiling-grid", "id": 0, "resolution": 60.0},
    )
    body["description"] = "Max NDVI over Corsica"
    task = service.run(_with_source(service, body))
    assert task["status"] == "DONE", task
    assert task["request"]["output"]["delivery"]["s3"]["iamRoleARN"] == ROLE
    root = service.buckets / "results"
    files = sorted((root / task["id"]).glob("*/default.tiff"))
    assert files
    for path in files:
        with rasterio.open(path) as tiff:
            assert tiff.crs.to_epsg() == 32633  # UTM grid: the zone of the data
            assert tiff.res == (60.0, 60.0) and tiff.count == 3 and tiff.dtypes[0] == "uint8"
            bands = tiff.read()
        np.testing.assert_array_equal(bands[0], bands[2])
        assert bands.max() > 0  # AUTO: max NDVI over the orbits, scaled to 0..255
    request = json.loads((root / f"request-{task['id']}.json").read_text())
    assert request["description"] == "Max NDVI over Corsica"


def test_e2_geopackage_cog_template_overwrite_skip_existing(service: Service) -> None:
    (service.buckets / "results" / "aoi").mkdir()
    gpkg = service.buckets / "results" / "aoi" / "features.gpkg"
    write_layer(gpkg, "fields", 32633, squares(444000, 5340000, 2000, 3))
    template = "s3://results/out/<requestId>/<tileName>/<outputId>.<format>"
    body = {
        "processRequest": service.request(NDVI3, ["default"], {})["processRequest"],
        "input": {
            "type": "geopackage",
            "features": {
                "s3": {
                    "url": "s3://results/aoi/features.gpkg",
                    "accessKey": "AK",
                    "secretAccessKey": "SK",
                }
            },
            "defaults": {"resolution": 10.0},
        },
        "output": {
            "type": "raster",
            "delivery": {
                "s3": {
                    "url": template,
                    "accessKey": "AK",
                    "secretAccessKey": "SK",
                    "region": "eu-central-1",
                }
            },
            "cogOutput": True,
            "cogParameters": {
                "resamplingAlgorithm": "gauss",
                "overviewLevels": [2, 4, 8],
                "blockxsize": 512,
                "blockysize": 512,
            },
            "overwrite": True,
            "skipExisting": True,
        },
        "description": "GeoPackage + COG",
    }
    del body["processRequest"]["input"]["bounds"]  # the docs' variant without bounds
    task = service.run(_with_source(service, body))
    assert task["status"] == "DONE", task
    files = sorted((service.buckets / "results" / "out" / task["id"]).glob("*/default.tiff"))
    assert [p.parent.name for p in files] == ["fields-1", "fields-2", "fields-3"]
    for path in files:
        assert cog_validate(str(path))[0]
        with rasterio.open(path) as tiff:
            assert (tiff.width, tiff.height, tiff.crs.to_epsg()) == (200, 200, 32633)
            assert tiff.block_shapes[0] == (512, 512) and tiff.overviews(1) == [2, 4, 8]
            assert np.isfinite(tiff.read(1)).all()  # inside the demo data everywhere


def test_e3_zarr_laea_100km(service: Service) -> None:
    body = service.request(
        E3_SCRIPT,
        ["band08", "band04", "maxNDVI"],
        {
            "type": "zarr",
            "delivery": {
                "s3": {
                    "url": "s3://results/<requestId>",
                    "accessKey": "AK",
                    "secretAccessKey": "SK",
                }
            },
            "group": {"zarr_format": 2},
            "arrayParameters": {
                "dtype": "<u2",
                "order": "C",
                "chunks": [1, 1000, 1000],
                "fill_value": 0,
            },
            "arrayOverrides": {"maxNDVI": {"dtype": "<f4", "fill_value": "NaN"}},
        },
        grid={"type": "tiling-grid", "id": 6, "resolution": 100.0},
        fmt="zarr/array",
    )
    task = service.run(body)
    assert task["status"] == "DONE", task
    ds = xr.open_zarr(service.buckets / "results" / task["id"])
    assert set(ds.data_vars) == {"band08", "band04", "maxNDVI"}
    assert ds.band04.encoding["chunks"] == (1, 1000, 1000)
    assert ds.sizes["x"] % 1000 == 0 and ds.sizes["y"] % 1000 == 0
    assert float(ds.x[1] - ds.x[0]) == 100.0 and float(ds.x[0] - 50) % 100000 == 0
    ndvi = ds.maxNDVI.isel(time=0).values
    b04 = ds.band04.isel(time=0).values  # fill value 0 decoded as NaN by xarray
    b08 = ds.band08.isel(time=0).values
    valid = np.isfinite(ndvi)
    assert valid.any()
    np.testing.assert_allclose(ndvi[valid], ((b08 - b04) / (b08 + b04))[valid], rtol=1e-6)
    assert np.isnan(b04[~valid]).all()


def test_e4_byoc_new_collection(service: Service) -> None:
    body = service.request(
        E4_SCRIPT,
        ["result"],
        {
            "type": "raster",
            "delivery": {"s3": {"url": "s3://results/byoc", "iamRoleARN": ROLE}},
            "cogOutput": True,
            "createCollection": True,
        },
        grid={"type": "tiling-grid", "id": 1, "resolution": 10.0, "bufferX": 50, "bufferY": 50},
    )
    task = service.run(body)
    assert task["status"] == "DONE", task
    files = sorted((service.buckets / "results" / "byoc" / task["id"]).glob("*/result.tiff"))
    assert files
    for path in files:
        assert cog_validate(str(path))[0]
        with rasterio.open(path) as tiff:
            assert (tiff.width, tiff.height) == (1100, 1100)  # 1000 px + 2 x 50 px buffer
            assert tiff.dtypes == ("uint16",) * 3
    listed = service.http.get("/api/v1/byoc/collections").json()["data"]
    collection = next(c for c in listed if c["name"] == f"batch-{task['id']}")
    assert sorted(collection["additionalData"]["bands"]) == ["result", "result2", "result3"]
    tiles = service.http.get(f"/api/v1/byoc/collections/{collection['id']}/tiles").json()["data"]
    assert len(tiles) == len(files)
    execution = service.buckets / "results" / "byoc" / f"execution-{task['id']}.sqlite"
    with sqlite3.connect(execution) as db:
        assert db.execute("SELECT count(*) FROM features WHERE status = 'DONE'").fetchone() == (
            len(files),
        )
