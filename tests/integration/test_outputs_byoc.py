"""BYOC ingestion of a task's COGs: the next task reads them back as byoc-<id>."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import rasterio
from sqlalchemy import select

from eobatch.config import Settings
from eobatch.errors import AnalysisError
from eobatch.lifecycle.analysis import _check_ingestion
from eobatch.storage import Location
from eobatch.store.models import Tile
from tests.integration.harness import Service

RESULT3 = """//VERSION=3
function setup() {
  return { input: [{ bands: ["B04", "B08", "dataMask"] }],
           output: [{ id: "result", bands: 3, sampleType: "UINT16", nodataValue: 0 }] };
}
function evaluatePixel(s) {
  if (s.dataMask === 0) return [0, 0, 0];
  return [s.B04, s.B08, s.B04 + 1];
}
"""
READ_BACK = """//VERSION=3
function setup() {
  return { input: [{ bands: ["result", "result2", "result3", "dataMask"] }],
           output: { bands: 3, sampleType: "UINT16", nodataValue: 0 } };
}
function evaluatePixel(s) {
  if (s.dataMask === 0) return [0, 0, 0];
  return [s.result, s.result2, s.result3];
}
"""
CLASH = RESULT3.replace(
    'output: [{ id: "result", bands: 3, sampleType: "UINT16", nodataValue: 0 }]',
    'output: [{ id: "result", bands: 3, sampleType: "UINT16" }, { id: "result2", bands: 1 }]',
).replace("return [s.B04, s.B08, s.B04 + 1];", "return { result: [1, 2, 3], result2: [1] };")


def raster(url: str, **extra) -> dict:  # type: ignore[no-untyped-def]
    return {"type": "raster", "delivery": {"s3": {"url": url}}, "cogOutput": True, **extra}


def collections(service: Service) -> dict[str, dict]:
    listed = service.http.get("/api/v1/byoc/collections").json()["data"]
    return {c["name"]: c for c in listed}


def read_all(folder: Path) -> dict[str, np.ndarray]:
    out = {}
    for path in sorted(folder.rglob("*.tiff")):
        with rasterio.open(path) as src:
            out[path.parent.name] = src.read()
    return out


def overview_meters(service: Service, collection_id: str) -> dict[str, float | None]:
    with service.db.reading() as session:
        rows = session.execute(
            select(Tile.id, Tile.overview_meters).where(Tile.collection_id == collection_id)
        ).all()
    return dict(rows)  # type: ignore[arg-type]


def test_new_collection_is_readable_by_the_next_task(service: Service) -> None:
    output = raster("s3://results/byoc", createCollection=True)
    first = service.run(service.request(RESULT3, ["result"], output))
    assert first["status"] == "DONE", first
    collection = collections(service)[f"batch-{first['id']}"]
    bands = collection["additionalData"]["bands"]
    assert sorted(bands) == ["result", "result2", "result3"]
    assert [bands[b]["bandIndex"] for b in ("result", "result2", "result3")] == [1, 2, 3]
    assert all((bands[b]["bitDepth"], bands[b]["sampleFormat"]) == (16, "UINT") for b in bands)
    tiles = service.http.get(f"/api/v1/byoc/collections/{collection['id']}/tiles").json()["data"]
    assert len(tiles) == 4 and {t["status"] for t in tiles} == {"INGESTED"}
    assert all(t["path"].endswith("/(BAND).tiff") for t in tiles)
    # The coarsest-overview size registered without reading the files (maxMetersPerPixel) is
    # the one ingestion reads from them.
    registered = overview_meters(service, collection["id"])
    assert len(registered) == 4 and None not in registered.values()
    for tile_id in registered:
        url = f"/api/v1/byoc/collections/{collection['id']}/tiles/{tile_id}/reingest"
        assert service.http.post(url).status_code == 204
    assert overview_meters(service, collection["id"]) == pytest.approx(registered)

    body = service.request(READ_BACK, ["default"], raster("s3://results/again"))
    body["processRequest"]["input"]["data"] = [{"type": f"byoc-{collection['id']}"}]
    second = service.run(body)
    assert second["status"] == "DONE", second
    delivered = read_all(service.buckets / "results" / "byoc" / first["id"])
    read_back = read_all(service.buckets / "results" / "again" / second["id"])
    assert delivered.keys() == read_back.keys() and len(delivered) == 4
    for tile, data in delivered.items():
        # same grid, nearest resampling: the second task reproduces the ingested pixels
        np.testing.assert_array_equal(read_back[tile], data)
        assert data[0].any()


def test_existing_collection_must_match(service: Service) -> None:
    created = service.http.post(
        "/api/v1/byoc/collections",
        json={
            "name": "target",
            "s3Bucket": "results",
            "additionalData": {
                "bands": {
                    "result": {"bitDepth": 8},
                    "result2": {"bitDepth": 16},
                    "result3": {"bitDepth": 16},
                }
            },
        },
    )
    assert created.status_code == 201, created.text
    collection_id = created.json()["data"]["id"]
    task = service.run(
        service.request(RESULT3, ["result"], raster("s3://results/e", collectionId=collection_id)),
        action="analyse",
    )
    assert task["status"] == "FAILED"
    assert "Band 'result'" in task["error"] and "8-bit UINT" in task["error"]


def test_generated_band_names_must_not_clash(service: Service) -> None:
    body = service.request(
        CLASH, ["result", "result2"], raster("s3://results/c", createCollection=True)
    )
    task = service.run(body, action="analyse")
    assert task["status"] == "FAILED"
    assert "'result2'" in task["error"] and "clashes" in task["error"]


@pytest.mark.parametrize(
    ("extra", "parameter"),
    [
        ({"createCollection": True, "cogOutput": False}, "output->createCollection"),
        ({"collectionId": "017aa0ae-33a6-45d3-8548-0f7d1041b40c"}, "output->collectionId"),
    ],
)
def test_ingestion_requests_checked_at_create(
    service: Service, extra: dict, parameter: str
) -> None:
    body = service.request(RESULT3, ["result"], raster("s3://results/x", **extra))
    response = service.http.post("/api/v2/batch/process", json=body)
    assert response.status_code == 400, response.text
    assert parameter in [e["parameter"] for e in response.json()["error"]["errors"]]


@pytest.mark.parametrize(
    ("location", "refused"),
    [
        (Location("s3://b/p", endpoint="http://127.0.0.1:9", region="eu-central-1"), None),
        (Location("s3://b/p", endpoint="http://127.0.0.1:9", region="us-west-2"), "us-west-2"),
        (Location("gs://b/p", gcs_endpoint="http://127.0.0.1:9", region="eu-central-1"), "gcp"),
        (Location("s3://b/p", local_root="/tmp/b", region="us-west-2"), None),
    ],
)
def test_ingestion_needs_the_deployments_cloud_and_region(
    location: Location, refused: str | None
) -> None:
    """Delivery anywhere is allowed (with a surcharge); ingestion only in the deployment's own
    cloud and region, or in its local-folder buckets."""
    settings = Settings(cloud="aws", region="eu-central-1", jwt_secret="x" * 40)
    context = SimpleNamespace(delivery=location, settings=settings)
    if refused is None:
        _check_ingestion(context)  # type: ignore[arg-type]
        return
    with pytest.raises(AnalysisError) as caught:
        _check_ingestion(context)  # type: ignore[arg-type]
    assert refused in str(caught.value) and "eu-central-1" in str(caught.value)


GROWS = """//VERSION=3
function setup() {
  return { input: [{ bands: ["B04", "dataMask"] }],
           output: [{ id: "result", bands: 1, sampleType: "UINT16" }] };
}
function updateOutput(outputs, collection) { outputs.result.bands = 2; }
function evaluatePixel(s) { return [s.B04, s.B04 + 1]; }
"""


def test_update_output_cannot_change_the_bands_of_an_ingested_collection(
    service: Service,
) -> None:
    """A collection has one set of bands: a feature whose updateOutput() gives an output more
    bands than setup() declared fails with the reason, and delivers nothing."""
    body = service.request(GROWS, ["result"], raster("s3://results/grows", createCollection=True))
    task = service.run(body)
    features = service.features(task["id"])
    assert features and {f.status for f in features} == {"FATAL"}
    assert all(
        "updateOutput() gave output 'result' 2 band(s) for this feature, but BYOC ingestion "
        "needs the 1 band(s) setup() declares" in (f.error or "")
        for f in features
    )
    assert not list((service.buckets / "results" / "grows").rglob("*.tiff"))
